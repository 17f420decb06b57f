import BodhiCore
import BodhiEngine
import BodhiModels
import Foundation
import NIOCore

/// Anthropic's Messages API (`POST /v1/messages`) on Bodhi's models: content blocks, system
/// prompts and tools are translated to the engine's chat completions, and answers back into
/// messages or Anthropic's stream of events.
public struct AnthropicService: Sendable {
    let inference: InferenceService

    public init(inference: InferenceService) {
        self.inference = inference
    }

    public func messages(_ body: ByteBuffer, allowed: [String]?) async throws -> TranslatedReply {
        let request = try JSONBody.object(from: body)
        guard let name = request["model"] as? String, !name.isEmpty else {
            throw BodhiError.invalidRequest("model: Field required", param: "model")
        }
        guard let maxTokens = request["max_tokens"] as? Int, maxTokens > 0 else {
            throw BodhiError.invalidRequest("max_tokens: Field required (a positive integer)", param: "max_tokens")
        }
        let served = try await inference.resolve(name, allowedBy: allowed)
        var chat = try Self.chatRequest(request)
        chat["model"] = served.name
        chat["max_tokens"] = maxTokens
        let stream = try JSONBody.flag(request, "stream") ?? false
        // Stop sequences are watched here, so that the answer can say which one matched: the
        // engine's own reply is streamed for that, and stopped at the match.
        let stops = StopSequences(request["stop_sequences"] as? [String] ?? [])
        if !stops.sequences.isEmpty { chat["stop"] = nil }
        chat["stream"] = stream || !stops.sequences.isEmpty
        if chat["stream"] as? Bool == true { chat["stream_options"] = ["include_usage": true] }

        let id = String("msg_" + UUID.random().lowercaseHex.prefix(24))
        let chatBody = JSONBody.buffer(chat)
        // Anthropic's own ranges hold (its clients send more stop sequences than OpenAI's four).
        let result = try await InferenceService.$translatedFromOtherAPI.withValue(true) {
            try await inference.handle(.chatCompletions, body: chatBody, allowedModels: nil)
        }
        switch result {
        case .complete(let status, _, let bytes):
            let object = (try? JSONBody.object(from: bytes)) ?? [:]
            guard status == 200 else { throw BodhiError.engineAnswered(status, object) }
            var message = Message(id: id, model: name)
            message.absorb(object)
            return .json(JSONBody.buffer(message.whole()))
        case .events(let events) where !stream:
            // A whole answer made of the engine's stream (its stop sequences watched).
            var message = Message(id: id, model: name)
            var watch = stops
            var failure: String?
            await events.forward { event in
                guard let object = Self.chunk(event) else { return }
                if let error = object["error"] as? JSONObject {
                    failure = error["message"] as? String ?? "The engine failed."
                    return
                }
                let (_, matched) = Self.absorb(object, into: &message, watching: &watch)
                if matched { throw StopMatched() }
            }
            if let failure { throw BodhiError(.engineFailed, status: 500, failure) }
            _ = message.flush(&watch)
            // A backend's model has no token count here; the answer stands without it.
            try? await countIfCut(&message, model: name, chat: chatBody, allowed: allowed)
            return .json(JSONBody.buffer(message.whole()))
        case .events(let events):
            return .stream(ChunkStream { emit in
                var message = Message(id: id, model: name)
                var watch = stops
                do {
                    for event in message.start() { try await emit(NamedEvent.sse(event)) }
                    await events.forward { event in
                        guard let object = Self.chunk(event) else { return }
                        if let error = object["error"] as? JSONObject {
                            message.failed = true
                            try await emit(NamedEvent.sse(["type": "error", "error": ["type": "api_error", "message": error["message"] ?? "the engine failed"]]))
                            return
                        }
                        let (translated, matched) = Self.absorb(object, into: &message, watching: &watch)
                        for event in translated { try await emit(NamedEvent.sse(event)) }
                        if matched { throw StopMatched() }
                    }
                    if !message.failed {
                        for event in message.flush(&watch) { try await emit(NamedEvent.sse(event)) }
                        try? await countIfCut(&message, model: name, chat: chatBody, allowed: allowed)
                        for event in message.finish() { try await emit(NamedEvent.sse(event)) }
                    }
                } catch {
                    return
                }
            })
        }
    }

    /// Ends the engine's stream where a stop sequence matched.
    private struct StopMatched: Error {}

