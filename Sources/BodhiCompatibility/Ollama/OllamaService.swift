import BodhiCore
import BodhiEngine
import BodhiHub
import BodhiModels
import Foundation
import NIOCore

/// Ollama's API on Bodhi's models: requests are translated to the engine's OpenAI-compatible
/// endpoints and the answers back, streaming as NDJSON by default, as Ollama does.
public struct OllamaService: Sendable {
    let inference: InferenceService
    let aliases: AliasRegistry
    let catalog: ModelCatalog
    let supervisor: EngineSupervisor
    let models: ModelService
    let pulls: PullManager
    let plan: EnginePlan
    let uploads: BlobUploads

    /// The Ollama API version Bodhi follows.
    public static let version = "0.13.0"

    public init(
        inference: InferenceService, aliases: AliasRegistry, catalog: ModelCatalog, supervisor: EngineSupervisor,
        models: ModelService, pulls: PullManager, plan: EnginePlan
    ) {
        self.inference = inference
        self.aliases = aliases
        self.catalog = catalog
        self.supervisor = supervisor
        self.models = models
        self.pulls = pulls
        self.plan = plan
        uploads = BlobUploads(hubDirectory: catalog.cache.hubDirectory)
    }

    // MARK: Names

    /// The model an Ollama name serves (see `OllamaNames`), within the caller's allow-list.
    func resolve(_ name: String, allowed: [String]?) async throws -> ServedModel {
        for candidate in OllamaNames.candidates(for: name) {
            do {
                return try await inference.resolve(candidate, allowedBy: allowed)
            } catch let error as BodhiError where error.code == .modelNotFound {
                continue
            }
        }
        throw OllamaNames.notFound(name)
    }

    // MARK: Chat and generate

    public func chat(_ body: ByteBuffer, allowed: [String]?) async throws -> TranslatedReply {
        let request = try JSONBody.object(from: body)
        let name = try OllamaJSON.modelName(request)
        let served = try await resolve(name, allowed: allowed)
        guard let messages = request["messages"] as? [Any] else {
            if request["messages"] == nil { return try await loadOrUnload(served, name: name, request: request, field: "message") }
            throw BodhiError.invalidRequest("messages must be a list of messages")
        }
        // No messages load the model (or unload it), as in Ollama; nothing is generated.
        if messages.isEmpty { return try await loadOrUnload(served, name: name, request: request, field: "message") }
        var openAI = try Self.samplingFields(request)
        openAI["messages"] = try messages.map(Self.openAIMessage)
        if let tools = request["tools"] { openAI["tools"] = tools }
        try await applyThinking(request, to: &openAI, served: served, name: name)
        return try await run(.chatCompletions, openAI, served: served, name: name, request: request, field: .message)
    }

    public func generate(_ body: ByteBuffer, allowed: [String]?) async throws -> TranslatedReply {
        let request = try JSONBody.object(from: body)
        let name = try OllamaJSON.modelName(request)
        let served = try await resolve(name, allowed: allowed)
        let prompt = request["prompt"] as? String ?? ""
        if prompt.isEmpty, request["suffix"] == nil {
            return try await loadOrUnload(served, name: name, request: request, field: "response")
        }
        if let suffix = request["suffix"] as? String, !suffix.isEmpty {
            // Fill in the middle: llama-server's /infill, which refuses models without FIM tokens.
            var infill = try Self.samplingFields(request)
            infill["input_prefix"] = prompt
            infill["input_suffix"] = suffix
            if let limit = infill.removeValue(forKey: "max_tokens") { infill["n_predict"] = limit }
            infill["stream_options"] = nil
            return try await run(.infill, infill, served: served, name: name, request: request, field: .response)
        }
        let images = try Self.imageURLs(request["images"])
        var openAI = try Self.samplingFields(request)
        if request["raw"] as? Bool == true {
            guard images.isEmpty else { throw BodhiError.invalidRequest("images need a chat template; drop raw to send them") }
            openAI["prompt"] = prompt
            return try await run(.completions, openAI, served: served, name: name, request: request, field: .response)
        }
        var messages: [JSONObject] = []
        if let system = request["system"] as? String, !system.isEmpty { messages.append(["role": "system", "content": system]) }
        messages.append(["role": "user", "content": ChatContent.content(texts: [prompt], imageURLs: images)])
        openAI["messages"] = messages
        try await applyThinking(request, to: &openAI, served: served, name: name)
        return try await run(.chatCompletions, openAI, served: served, name: name, request: request, field: .response)
    }

