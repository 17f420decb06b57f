import BodhiCore
import BodhiEngine
import BodhiModels
import Foundation
import NIOCore
import NIOHTTP1

/// Google's Gemini API (`generateContent`, `streamGenerateContent`, `batchEmbedContents`):
/// OpenAI's chat and embeddings requests translated to it, and its answers back.
struct GeminiBackend: RemoteBackend {
    let config: BackendConfig
    let apiKey: String?
    let transport: BackendTransport

    var base: String { Self.base(config.url, defaultPath: "/v1beta") }

    var headers: HTTPHeaders {
        var headers = HTTPHeaders()
        if let apiKey { headers.add(name: "x-goog-api-key", value: apiKey) }
        return headers
    }

    func listModels() async throws -> [ListedModel] {
        var models: [ListedModel] = []
        var pageToken: String?
        // Pages of up to 1,000; a bound on them, so that a backend that always says "more" ends.
        for _ in 0..<20 {
            var url = base + "/models?pageSize=1000"
            if let pageToken { url += "&pageToken=" + (pageToken.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? pageToken) }
            guard let page = try await transport.getJSON(url, headers: headers) as? JSONObject, let listed = page["models"] as? [JSONObject] else {
                throw BodhiError(.backendFailed, status: 502, "The backend '\(name)' answered \(url) without a model list ('models').")
            }
            models += listed.compactMap { model in
                guard let name = model["name"] as? String else { return nil }
                return ListedModel(id: name.hasPrefix("models/") ? String(name.dropFirst("models/".count)) : name, ownedBy: "google")
            }
            pageToken = page["nextPageToken"] as? String
            if pageToken?.isEmpty ?? true { break }
        }
        return models
    }