    /// A chat completion chunk, or nil for the end marker and what is not one.
    private static func chunk(_ event: ByteBuffer) -> JSONObject? {
        guard let data = SSEFramer.data(of: event), data != "[DONE]" else { return nil }
        return JSONBody.parsed(ByteBuffer(string: data))
    }

    /// Absorbs a chunk whose text went through the stop-sequence watch: the events it makes, and
    /// whether a sequence matched (the text then ends before it).
    private static func absorb(_ object: JSONObject, into message: inout Message, watching watch: inout StopSequences) -> ([JSONObject], Bool) {
        guard !watch.sequences.isEmpty, var choices = object["choices"] as? [JSONObject], var choice = choices.first,
              var delta = choice["delta"] as? JSONObject, let piece = delta["content"] as? String
        else { return (message.absorb(object), false) }
        let (text, matched) = watch.feed(piece)
        delta["content"] = text.isEmpty ? nil : text
        choice["delta"] = delta
        if matched != nil { choice["finish_reason"] = "stop" }
        choices[0] = choice
        var changed = object
        changed["choices"] = choices
        message.generatedPieces += 1
        let events = message.absorb(changed)
        message.stopSequence = matched
        return (events, matched != nil)
    }

    /// Counts a message whose engine stream was cut at a stop sequence (no usage came): its prompt
    /// as the engine counts it, and a token per piece of text generated.
    private func countIfCut(_ message: inout Message, model: String, chat: ByteBuffer, allowed: [String]?) async throws {
        guard message.stopSequence != nil, message.inputTokens == 0 else { return }
        message.inputTokens = try await inference.promptTokens(model: model, chat: JSONBody.parsed(chat) ?? [:], allowed: allowed)
        message.outputTokens = max(message.outputTokens, message.generatedPieces)
    }

    /// `POST /v1/messages/count_tokens`: the tokens the request's prompt takes, `{"input_tokens"}`.
    public func countTokens(_ body: ByteBuffer, allowed: [String]?) async throws -> ByteBuffer {
        let request = try JSONBody.object(from: body)
        guard let name = request["model"] as? String, !name.isEmpty else {
            throw BodhiError.invalidRequest("model: Field required", param: "model")
        }
        let count = try await inference.promptTokens(model: name, chat: try Self.chatRequest(request), allowed: allowed)
        return JSONBody.buffer(["input_tokens": count])
    }

    // MARK: Requests

    /// The chat completion request for a Messages request.
    static func chatRequest(_ request: JSONObject) throws -> JSONObject {
        var messages: [JSONObject] = []
        switch request["system"] {
        case nil, is NSNull: break
        case let text as String: messages.append(["role": "system", "content": text])
        case let blocks as [JSONObject]: messages.append(["role": "system", "content": try text(of: blocks)])
        default: throw BodhiError.invalidRequest("system must be a string or a list of text blocks", param: "system")
        }
        guard let incoming = request["messages"] as? [JSONObject], !incoming.isEmpty else {
            throw BodhiError.invalidRequest("messages: Field required (a non-empty list)", param: "messages")
        }
        for message in incoming { messages += try chatMessages(message) }
        var chat: JSONObject = ["messages": messages]
        for (from, to) in [("temperature", "temperature"), ("top_p", "top_p"), ("top_k", "top_k"), ("stop_sequences", "stop")] {
            if let value = request[from] { chat[to] = value }
        }
        if let tools = request["tools"] as? [JSONObject] {
            chat["tools"] = tools.map { tool -> JSONObject in
                var function: JSONObject = ["name": tool["name"] ?? "", "parameters": tool["input_schema"] ?? ["type": "object"]]
                if let description = tool["description"] { function["description"] = description }
                return ["type": "function", "function": function]
            }
        }
        // Extended thinking as an effort the engine's templates read (`ReasoningControl`).
        if let thinking = request["thinking"] as? JSONObject {
            switch thinking["type"] as? String {
            case "enabled":
                chat["reasoning_effort"] = ReasoningControl.effort(forBudget: max(1, thinking["budget_tokens"] as? Int ?? 4096))
            case "disabled": chat["reasoning_effort"] = "none"
            default: throw BodhiError.invalidRequest("thinking.type must be enabled or disabled", param: "thinking")
            }
        }
        if let choice = request["tool_choice"] as? JSONObject {
            switch choice["type"] as? String {
            case "auto": chat["tool_choice"] = "auto"
            case "any": chat["tool_choice"] = "required"
            case "none": chat["tool_choice"] = "none"
            case "tool": chat["tool_choice"] = ["type": "function", "function": ["name": choice["name"] ?? ""]]
            default: throw BodhiError.invalidRequest("tool_choice.type must be auto, any, tool or none", param: "tool_choice")
            }
        }
        return chat
    }

