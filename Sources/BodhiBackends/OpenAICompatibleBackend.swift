import BodhiCore
import BodhiEngine
import BodhiModels
import Foundation
import NIOCore
import NIOHTTP1

/// A model as a backend's model list names it.
struct ListedModel: Sendable, Equatable {
    let id: String
    var ownedBy: String?
    var created: Date?
}

/// A backend reached over HTTP: it lists its models and serves requests in OpenAI's shape.
protocol RemoteBackend: InferenceBackend {
    var config: BackendConfig { get }
    func listModels() async throws -> [ListedModel]
}

extension RemoteBackend {
    var name: String { config.name }

    /// The request's body for the backend: `model` is the backend's own id of the model.
    func upstreamBody(_ request: BackendRequest) throws -> (body: JSONObject, model: RemoteModel) {
        guard let model = request.served.remote else { throw BodhiError.internalError("A local model reached the backend '\(name)'.") }
        var body = try JSONBody.object(from: request.body)
        body["model"] = model.id
        return (body, model)
    }

    /// `url` with `path` when it has none of its own (`http://host:8080` → `http://host:8080/v1`).
    static func base(_ url: String, defaultPath: String) -> String {
        let trimmed = url.hasSuffix("/") ? String(url.dropLast()) : url
        let path = URLComponents(string: trimmed)?.path ?? ""
        return path.isEmpty ? trimmed + defaultPath : trimmed
    }
}

/// Any OpenAI-compatible server: OpenAI itself, another llama-server, vLLM, another Bodhi,
/// Ollama's `/v1`. Bodies pass through as they are, but for the model's name, which is the
/// backend's own id on the way there and the name the client used on the way back.
struct OpenAICompatibleBackend: RemoteBackend {
    let config: BackendConfig
    let apiKey: String?
    let transport: BackendTransport

    /// The base the operations' paths go under, e.g. `http://10.0.0.2:8080/v1`.
    var base: String { Self.base(config.url, defaultPath: "/v1") }

    func listModels() async throws -> [ListedModel] {
        let url = base + "/models"
        let object = try await transport.getJSON(url, headers: .bearer(apiKey))
        guard let data = (object as? JSONObject)?["data"] as? [JSONObject] else {
            throw BodhiError(.backendFailed, status: 502, "The backend '\(name)' answered \(url) without a model list ('data').")
        }
        return data.compactMap { model in
            guard let id = model["id"] as? String, !id.isEmpty else { return nil }
            return ListedModel(
                id: id, ownedBy: model["owned_by"] as? String,
                created: (model["created"] as? NSNumber).map { Date(timeIntervalSince1970: $0.doubleValue) })
        }
    }

    func send(_ request: BackendRequest) async throws -> BackendExchange {
        guard request.operation != .infill else {
            throw BodhiError.invalidRequest("'\(request.served.name)' is a model of the backend '\(name)', which does not fill in the middle.")
        }
        let (body, model) = try upstreamBody(request)
        let path = String(request.operation.rawValue.dropFirst("/v1".count))
        let reply = try await transport.send(.POST, base + path, headers: .bearer(apiKey), body: JSONBody.buffer(body), client: request.caller.connection)
        guard reply.status == 200 else { return BackendExchange(reply: try await reply.translatingError(backend: self.name), model: model.name) }
        let name = request.served.name
        if reply.contentType?.hasPrefix("text/event-stream") == true {
            return BackendExchange(reply: reply.translatingEvents(with: Renaming(from: model.id, to: name)), model: model.name)
        }
        let renamed = try await reply.translatingWhole(upTo: InferenceService.maxResponseBytes) { bytes in
            guard var object = JSONBody.parsed(bytes) else { return bytes }
            if object["model"] != nil { object["model"] = name }
            return JSONBody.buffer(object)
        }
        return BackendExchange(reply: renamed, model: model.name)
    }

    /// Names the model in each event as the client did. The event's bytes are rewritten where
    /// the id appears as `"model"`'s value; nothing else is decoded.
    struct Renaming: EventTranslator {
        let patterns: [(String, String)]

        init(from id: String, to name: String) {
            let escape = { (text: String, slashes: Bool) in
                let options: JSONSerialization.WritingOptions = slashes ? [] : [.withoutEscapingSlashes]
                return String(decoding: (try? JSONSerialization.data(withJSONObject: [text], options: options)) ?? Data(), as: UTF8.self)
                    .dropFirst().dropLast()
            }
            // Servers write the id with `/` escaped or not (Swift's encoders do, llama-server does not),
            // after `:` or `: `; the new name goes in the same way.
            var patterns: [(String, String)] = []
            for slashes in [false, true] where !slashes || id.contains("/") || name.contains("/") {
                let (from, to) = (escape(id, slashes), escape(name, slashes))
                patterns += [("\"model\":\(from)", "\"model\":\(to)"), ("\"model\": \(from)", "\"model\": \(to)")]
            }
            self.patterns = patterns
        }

        func translate(_ event: ByteBuffer) -> [ByteBuffer] {
            var text = String(buffer: event)
            for (from, to) in patterns where text.contains(from) { text = text.replacingOccurrences(of: from, with: to) }
            return [ByteBuffer(string: text)]
        }

        func finish() -> [ByteBuffer] { [] }
    }
}
