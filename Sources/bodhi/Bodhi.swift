import ArgumentParser
import BodhiCore
import Foundation

struct Bodhi: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bodhi",
        abstract: "Run open GGUF models locally and serve them on an OpenAI-compatible API.",
        subcommands: [Serve.self, ListModels.self, ProcessStatus.self, RunModel.self, PullModel.self, RemoveModel.self, AliasCommand.self, RouterCommand.self, BackendsCommand.self, DatabaseCommand.self, Setup.self, TokensCommand.self])
}

/// Where to find (or put) the server; shared by every command.
struct ServerOptions: ParsableArguments {
    @Option(help: "Address to listen on or connect to (BODHI_HOST, default 127.0.0.1).")
    var host: String?

    @Option(help: "Port to listen on or connect to (BODHI_PORT, default 1135).")
    var port: String?

    /// The settings these flags set.
    var flags: [SettingKey: (flag: String, value: String)] {
        var flags: [SettingKey: (flag: String, value: String)] = [:]
        if let host { flags[.host] = ("--host", host) }
        if let port { flags[.port] = ("--port", port) }
        return flags
    }

    /// Settings with these flags on top; a bad value ends the command with its message.
    func settings() throws -> Settings {
        do {
            return try Settings.resolve(flags: flags)
        } catch let error as BodhiError {
            throw ValidationFailure(message: error.message)
        }
    }
}

/// A failure whose message is the whole story: printed as is, exit status 1.
struct ValidationFailure: Error, CustomStringConvertible {
    let message: String
    var description: String { message }
}

extension Settings {
    /// The URL a client on this machine uses to reach the server.
    var clientBaseURL: String {
        let connectHost = host == "0.0.0.0" || host == "::" ? "127.0.0.1" : host
        return "http://\(connectHost.contains(":") ? "[\(connectHost)]" : connectHost):\(port)"
    }
}

extension Bodhi {
    /// What `AsyncParsableCommand.main()` does, callable from top-level code (where the
    /// synchronous `ParsableCommand.main()` would win overload resolution).
    static func runAsMain() async {
        do {
            var command = try parseAsRoot()
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch {
            exit(withError: error)
        }
    }
}