    /// Ollama's `think`: the chat template's `enable_thinking`. Asking a model without thinking
    /// to think is an error, as in Ollama.
    private func applyThinking(_ request: JSONObject, to openAI: inout JSONObject, served: ServedModel, name: String) async throws {
        guard let think = request["think"] as? Bool else { return }
        if think, !(try await models.describe(served.name, plan: plan).capabilities.contains("thinking")) {
            throw BodhiError.invalidRequest("\"\(name)\" does not support thinking")
        }
        openAI["chat_template_kwargs"] = ["enable_thinking": think]
    }

    /// Where a reply's text goes: `message.content` for chat, `response` for generate.
    enum Field { case message, response }

    /// Fields of the OpenAI request from Ollama's `options`, `format`, `stream`.
    static func samplingFields(_ request: JSONObject) throws -> JSONObject {
        var fields: JSONObject = [:]
        let renamed = [
            "temperature": "temperature", "top_p": "top_p", "top_k": "top_k", "min_p": "min_p", "seed": "seed",
            "stop": "stop", "repeat_penalty": "repeat_penalty", "presence_penalty": "presence_penalty",
            "frequency_penalty": "frequency_penalty", "repeat_last_n": "repeat_last_n", "typical_p": "typical_p",
            "mirostat": "mirostat", "mirostat_tau": "mirostat_tau", "mirostat_eta": "mirostat_eta",
            "num_predict": "max_tokens", "num_keep": "n_keep",
        ]
        if let options = request["options"] {
            guard let options = options as? JSONObject else { throw BodhiError.invalidRequest("options must be an object") }
            for (key, value) in options {
                if let target = renamed[key] { fields[target] = value }
            }
            if let predict = fields["max_tokens"] as? Int, predict < 0 { fields["max_tokens"] = nil }
        }
        // Ollama's `logprobs` and `top_logprobs`, as chat completions name them.
        if try JSONBody.flag(request, "logprobs") == true {
            fields["logprobs"] = true
            switch request["top_logprobs"] {
            case nil, is NSNull: break
            case let count as Int where (0...20).contains(count): fields["top_logprobs"] = count
            default: throw BodhiError.invalidRequest("top_logprobs must be a whole number from 0 to 20")
            }
        }
        switch request["format"] {
        case nil, is NSNull: break
        case let text as String where text == "json": fields["response_format"] = ["type": "json_object"]
        case let text as String where text.isEmpty: break
        case let schema as JSONObject:
            fields["response_format"] = ["type": "json_schema", "json_schema": ["name": "response", "schema": schema]]
        default: throw BodhiError.invalidRequest("format must be \"json\" or a JSON schema")
        }
        let stream = try JSONBody.flag(request, "stream") ?? true
        fields["stream"] = stream
        if stream { fields["stream_options"] = ["include_usage": true] }
        return fields
    }

    /// Ollama's `images` (base64 strings) as data URLs.
    static func imageURLs(_ images: Any?) throws -> [String] {
        switch images {
        case nil, is NSNull: return []
        case let list as [String]: return list.map { ChatContent.dataURL(base64: $0) }
        default: throw BodhiError.invalidRequest("images must be a list of base64-encoded images")
        }
    }