    func send(_ request: BackendRequest) async throws -> BackendExchange {
        let (body, model) = try upstreamBody(request)
        let modelPath = base + "/models/" + (model.id.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed.subtracting(CharacterSet(charactersIn: "/:"))) ?? model.id)
        let chunks = ChatChunks(model: request.served.name)
        switch request.operation {
        case .chatCompletions:
            let chat = try ChatRequest(body)
            let url = modelPath + (chat.stream ? ":streamGenerateContent?alt=sse" : ":generateContent")
            let reply = try await transport.send(
                .POST, url, headers: headers, body: JSONBody.buffer(Self.generateRequest(chat)), client: request.caller.connection)
            guard reply.status == 200 else { return BackendExchange(reply: try await reply.translatingError(backend: name), model: model.name) }
            if chat.stream {
                return BackendExchange(reply: reply.translatingEvents(with: StreamTranslator(chunks: chunks)), model: model.name)
            }
            let whole = try await reply.translatingWhole(upTo: InferenceService.maxResponseBytes) { bytes in
                guard let answer = JSONBody.parsed(bytes) else {
                    return OpenAIError.buffer(status: 502, message: "The backend '\(name)' answered with something that is not JSON.")
                }
                return Self.completion(answer, chunks: chunks)
            }
            return BackendExchange(reply: whole, model: model.name)
        case .embeddings:
            let inputs: [String]
            switch body["input"] {
            case let text as String: inputs = [text]
            case let list as [String]: inputs = list
            default: throw BodhiError.invalidRequest("'input' must be a string or a list of strings for Gemini's embeddings.", param: "input")
            }
            let requests = inputs.map { ["model": "models/" + model.id, "content": ["parts": [["text": $0]]]] as JSONObject }
            let reply = try await transport.send(
                .POST, modelPath + ":batchEmbedContents", headers: headers, body: JSONBody.buffer(["requests": requests]), client: request.caller.connection)
            guard reply.status == 200 else { return BackendExchange(reply: try await reply.translatingError(backend: name), model: model.name) }
            let name = request.served.name
            let whole = try await reply.translatingWhole(upTo: InferenceService.maxResponseBytes) { bytes in
                let embeddings = JSONBody.parsed(bytes)?["embeddings"] as? [JSONObject] ?? []
                return JSONBody.buffer([
                    "object": "list", "model": name,
                    "data": embeddings.enumerated().map { ["object": "embedding", "index": $0.offset, "embedding": $0.element["values"] ?? []] as JSONObject },
                    "usage": ["prompt_tokens": 0, "total_tokens": 0],
                ] as JSONObject)
            }
            return BackendExchange(reply: whole, model: model.name)
        case .completions, .infill, .rerank, .tokenize, .detokenize, .applyTemplate:
            throw BodhiError.invalidRequest(
                "'\(request.served.name)' is a model of the backend '\(name)' (Gemini), which serves chat completions and embeddings only.", param: "model")
        }
    }

    // MARK: Translation

    static func generateRequest(_ chat: ChatRequest) -> JSONObject {
        var request: JSONObject = [:]
        let system = chat.system.filter { !$0.isEmpty }
        if !system.isEmpty { request["systemInstruction"] = ["parts": system.map { ["text": $0] }] }
        var contents: [JSONObject] = []
        func append(_ role: String, _ parts: [JSONObject]) {
            guard !parts.isEmpty else { return }
            if var last = contents.last, last["role"] as? String == role {
                last["parts"] = (last["parts"] as? [JSONObject] ?? []) + parts
                contents[contents.count - 1] = last
            } else {
                contents.append(["role": role, "parts": parts])
            }
        }
        for message in chat.messages {
            switch message {
            case .user(let parts):
                append("user", parts.map { part in
                    switch part {
                    case .text(let text): return ["text": text]
                    case .image(let mediaType, let data, let url):
                        if let data { return ["inlineData": ["mimeType": mediaType ?? "image/png", "data": data]] }
                        return ["fileData": ["fileUri": url ?? "", "mimeType": mediaType ?? "image/png"]]
                    }
                })
            case .assistant(let text, let calls):
                var parts: [JSONObject] = text.isEmpty ? [] : [["text": text]]
                parts += calls.map { ["functionCall": ["name": $0.name, "args": $0.input] as JSONObject] }
                append("model", parts)
            case .tool(let id, let content):
                let result = (try? JSONSerialization.jsonObject(with: Data(content.utf8))) as? JSONObject ?? ["content": content]
                append("user", [["functionResponse": ["name": chat.toolName(ofCall: id) ?? id, "response": result] as JSONObject]])
            }
        }
        request["contents"] = contents
        var generation: JSONObject = [:]
        if let value = chat.maxTokens { generation["maxOutputTokens"] = value }
        if let value = chat.temperature { generation["temperature"] = value }
        if let value = chat.topP { generation["topP"] = value }
        if let value = chat.topK { generation["topK"] = value }
        if let value = chat.seed { generation["seed"] = value }
        if let value = chat.presencePenalty { generation["presencePenalty"] = value }
        if let value = chat.frequencyPenalty { generation["frequencyPenalty"] = value }
        if !chat.stop.isEmpty { generation["stopSequences"] = chat.stop }
        if let format = chat.responseFormat {
            generation["responseMimeType"] = "application/json"
            if let schema = format.schema { generation["responseJsonSchema"] = schema }
        }
        if !generation.isEmpty { request["generationConfig"] = generation }
        if !chat.tools.isEmpty {
            request["tools"] = [["functionDeclarations": chat.tools.map { tool -> JSONObject in
                var declaration: JSONObject = ["name": tool.name, "parametersJsonSchema": tool.parameters]
                if let description = tool.description { declaration["description"] = description }
                return declaration
            }]]
        }
        switch chat.toolChoice {
        case .auto: request["toolConfig"] = ["functionCallingConfig": ["mode": "AUTO"]]
        case .off: request["toolConfig"] = ["functionCallingConfig": ["mode": "NONE"]]
        case .required: request["toolConfig"] = ["functionCallingConfig": ["mode": "ANY"]]
        case .function(let name): request["toolConfig"] = ["functionCallingConfig": ["mode": "ANY", "allowedFunctionNames": [name]] as JSONObject]
        case nil: break
        }
        return request
    }

    static func finishReason(_ reason: String?, calledTools: Bool) -> String {
        if calledTools { return "tool_calls" }
        switch reason {
        case "MAX_TOKENS": return "length"
        case "SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY": return "content_filter"
        default: return "stop"
        }
    }

    /// The parts of an answer's first candidate: its text, its thoughts, its calls.
    static func read(_ answer: JSONObject) -> (text: String, thinking: String, calls: [(name: String, args: Any)], finish: String?) {
        let candidate = (answer["candidates"] as? [JSONObject])?.first
        var text = ""
        var thinking = ""
        var calls: [(name: String, args: Any)] = []
        for part in (candidate?["content"] as? JSONObject)?["parts"] as? [JSONObject] ?? [] {
            if let call = part["functionCall"] as? JSONObject {
                calls.append((call["name"] as? String ?? "", call["args"] ?? JSONObject()))
            } else if let piece = part["text"] as? String {
                if part["thought"] as? Bool == true { thinking += piece } else { text += piece }
            }
        }
        return (text, thinking, calls, candidate?["finishReason"] as? String)
    }

    static func usage(_ answer: JSONObject) -> (prompt: Int, completion: Int)? {
        guard let usage = answer["usageMetadata"] as? JSONObject else { return nil }
        return (usage["promptTokenCount"] as? Int ?? 0,
                (usage["candidatesTokenCount"] as? Int ?? 0) + (usage["thoughtsTokenCount"] as? Int ?? 0))
    }

    static func toolCall(_ call: (name: String, args: Any), index: Int) -> JSONObject {
        ["id": "call_\(index)", "type": "function",
         "function": ["name": call.name, "arguments": String(buffer: JSONBody.buffer(call.args))] as JSONObject]
    }

    static func completion(_ answer: JSONObject, chunks: ChatChunks) -> ByteBuffer {
        let (text, _, calls, finish) = read(answer)
        let usage = usage(answer) ?? (0, 0)
        return chunks.completion(
            content: text.isEmpty && !calls.isEmpty ? nil : text, toolCalls: calls.enumerated().map { toolCall($0.element, index: $0.offset) },
            finishReason: finishReason(finish, calledTools: !calls.isEmpty), prompt: usage.prompt, completion: usage.completion)
    }

    /// Gemini's stream (each event a whole `GenerateContentResponse` of what is new) as OpenAI's
    /// chunks. Gemini's stream has no end marker: it ends with the connection, after an event
    /// that carries the finish reason.
    struct StreamTranslator: EventTranslator {
        let chunks: ChatChunks
        var started = false
        var finishReason: String?
        var tools = 0
        var usage: (prompt: Int, completion: Int)?

        mutating func translate(_ event: ByteBuffer) -> [ByteBuffer] {
            guard let data = SSEFramer.data(of: event), let answer = JSONBody.parsed(ByteBuffer(string: data)) else { return [] }
            if let error = answer["error"] as? JSONObject {
                finishReason = nil
                return [ChatChunks.errorEvent(status: error["code"] as? Int ?? 502, message: "The backend answered with an error: \(error["message"] as? String ?? "unknown")")]
            }
            var events: [ByteBuffer] = []
            if !started {
                started = true
                events.append(chunks.chunk(delta: ["role": "assistant", "content": ""]))
            }
            let (text, thinking, calls, reason) = GeminiBackend.read(answer)
            if !thinking.isEmpty { events.append(chunks.chunk(delta: ["reasoning_content": thinking])) }
            if !text.isEmpty { events.append(chunks.chunk(delta: ["content": text])) }
            for call in calls {
                var delta = GeminiBackend.toolCall(call, index: tools)
                delta["index"] = tools
                tools += 1
                events.append(chunks.chunk(delta: ["tool_calls": [delta]]))
            }
            if let reason { finishReason = reason }
            if let counted = GeminiBackend.usage(answer) { usage = counted }
            return events
        }

        func finish() -> [ByteBuffer] {
            guard let finishReason else { return [] }
            return [
                chunks.chunk(delta: [:], finishReason: GeminiBackend.finishReason(finishReason, calledTools: tools > 0)),
                chunks.usageChunk(prompt: usage?.prompt ?? 0, completion: usage?.completion ?? 0), SSE.done,
            ]
        }
    }
}