    /// One Anthropic message as chat messages: tool results become `tool` messages of their own.
    static func chatMessages(_ message: JSONObject) throws -> [JSONObject] {
        guard let role = message["role"] as? String, role == "user" || role == "assistant" else {
            throw BodhiError.invalidRequest("messages: role must be user or assistant", param: "messages")
        }
        if let text = message["content"] as? String { return [["role": role, "content": text]] }
        guard let blocks = message["content"] as? [JSONObject] else {
            throw BodhiError.invalidRequest("messages: content must be a string or a list of content blocks", param: "messages")
        }
        var texts: [String] = []
        var images: [String] = []
        var toolCalls: [JSONObject] = []
        var toolResults: [JSONObject] = []
        for block in blocks {
            switch block["type"] as? String {
            case "text":
                texts.append(block["text"] as? String ?? "")
            case "tool_use":
                let input = (try? JSONSerialization.data(withJSONObject: block["input"] ?? [String: Any]()))
                    .map { String(decoding: $0, as: UTF8.self) } ?? "{}"
                toolCalls.append(["id": block["id"] ?? "", "type": "function", "function": ["name": block["name"] ?? "", "arguments": input]])
            case "tool_result":
                let content: String
                switch block["content"] {
                case let text as String: content = text
                case let inner as [JSONObject]: content = try text(of: inner)
                default: content = ""
                }
                toolResults.append(["role": "tool", "tool_call_id": block["tool_use_id"] ?? "", "content": content])
            case "image":
                let source = block["source"] as? JSONObject ?? [:]
                switch source["type"] as? String {
                case "base64":
                    guard let type = source["media_type"] as? String, let data = source["data"] as? String else {
                        throw BodhiError.invalidRequest("messages: an image's base64 source needs media_type and data", param: "messages")
                    }
                    images.append(ChatContent.dataURL(mediaType: type, base64: data))
                case "url":
                    guard let url = source["url"] as? String else { throw BodhiError.invalidRequest("messages: an image's url source needs a url", param: "messages") }
                    images.append(url)
                default:
                    throw BodhiError.invalidRequest("messages: an image's source must be base64 or url", param: "messages")
                }
            case "document":
                throw BodhiError.invalidRequest("this server does not read document content (PDF); send its text", param: "messages")
            default:
                throw BodhiError.invalidRequest("unknown content block type '\(block["type"] as? String ?? "")'", param: "messages")
            }
        }
        var result = toolResults
        if !texts.isEmpty || !images.isEmpty || !toolCalls.isEmpty {
            var chat: JSONObject = ["role": role, "content": ChatContent.content(texts: texts, imageURLs: images)]
            if !toolCalls.isEmpty { chat["tool_calls"] = toolCalls }
            result.append(chat)
        }
        return result
    }

    static func text(of blocks: [JSONObject]) throws -> String {
        try blocks.map { block in
            guard block["type"] as? String == "text" else {
                throw BodhiError.invalidRequest("only text blocks are supported here", param: "messages")
            }
            return block["text"] as? String ?? ""
        }.joined(separator: "\n")
    }
}

extension AnthropicService {
    /// Builds a message from a whole chat completion or its stream chunks, and the stream's
    /// events on the way.
    struct Message {
        let id: String
        let model: String
        var text = ""
        /// The model's reasoning, as a thinking block first.
        var thinking = ""
        var tools = ToolCalls()
        var finishReason: String?
        var inputTokens = 0
        var outputTokens = 0
        var failed = false
        /// The stop sequence that ended the text, when one did.
        var stopSequence: String?
        /// Pieces of text the engine generated, counted where no usage comes (a stream cut at a stop sequence).
        var generatedPieces = 0
        /// The content block open in the stream, and the next block's index.
        var openBlock: (index: Int, kind: String, toolIndex: Int?)?
        var nextBlock = 0

        init(id: String, model: String) {
            self.id = id
            self.model = model
        }

        func envelope(content: [JSONObject], stopReason: String?) -> JSONObject {
            [
                "id": id, "type": "message", "role": "assistant", "model": model, "content": content,
                "stop_reason": stopReason ?? NSNull(), "stop_sequence": stopSequence.map { $0 as Any } ?? NSNull(),
                "usage": ["input_tokens": inputTokens, "output_tokens": outputTokens],
            ]
        }