    /// An Ollama message as OpenAI's: tool call arguments go from objects to JSON strings, images
    /// become image parts.
    static func openAIMessage(_ value: Any) throws -> JSONObject {
        guard var message = value as? JSONObject, message["role"] is String else {
            throw BodhiError.invalidRequest("each message needs a role and content")
        }
        let images = try imageURLs(message.removeValue(forKey: "images"))
        if !images.isEmpty { message["content"] = ChatContent.content(texts: [message["content"] as? String ?? ""], imageURLs: images) }
        if message["content"] == nil { message["content"] = "" }
        if let calls = message["tool_calls"] as? [JSONObject] {
            message["tool_calls"] = calls.enumerated().map { index, call -> JSONObject in
                let function = call["function"] as? JSONObject ?? [:]
                let arguments = function["arguments"].flatMap { try? JSONSerialization.data(withJSONObject: $0) }
                    .map { String(decoding: $0, as: UTF8.self) } ?? "{}"
                return ["id": "call_\(index)", "type": "function",
                        "function": ["name": function["name"] ?? "", "arguments": arguments]]
            }
        }
        if let toolName = message.removeValue(forKey: "tool_name") { message["name"] = toolName }
        if message["thinking"] != nil { message["thinking"] = nil }
        return message
    }

    /// Sends the translated request and translates the answer, streaming or not.
    private func run(
        _ operation: InferenceOperation, _ openAI: JSONObject, served: ServedModel, name: String, request: JSONObject, field: Field
    ) async throws -> TranslatedReply {
        var openAI = openAI
        openAI["model"] = served.name
        if operation == .completions, openAI["logprobs"] as? Bool == true {
            // Completions count the alternatives in `logprobs` itself.
            openAI["logprobs"] = openAI.removeValue(forKey: "top_logprobs") ?? 0
        }
        let keepAlive = try Self.keepAlive(request)
        let started = ContinuousClock.now
        let engine = EngineTarget(served)
        let result = try await InferenceService.$translatedFromOtherAPI.withValue(true) {
            try await inference.handle(operation, body: JSONBody.buffer(openAI), allowedModels: nil)
        }
        if let keepAlive, let engine { await supervisor.setKeepAlive(keepAlive, for: engine.id) }
        switch result {
        case .complete(let status, _, let body):
            let object = (try? JSONBody.object(from: body)) ?? [:]
            if operation == .infill, status == 501 { throw BodhiError.invalidRequest("\(name) does not support insert") }
            guard status == 200 else { throw BodhiError.engineAnswered(status, object) }
            var reply = Translation(name: name, field: field, started: started, streaming: false)
            reply.absorb(object)
            return .json(JSONBody.buffer(reply.final()))
        case .events(let stream):
            return .stream(ChunkStream { emit in
                var reply = Translation(name: name, field: field, started: started, streaming: true)
                await stream.forward { event in
                    guard let data = SSEFramer.data(of: event), data != "[DONE]",
                          let object = try? JSONSerialization.jsonObject(with: Data(data.utf8)) as? JSONObject else { return }
                    if let error = object["error"] as? JSONObject {
                        try await emit(JSONBody.buffer(["error": error["message"] ?? "the engine failed"], newline: true))
                        reply.failed = true
                        return
                    }
                    for line in reply.absorb(object) { try await emit(JSONBody.buffer(line, newline: true)) }
                }
                if !reply.failed { try? await emit(JSONBody.buffer(reply.final(), newline: true)) }
            })
        }
    }

