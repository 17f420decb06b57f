import BodhiCore
import BodhiEngine
import BodhiModels
import Foundation
import NIOCore
import NIOHTTP1

/// Anthropic's Messages API: OpenAI's chat requests translated to it, and its answers, streamed
/// or whole, back to OpenAI's shape (tools and usage included).
struct AnthropicBackend: RemoteBackend {
    let config: BackendConfig
    let apiKey: String?
    let transport: BackendTransport

    static let version = "2023-06-01"
    /// Anthropic requires `max_tokens`; this is what a request that sets none gets.
    static let defaultMaxTokens = 4096

    var base: String { Self.base(config.url, defaultPath: "/v1") }

    var headers: HTTPHeaders {
        var headers = HTTPHeaders()
        if let apiKey { headers.add(name: "x-api-key", value: apiKey) }
        headers.add(name: "anthropic-version", value: Self.version)
        return headers
    }

    func listModels() async throws -> [ListedModel] {
        let url = base + "/models?limit=1000"
        guard let data = (try await transport.getJSON(url, headers: headers) as? JSONObject)?["data"] as? [JSONObject] else {
            throw BodhiError(.backendFailed, status: 502, "The backend '\(name)' answered \(url) without a model list ('data').")
        }
        return data.compactMap { model in
            guard let id = model["id"] as? String else { return nil }
            return ListedModel(id: id, ownedBy: "anthropic", created: (model["created_at"] as? String).flatMap(Self.date))
        }
    }

    func send(_ request: BackendRequest) async throws -> BackendExchange {
        guard request.operation == .chatCompletions else {
            throw BodhiError.invalidRequest(
                "'\(request.served.name)' is a model of the backend '\(name)' (Anthropic), which serves chat completions only.", param: "model")
        }
        let (body, model) = try upstreamBody(request)
        let chat = try ChatRequest(body)
        let upstream = try Self.messagesRequest(chat, model: model.id)
        let reply = try await transport.send(.POST, base + "/messages", headers: headers, body: JSONBody.buffer(upstream), client: request.caller.connection)
        let chunks = ChatChunks(model: request.served.name)
        guard reply.status == 200 else { return BackendExchange(reply: try await reply.translatingError(backend: name), model: model.name) }
        if chat.stream {
            return BackendExchange(reply: reply.translatingEvents(with: StreamTranslator(chunks: chunks)), model: model.name)
        }
        let whole = try await reply.translatingWhole(upTo: InferenceService.maxResponseBytes) { bytes in
            guard let message = JSONBody.parsed(bytes) else {
                return OpenAIError.buffer(status: 502, message: "The backend '\(name)' answered with something that is not JSON.")
            }
            return Self.completion(message, chunks: chunks)
        }
        return BackendExchange(reply: whole, model: model.name)
    }

    // MARK: Translation

    static func messagesRequest(_ chat: ChatRequest, model: String) throws -> JSONObject {
        var request: JSONObject = ["model": model, "max_tokens": chat.maxTokens ?? defaultMaxTokens]
        let system = chat.system.filter { !$0.isEmpty }.joined(separator: "\n\n")
        if !system.isEmpty { request["system"] = system }
        var messages: [JSONObject] = []
        func append(_ role: String, _ blocks: [JSONObject]) {
            guard !blocks.isEmpty else { return }
            // Turns alternate: consecutive blocks of one role go in one message.
            if var last = messages.last, last["role"] as? String == role {
                last["content"] = (last["content"] as? [JSONObject] ?? []) + blocks
                messages[messages.count - 1] = last
            } else {
                messages.append(["role": role, "content": blocks])
            }
        }
        for message in chat.messages {
            switch message {
            case .user(let parts):
                append("user", parts.map { part in
                    switch part {
                    case .text(let text): return ["type": "text", "text": text]
                    case .image(let mediaType, let data, let url):
                        if let data { return ["type": "image", "source": ["type": "base64", "media_type": mediaType ?? "image/png", "data": data] as JSONObject] }
                        return ["type": "image", "source": ["type": "url", "url": url ?? ""] as JSONObject]
                    }
                })
            case .assistant(let text, let calls):
                var blocks: [JSONObject] = text.isEmpty ? [] : [["type": "text", "text": text]]
                blocks += calls.map { ["type": "tool_use", "id": $0.id, "name": $0.name, "input": $0.input] }
                append("assistant", blocks)
            case .tool(let id, let content):
                append("user", [["type": "tool_result", "tool_use_id": id, "content": content]])
            }
        }
        request["messages"] = messages
        if let value = chat.temperature { request["temperature"] = value }
        if let value = chat.topP { request["top_p"] = value }
        if let value = chat.topK { request["top_k"] = value }
        if !chat.stop.isEmpty { request["stop_sequences"] = chat.stop }
        if chat.stream { request["stream"] = true }
        if let user = chat.user { request["metadata"] = ["user_id": user] }
        if !chat.tools.isEmpty {
            request["tools"] = chat.tools.map { tool -> JSONObject in
                var object: JSONObject = ["name": tool.name, "input_schema": tool.parameters]
                if let description = tool.description { object["description"] = description }
                return object
            }
        }
        var choice: JSONObject?
        switch chat.toolChoice {
        case .auto: choice = ["type": "auto"]
        case .off: choice = ["type": "none"]
        case .required: choice = ["type": "any"]
        case .function(let name): choice = ["type": "tool", "name": name]
        case nil: if chat.parallelToolCalls == false, !chat.tools.isEmpty { choice = ["type": "auto"] }
        }
        if chat.parallelToolCalls == false, choice != nil { choice?["disable_parallel_tool_use"] = true }
        if let choice, !chat.tools.isEmpty || choice["type"] as? String == "none" { request["tool_choice"] = choice }
        if let format = chat.responseFormat {
            throw BodhiError.invalidRequest(
                "response_format \(format.type) is not available on Anthropic's models; ask for JSON in the prompt, or use a tool.", param: "response_format")
        }
        return request
    }