        var stopReason: String {
            if stopSequence != nil { return "stop_sequence" }
            switch finishReason {
            case "length": return "max_tokens"
            case "tool_calls": return "tool_use"
            default: return tools.isEmpty ? "end_turn" : "tool_use"
            }
        }

        func whole() -> JSONObject {
            var content: [JSONObject] = []
            if !thinking.isEmpty { content.append(["type": "thinking", "thinking": thinking, "signature": ""]) }
            if !text.isEmpty { content.append(["type": "text", "text": text]) }
            for tool in tools.ordered {
                content.append(["type": "tool_use", "id": tool.id, "name": tool.name, "input": tool.input])
            }
            return envelope(content: content, stopReason: stopReason)
        }

        func start() -> [JSONObject] {
            [["type": "message_start", "message": envelope(content: [], stopReason: nil)], ["type": "ping"]]
        }

        /// Takes a whole response or a chunk; returns the stream events it makes.
        @discardableResult
        mutating func absorb(_ object: JSONObject) -> [JSONObject] {
            if let usage = object["usage"] as? JSONObject {
                inputTokens = usage["prompt_tokens"] as? Int ?? inputTokens
                outputTokens = usage["completion_tokens"] as? Int ?? outputTokens
            }
            guard let choice = (object["choices"] as? [JSONObject])?.first else { return [] }
            if let reason = choice["finish_reason"] as? String { finishReason = reason }
            if let message = choice["message"] as? JSONObject {
                text = message["content"] as? String ?? ""
                thinking = message["reasoning_content"] as? String ?? ""
                tools.absorb(message["tool_calls"])
                return []
            }
            guard let delta = choice["delta"] as? JSONObject else { return [] }
            var events: [JSONObject] = []
            if let piece = delta["reasoning_content"] as? String, !piece.isEmpty {
                if openBlock?.kind != "thinking" {
                    events += closeBlock()
                    events.append(openBlock(kind: "thinking", block: ["type": "thinking", "thinking": "", "signature": ""], toolIndex: nil))
                }
                thinking += piece
                events.append(["type": "content_block_delta", "index": openBlock!.index, "delta": ["type": "thinking_delta", "thinking": piece]])
            }
            if let piece = delta["content"] as? String, !piece.isEmpty {
                if openBlock?.kind != "text" {
                    events += closeBlock()
                    events.append(openBlock(kind: "text", block: ["type": "text", "text": ""], toolIndex: nil))
                }
                text += piece
                events.append(["type": "content_block_delta", "index": openBlock!.index, "delta": ["type": "text_delta", "text": piece]])
            }
            for piece in tools.absorb(delta["tool_calls"]) {
                if piece.isNew, let tool = tools[piece.index] {
                    events += closeBlock()
                    events.append(openBlock(
                        kind: "tool_use", block: ["type": "tool_use", "id": tool.id, "name": tool.name, "input": [String: Any]()],
                        toolIndex: piece.index))
                }
                if !piece.arguments.isEmpty, let open = openBlock, open.toolIndex == piece.index {
                    events.append(["type": "content_block_delta", "index": open.index, "delta": ["type": "input_json_delta", "partial_json": piece.arguments]])
                }
            }
            return events
        }

        private mutating func openBlock(kind: String, block: JSONObject, toolIndex: Int?) -> JSONObject {
            openBlock = (nextBlock, kind, toolIndex)
            nextBlock += 1
            return ["type": "content_block_start", "index": openBlock!.index, "content_block": block]
        }

        private mutating func closeBlock() -> [JSONObject] {
            guard let open = openBlock else { return [] }
            openBlock = nil
            return [["type": "content_block_stop", "index": open.index]]
        }

        /// Text held back by the watch, once the engine's text ended without a match: it joins the
        /// message, and the stream events that carry it.
        mutating func flush(_ watch: inout StopSequences) -> [JSONObject] {
            let held = watch.flush()
            guard !held.isEmpty else { return [] }
            return absorb(["choices": [["delta": ["content": held]]]])
        }

        mutating func finish() -> [JSONObject] {
            var events = closeBlock()
            events.append([
                "type": "message_delta", "delta": ["stop_reason": stopReason, "stop_sequence": stopSequence.map { $0 as Any } ?? NSNull()],
                "usage": ["input_tokens": inputTokens, "output_tokens": outputTokens],
            ])
            events.append(["type": "message_stop"])
            return events
        }
    }
}
