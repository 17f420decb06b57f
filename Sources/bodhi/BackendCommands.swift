import ArgumentParser
import AsyncHTTPClient
import BodhiBackends
import BodhiCore
import BodhiIdentity
import BodhiModels
import BodhiStore
import Foundation
import Logging
import NIOCore
import NIOHTTP1

/// `bodhi backends ...`: remote servers and cloud APIs whose models Bodhi serves as `prefix/model`,
/// through the running server, or straight in the database when none runs.
struct BackendsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "backends", abstract: "Manage remote servers and cloud APIs whose models Bodhi serves.",
        subcommands: [List.self, Add.self, Remove.self, Test.self])

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "ls", abstract: "List backends and their models.")
        @OptionGroup var server: ServerOptions

        func run() async throws {
            let backends = try await withBackends(server) { registry in
                for backend in registry.list() { _ = try await registry.test(backend.name) }
                return registry.list()
            }
            var rows = [["NAME", "FORMAT", "URL", "PREFIX", "KEY", "MODELS", "STATUS"]]
            for backend in backends {
                rows.append([
                    backend.name, backend.format.rawValue, backend.url, backend.prefix, backend.hasAPIKey ? "yes" : "-",
                    String(backend.models.count), backend.error.map { "error: \($0)" } ?? "ok",
                ])
            }
            printTable(rows)
        }
    }

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "add", abstract: "Add a backend; its models become PREFIX/model.",
            discussion: """
                Bodhi reads the backend's model list first, so a wrong URL, format or key is said at once.
                  bodhi backends add lab http://10.0.0.2:8080
                  echo "$ANTHROPIC_API_KEY" | bodhi backends add claude https://api.anthropic.com --format anthropic --api-key-stdin
                """)
        @OptionGroup var server: ServerOptions
        @Argument(help: "The backend's name, e.g. lab or openai.") var name: String
        @Argument(help: "Its base URL, e.g. http://10.0.0.2:8080/v1 or https://api.openai.com/v1.") var url: String
        @Option(help: "The API it speaks: openai (any OpenAI-compatible server), anthropic or gemini.") var format: BackendFormat = .openai
        @Option(help: "What its models' names start with (default: the name).") var prefix: String?
        @Flag(name: .customLong("api-key-stdin"), help: "Read the API key from the first line of standard input.")
        var apiKeyStdin = false

        func run() async throws {
            var key: String?
            if apiKeyStdin {
                guard let line = readLine(strippingNewline: true), !line.isEmpty else {
                    throw ValidationFailure(message: "--api-key-stdin: standard input has no key on its first line.")
                }
                key = line
            }
            let config = BackendConfig(name: name, url: url, format: format, prefix: prefix)
            let added = try await withBackends(server) { try await $0.add(config, apiKey: key) }
            print("added \(added.name): \(added.models.count) models, as \(added.prefix)/MODEL")
            for model in added.models.prefix(20) { print("  \(model)") }
            if added.models.count > 20 { print("  ... and \(added.models.count - 20) more (bodhi ls)") }
        }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "rm", abstract: "Remove a backend (and forget its key).")
        @OptionGroup var server: ServerOptions
        @Argument var name: String

        func run() async throws {
            _ = try await withBackends(server) { try await $0.remove(name) }
            print("removed backend \(name)")
        }
    }

    struct Test: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "test", abstract: "Read a backend's model list now; exits 1 when that fails.")
        @OptionGroup var server: ServerOptions
        @Argument var name: String

        func run() async throws {
            let status = try await withBackends(server) { try await $0.test(name) }
            if let error = status.error { throw ValidationFailure(message: "\(name): \(error)") }
            print("\(name) answers: \(status.models.count) models")
        }
    }
}

extension BackendFormat: ExpressibleByArgument {}

/// Runs `body` on the database, where backends are kept (the key sealed with this machine's
/// secret key; adding one takes an admin's rights, which the database's owner has), then has a
/// running Bodhi read them again: at once with a token in BODHI_TOKEN, else within seconds.
private func withBackends<T: Sendable>(_ server: ServerOptions, _ body: (BackendRegistry) async throws -> T) async throws -> T {
    let settings = try server.settings()
    let secrets = try SecretBox.load(environment: ProcessInfo.processInfo.environment, home: settings.home)
    let http = BackendRegistry.makeHTTPClient()
    let result: T
    do {
        result = try await settings.withStore { store in
            let registry = BackendRegistry(repository: store, sealer: secrets, http: http, logger: Logger(label: "bodhi.backends"))
            try await registry.sync()
            return try await body(registry)
        }
        try? await http.shutdown()
    } catch {
        try? await http.shutdown()
        throw error
    }
    let client = BodhiClient(settings: settings)
    if await client.isRunning() {
        _ = try? await client.call(.GET, settings.clientBaseURL + "/bodhi/v1/backends", decoding: DataPage<BackendStatus>.self)
    }
    return result
}