    /// An empty prompt loads the model (or, with `keep_alive: 0`, unloads it), as in Ollama.
    private func loadOrUnload(_ served: ServedModel, name: String, request: JSONObject, field: String) async throws -> TranslatedReply {
        var reply: JSONObject = ["model": name, "created_at": OllamaJSON.timestamp(), "done": true]
        reply[field] = field == "message" ? ["role": "assistant", "content": ""] as JSONObject : ""
        // A backend's model has no engine here: there is nothing to load or unload.
        let target = EngineTarget(served)
        if case .idle(.zero) = try Self.keepAlive(request) {
            if let target { await supervisor.unload(target.id) }
            reply["done_reason"] = "unload"
        } else {
            if let target {
                let lease = try await supervisor.acquire(target)
                lease.release()
                if let keepAlive = try Self.keepAlive(request) { await supervisor.setKeepAlive(keepAlive, for: target.id) }
            }
            reply["done_reason"] = "load"
        }
        let stream = try JSONBody.flag(request, "stream") ?? true
        let line = JSONBody.buffer(reply, newline: true)
        return stream ? .stream(ChunkStream { emit in try? await emit(line) }) : .json(JSONBody.buffer(reply))
    }

    /// Ollama's `keep_alive`: a duration ("5m"), seconds, 0 (unload when done), negative (forever).
    static func keepAlive(_ request: JSONObject) throws -> KeepAlive? {
        switch request["keep_alive"] {
        case nil, is NSNull: return nil
        case let number as NSNumber:
            let seconds = number.doubleValue
            return seconds < 0 ? .forever : .idle(.milliseconds(Int64(seconds * 1000)))
        case let text as String:
            guard let keepAlive = KeepAlive(parsing: text) else {
                throw BodhiError.invalidRequest("keep_alive must be a duration such as \"5m\", a number of seconds, 0 or negative")
            }
            return keepAlive
        default:
            throw BodhiError.invalidRequest("keep_alive must be a duration such as \"5m\", a number of seconds, 0 or negative")
        }
    }
}

extension OllamaService {
    /// Accumulates an OpenAI answer (whole or in chunks) into Ollama's shape.
    struct Translation {
        let name: String
        let field: OllamaService.Field
        let started: ContinuousClock.Instant
        let streaming: Bool
        var finishReason: String?
        var usage: JSONObject?
        var timings: JSONObject?
        var content = ""
        var thinking = ""
        var toolCalls = ToolCalls()
        var streamed = false
        var failed = false
        /// Log probabilities of a whole answer's tokens, in Ollama's shape.
        var logprobs: [JSONObject] = []

        init(name: String, field: OllamaService.Field, started: ContinuousClock.Instant, streaming: Bool) {
            self.name = name
            self.field = field
            self.started = started
            self.streaming = streaming
        }

        /// Takes one OpenAI object (a whole response or a stream chunk); returns the lines to
        /// send now.
        @discardableResult
        mutating func absorb(_ object: JSONObject) -> [JSONObject] {
            if let usage = object["usage"] as? JSONObject { self.usage = usage }
            if let timings = object["timings"] as? JSONObject { self.timings = timings }
            // llama-server's native format (/infill): `content`, `stop`, token counts.
            if object["choices"] == nil, let text = object["content"] as? String {
                if let evaluated = object["tokens_evaluated"] as? Int, let predicted = object["tokens_predicted"] as? Int {
                    usage = ["prompt_tokens": evaluated, "completion_tokens": predicted]
                }
                if object["stop_type"] as? String == "limit" { finishReason = "length" }
                if streaming {
                    streamed = true
                    return text.isEmpty ? [] : [chunk(text: text, thinking: "")]
                }
                content = text
                return []
            }
            guard let choice = (object["choices"] as? [JSONObject])?.first else { return [] }
            if let reason = choice["finish_reason"] as? String { finishReason = reason }
            let pieceLogprobs = Self.logprobs(choice["logprobs"])
            var lines = absorbChoice(choice)
            if !pieceLogprobs.isEmpty {
                if streaming, !lines.isEmpty { lines[lines.count - 1]["logprobs"] = pieceLogprobs } else { logprobs += pieceLogprobs }
            }
            return lines
        }