    static func finishReason(_ stopReason: String?) -> String {
        switch stopReason {
        case "max_tokens": "length"
        case "tool_use": "tool_calls"
        case "refusal": "content_filter"
        default: "stop"
        }
    }

    /// Input tokens, cached ones included (Anthropic counts them apart).
    static func promptTokens(_ usage: JSONObject?) -> Int {
        ["input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens"].reduce(0) { $0 + (usage?[$1] as? Int ?? 0) }
    }

    static func completion(_ message: JSONObject, chunks: ChatChunks) -> ByteBuffer {
        var text = ""
        var calls: [JSONObject] = []
        for block in message["content"] as? [JSONObject] ?? [] {
            switch block["type"] as? String {
            case "text": text += block["text"] as? String ?? ""
            case "tool_use":
                calls.append(["id": block["id"] ?? "", "type": "function", "function": [
                    "name": block["name"] ?? "", "arguments": String(buffer: JSONBody.buffer(block["input"] ?? JSONObject())),
                ] as JSONObject])
            default: break
            }
        }
        let usage = message["usage"] as? JSONObject
        return chunks.completion(
            content: text.isEmpty && !calls.isEmpty ? nil : text, toolCalls: calls, finishReason: finishReason(message["stop_reason"] as? String),
            prompt: promptTokens(usage), completion: usage?["output_tokens"] as? Int ?? 0)
    }

    /// Anthropic's stream events as OpenAI's chunks.
    struct StreamTranslator: EventTranslator {
        let chunks: ChatChunks
        var promptTokens = 0
        var completionTokens = 0
        var finishReason: String?
        /// The OpenAI tool index of each content block that is a tool call.
        var toolIndex: [Int: Int] = [:]
        var ended = false

        mutating func translate(_ event: ByteBuffer) -> [ByteBuffer] {
            guard let data = SSEFramer.data(of: event), let object = JSONBody.parsed(ByteBuffer(string: data)) else { return [] }
            switch object["type"] as? String {
            case "message_start":
                let message = object["message"] as? JSONObject
                promptTokens = AnthropicBackend.promptTokens(message?["usage"] as? JSONObject)
                return [chunks.chunk(delta: ["role": "assistant", "content": ""])]
            case "content_block_start":
                guard let block = object["content_block"] as? JSONObject, block["type"] as? String == "tool_use",
                      let index = object["index"] as? Int else { return [] }
                let tool = toolIndex.count
                toolIndex[index] = tool
                return [chunks.chunk(delta: ["tool_calls": [[
                    "index": tool, "id": block["id"] ?? "", "type": "function",
                    "function": ["name": block["name"] ?? "", "arguments": ""] as JSONObject,
                ] as JSONObject]])]
            case "content_block_delta":
                let delta = object["delta"] as? JSONObject ?? [:]
                switch delta["type"] as? String {
                case "text_delta": return [chunks.chunk(delta: ["content": delta["text"] ?? ""])]
                case "thinking_delta": return [chunks.chunk(delta: ["reasoning_content": delta["thinking"] ?? ""])]
                case "input_json_delta":
                    guard let index = object["index"] as? Int, let tool = toolIndex[index] else { return [] }
                    return [chunks.chunk(delta: ["tool_calls": [[
                        "index": tool, "function": ["arguments": delta["partial_json"] ?? ""] as JSONObject,
                    ] as JSONObject]])]
                default: return []
                }
            case "message_delta":
                if let reason = (object["delta"] as? JSONObject)?["stop_reason"] as? String { finishReason = AnthropicBackend.finishReason(reason) }
                if let output = (object["usage"] as? JSONObject)?["output_tokens"] as? Int { completionTokens = output }
                return []
            case "message_stop":
                ended = true
                return [
                    chunks.chunk(delta: [:], finishReason: finishReason ?? "stop"),
                    chunks.usageChunk(prompt: promptTokens, completion: completionTokens), SSE.done,
                ]
            case "error":
                ended = true
                let error = object["error"] as? JSONObject
                let status = error?["type"] as? String == "rate_limit_error" ? 429 : 503
                return [ChatChunks.errorEvent(status: status, message: "The backend answered with an error: \(error?["message"] as? String ?? "unknown")")]
            default:
                return []
            }
        }

        func finish() -> [ByteBuffer] { [] }
    }

    static func date(_ text: String) -> Date? {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter.date(from: text) ?? ISO8601DateFormatter().date(from: text)
    }
}