        /// The lines one choice (a whole answer's or a chunk's) makes now.
        private mutating func absorbChoice(_ choice: JSONObject) -> [JSONObject] {
            var lines: [JSONObject] = []
            if let delta = choice["delta"] as? JSONObject {
                streamed = true
                let text = delta["content"] as? String ?? ""
                let reasoning = delta["reasoning_content"] as? String ?? ""
                toolCalls.absorb(delta["tool_calls"])
                if !text.isEmpty || !reasoning.isEmpty { lines.append(chunk(text: text, thinking: reasoning)) }
            } else if let message = choice["message"] as? JSONObject {
                content = message["content"] as? String ?? ""
                thinking = message["reasoning_content"] as? String ?? ""
                toolCalls.absorb(message["tool_calls"])
            } else if let text = choice["text"] as? String {
                // Completions carry `text` both whole and in stream chunks.
                if streaming {
                    streamed = true
                    if !text.isEmpty { lines.append(chunk(text: text, thinking: "")) }
                } else {
                    content = text
                }
            }
            return lines
        }

        /// Chat completions' `logprobs.content` in Ollama's shape: `token`, `logprob`, `bytes`, `top_logprobs`.
        static func logprobs(_ value: Any?) -> [JSONObject] {
            ((value as? JSONObject)?["content"] as? [JSONObject] ?? []).map { entry in
                var token: JSONObject = ["token": entry["token"] ?? "", "logprob": entry["logprob"] ?? 0]
                if let bytes = entry["bytes"] { token["bytes"] = bytes }
                if let top = entry["top_logprobs"] as? [JSONObject] {
                    token["top_logprobs"] = top.map { ["token": $0["token"] ?? "", "logprob": $0["logprob"] ?? 0, "bytes": $0["bytes"] ?? [Int]()] as JSONObject }
                }
                return token
            }
        }

        private func chunk(text: String, thinking: String) -> JSONObject {
            var line: JSONObject = ["model": name, "created_at": OllamaJSON.timestamp(), "done": false]
            switch field {
            case .message:
                var message: JSONObject = ["role": "assistant", "content": text]
                if !thinking.isEmpty { message["thinking"] = thinking }
                line["message"] = message
            case .response:
                line["response"] = text
                if !thinking.isEmpty { line["thinking"] = thinking }
            }
            return line
        }

        /// The closing object: the whole text when not streamed, the reason, and Ollama's
        /// counts and durations (nanoseconds).
        func final() -> JSONObject {
            var line: JSONObject = ["model": name, "created_at": OllamaJSON.timestamp(), "done": true]
            let text = streamed ? "" : content
            let calls: [JSONObject] = toolCalls.ordered.map { ["function": ["name": $0.name, "arguments": $0.input] as JSONObject] }
            switch field {
            case .message:
                var message: JSONObject = ["role": "assistant", "content": text]
                if !streamed, !thinking.isEmpty { message["thinking"] = thinking }
                if !calls.isEmpty { message["tool_calls"] = calls }
                line["message"] = message
            case .response:
                line["response"] = text
                if !streamed, !thinking.isEmpty { line["thinking"] = thinking }
            }
            if !logprobs.isEmpty { line["logprobs"] = logprobs }
            line["done_reason"] = finishReason == "length" ? "length" : "stop"
            let elapsed = ContinuousClock.now - started
            line["total_duration"] = elapsed.nanoseconds
            line["load_duration"] = 0
            let promptTokens = usage?["prompt_tokens"] as? Int ?? timings?["prompt_n"] as? Int ?? 0
            let completionTokens = usage?["completion_tokens"] as? Int ?? timings?["predicted_n"] as? Int ?? 0
            line["prompt_eval_count"] = promptTokens
            line["eval_count"] = completionTokens
            line["prompt_eval_duration"] = Int64(((timings?["prompt_ms"] as? Double) ?? 0) * 1_000_000)
            line["eval_duration"] = Int64(((timings?["predicted_ms"] as? Double) ?? 0) * 1_000_000)
            return line
        }
    }
}
