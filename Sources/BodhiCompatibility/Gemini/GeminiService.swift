import BodhiCore
import BodhiEngine
import Foundation
import NIOCore

/// Google's Gemini API (`/v1beta/models/{model}:generateContent` and its kin) on Bodhi's models:
/// contents, system instruction, function declarations and generation config become a chat
/// completion; its answer comes back as candidates, whole or as Gemini's stream of responses.
public struct GeminiService: Sendable {
    let inference: InferenceService

    public init(inference: InferenceService) {
        self.inference = inference
    }

    /// What a `models/{model}:{method}` path asks for.
    public enum Method: String, Sendable {
        case generateContent, streamGenerateContent, countTokens, embedContent, batchEmbedContents
    }

    /// `generateContent` or, with `stream`, `streamGenerateContent` (SSE).
    public func generate(model: String, _ body: ByteBuffer, stream: Bool, allowed: [String]?) async throws -> TranslatedReply {
        let request = Self.camelCased(try JSONBody.object(from: body))
        let served = try await inference.resolve(model, allowedBy: allowed)
        var chat = try Self.chatRequest(request)
        chat["model"] = served.name
        chat["stream"] = stream
        if stream { chat["stream_options"] = ["include_usage": true] }
        let responseID = UUID.random().lowercaseHex
        let result = try await InferenceService.$translatedFromOtherAPI.withValue(true) {
            try await inference.handle(.chatCompletions, body: JSONBody.buffer(chat), allowedModels: nil)
        }
        switch result {
        case .complete(let status, _, let bytes):
            let object = JSONBody.parsed(bytes) ?? [:]
            guard status == 200 else { throw BodhiError.engineAnswered(status, object) }
            var candidate = Candidate()
            candidate.absorb(completion: object)
            return .json(JSONBody.buffer(candidate.response(model: model, id: responseID, final: true)))
        case .events(let events):
            return .stream(ChunkStream { emit in
                var candidate = Candidate()
                do {
                    var failure: String?
                    await events.forward { event in
                        guard failure == nil, let data = SSEFramer.data(of: event), data != "[DONE]",
                              let object = JSONBody.parsed(ByteBuffer(string: data)) else { return }
                        if let error = object["error"] as? JSONObject {
                            failure = error["message"] as? String ?? "The engine failed."
                            return
                        }
                        if let text = candidate.absorb(chunk: object) {
                            try await emit(SSEFramer.event(candidate.response(model: model, id: responseID, parts: text, final: false)))
                        }
                    }
                    if let failure {
                        return try await emit(SSEFramer.event(["error": ["code": 500, "message": failure, "status": "INTERNAL"]]))
                    }
                    try await emit(SSEFramer.event(candidate.response(model: model, id: responseID, parts: candidate.callParts, final: true)))
                } catch {
                    return  // the client went away
                }
            })
        }
    }

    /// `embedContent` (one `content`) or `batchEmbedContents` (`requests`, each with its content).
    public func embed(model: String, _ body: ByteBuffer, batch: Bool, allowed: [String]?) async throws -> ByteBuffer {
        let request = Self.camelCased(try JSONBody.object(from: body))
        let contents: [JSONObject]
        if batch {
            guard let requests = request["requests"] as? [JSONObject], !requests.isEmpty else {
                throw BodhiError.invalidRequest("requests: Field required (a non-empty list).", param: "requests")
            }
            contents = try requests.enumerated().map { index, item in
                guard let content = item["content"] as? JSONObject else {
                    throw BodhiError.invalidRequest("requests[\(index)].content: Field required.", param: "requests[\(index)].content")
                }
                return content
            }
        } else {
            guard let content = request["content"] as? JSONObject else {
                throw BodhiError.invalidRequest("content: Field required.", param: "content")
            }
            contents = [content]
        }
        let texts = contents.map { content in ((content["parts"] as? [JSONObject]) ?? []).compactMap { $0["text"] as? String }.joined(separator: "\n") }
        let served = try await inference.resolve(model, allowedBy: allowed)
        var embedding: JSONObject = ["model": served.name, "input": texts]
        if let dimensions = request["outputDimensionality"] ?? (request["requests"] as? [JSONObject])?.first?["outputDimensionality"] {
            embedding["dimensions"] = dimensions
        }
        guard case .complete(let status, _, let bytes) = try await inference.handle(.embeddings, body: JSONBody.buffer(embedding), allowedModels: nil)
        else { throw BodhiError.internalError("An embedding came back as a stream.") }
        let object = JSONBody.parsed(bytes) ?? [:]
        guard status == 200 else { throw BodhiError.engineAnswered(status, object) }
        let vectors = ((object["data"] as? [JSONObject]) ?? []).map { ["values": $0["embedding"] ?? [Any]()] as JSONObject }
        return JSONBody.buffer(batch ? ["embeddings": vectors] : ["embedding": vectors.first ?? ["values": [Any]()]])
    }

    /// `countTokens`: the tokens of `contents` (or of a whole `generateContentRequest`), `{"totalTokens"}`.
    public func countTokens(model: String, _ body: ByteBuffer, allowed: [String]?) async throws -> ByteBuffer {
        let request = Self.camelCased(try JSONBody.object(from: body))
        let generate = request["generateContentRequest"] as? JSONObject ?? request
        let count = try await inference.promptTokens(model: model, chat: try Self.chatRequest(generate), allowed: allowed)
        return JSONBody.buffer(["totalTokens": count])
    }

    // MARK: Requests

    /// A request with its field names in lowerCamelCase: Google's API reads protocol buffers'
    /// JSON, which takes either `mime_type` or `mimeType`, and its clients send both (google-genai
    /// sends a part's `inline_data` contents as `mime_type`). Names chosen by the caller — function
    /// arguments and responses, a schema's properties, JSON schemas — stay as they are.
    static func camelCased(_ object: JSONObject) -> JSONObject {
        var result: JSONObject = [:]
        for (key, value) in object {
            let name = camelCase(key)
            result[name] = freeForm.contains(name) ? value : camelCasedValue(value)
        }
        return result
    }

    private static func camelCasedValue(_ value: Any) -> Any {
        if let object = value as? JSONObject { return camelCased(object) }
        if let list = value as? [Any] { return list.map(camelCasedValue) }
        return value
    }

    private static func camelCase(_ key: String) -> String {
        guard key.contains("_") else { return key }
        let words = key.split(separator: "_", omittingEmptySubsequences: true)
        guard let first = words.first else { return key }
        return String(first) + words.dropFirst().map { $0.prefix(1).uppercased() + $0.dropFirst() }.joined()
    }

    private static let freeForm: Set<String> = ["args", "response", "properties", "parametersJsonSchema", "responseJsonSchema", "example", "default", "labels"]

    /// The chat completion request (without `model` and `stream`) for a `generateContent` body.
    static func chatRequest(_ request: JSONObject) throws -> JSONObject {
        var messages: [JSONObject] = []
        if let system = request["systemInstruction"] {
            let text = try Self.text(of: system, param: "systemInstruction")
            if !text.isEmpty { messages.append(["role": "system", "content": text]) }
        }
        guard let contents = request["contents"] as? [JSONObject], !contents.isEmpty else {
            throw BodhiError.invalidRequest("contents: Field required (a non-empty list).", param: "contents")
        }
        var calls = CallIDs()
        for (index, content) in contents.enumerated() {
            messages += try chatMessages(content, param: "contents[\(index)]", calls: &calls)
        }
        var chat: JSONObject = ["messages": messages]
        if let tools = request["tools"] {
            guard let list = tools as? [JSONObject] else { throw BodhiError.invalidRequest("tools must be a list.", param: "tools") }
            var declared: [JSONObject] = []
            for tool in list {
                guard let declarations = tool["functionDeclarations"] as? [JSONObject] else {
                    throw BodhiError.invalidRequest("Only functionDeclarations tools are supported here.", param: "tools")
                }
                for declaration in declarations {
                    guard let name = declaration["name"] as? String, !name.isEmpty else {
                        throw BodhiError.invalidRequest("tools: each function declaration needs a name.", param: "tools")
                    }
                    var function: JSONObject = ["name": name]
                    if let description = declaration["description"] { function["description"] = description }
                    function["parameters"] = declaration["parametersJsonSchema"] ?? (declaration["parameters"]).map(jsonSchema) ?? ["type": "object"]
                    declared.append(["type": "function", "function": function])
                }
            }
            if !declared.isEmpty { chat["tools"] = declared }
        }
        if let config = (request["toolConfig"] as? JSONObject)?["functionCallingConfig"] as? JSONObject {
            let allowed = config["allowedFunctionNames"] as? [String] ?? []
            switch (config["mode"] as? String)?.uppercased() {
            case nil, "AUTO", "MODE_UNSPECIFIED": break
            case "NONE": chat["tool_choice"] = "none"
            case "ANY", "VALIDATED":
                if allowed.count == 1 {
                    chat["tool_choice"] = ["type": "function", "function": ["name": allowed[0]]]
                } else {
                    if !allowed.isEmpty, let tools = chat["tools"] as? [JSONObject] {
                        chat["tools"] = tools.filter { allowed.contains(($0["function"] as? JSONObject)?["name"] as? String ?? "") }
                    }
                    chat["tool_choice"] = "required"
                }
            case let other:
                throw BodhiError.invalidRequest("toolConfig.functionCallingConfig.mode '\(other ?? "")' is not one of AUTO, ANY, NONE.",
                                                param: "toolConfig")
            }
        }
        if let config = request["generationConfig"] {
            guard let config = config as? JSONObject else {
                throw BodhiError.invalidRequest("generationConfig must be an object.", param: "generationConfig")
            }
            for (from, to) in [("temperature", "temperature"), ("topP", "top_p"), ("topK", "top_k"), ("maxOutputTokens", "max_tokens"),
                               ("stopSequences", "stop"), ("seed", "seed"), ("presencePenalty", "presence_penalty"),
                               ("frequencyPenalty", "frequency_penalty")] {
                if let value = config[from], !(value is NSNull) { chat[to] = value }
            }
            if let count = config["candidateCount"] as? Int, count != 1 {
                throw BodhiError.invalidRequest("generationConfig.candidateCount: only 1 candidate is generated here.", param: "generationConfig.candidateCount")
            }
            if let thinking = config["thinkingConfig"] as? JSONObject {
                if let budget = thinking["thinkingBudget"] as? Int {
                    chat["reasoning_effort"] = ReasoningControl.effort(forBudget: budget)
                } else if let level = (thinking["thinkingLevel"] as? String)?.lowercased(), ["low", "medium", "high"].contains(level) {
                    chat["reasoning_effort"] = level
                }
            }
            if let schema = config["responseJsonSchema"] ?? (config["responseSchema"]).map(jsonSchema) {
                chat["response_format"] = ["type": "json_schema", "json_schema": ["name": "response", "schema": schema]]
            } else if config["responseMimeType"] as? String == "application/json" {
                chat["response_format"] = ["type": "json_object"]
            }
        }
        return chat
    }

    /// The ids chat completions give tool calls, which Gemini names by function: a response
    /// answers the earliest unanswered call of its function (or the call with its `id`).
    struct CallIDs {
        private var unanswered: [String: [String]] = [:]
        private var count = 0

        mutating func call(_ name: String, id: String?) -> String {
            count += 1
            let made = id ?? "call_\(count)"
            unanswered[name, default: []].append(made)
            return made
        }

        mutating func response(_ name: String, id: String?) -> String {
            if let id {
                unanswered[name]?.removeAll { $0 == id }
                return id
            }
            guard var waiting = unanswered[name], !waiting.isEmpty else { return name }
            let first = waiting.removeFirst()
            unanswered[name] = waiting
            return first
        }
    }

    private static func chatMessages(_ content: JSONObject, param: String, calls: inout CallIDs) throws -> [JSONObject] {
        let role = content["role"] as? String ?? "user"
        guard ["user", "model", "function", "tool"].contains(role) else {
            throw BodhiError.invalidRequest("\(param).role must be user or model.", param: "\(param).role")
        }
        guard let parts = content["parts"] as? [JSONObject] else {
            throw BodhiError.invalidRequest("\(param).parts: Field required (a list of parts).", param: "\(param).parts")
        }
        var texts: [String] = []
        var images: [String] = []
        var toolCalls: [JSONObject] = []
        var results: [JSONObject] = []
        for (index, part) in parts.enumerated() {
            if part["thought"] as? Bool == true { continue }
            if let text = part["text"] as? String {
                texts.append(text)
            } else if let call = part["functionCall"] as? JSONObject, let name = call["name"] as? String {
                let arguments = String(buffer: JSONBody.buffer(call["args"] ?? JSONObject()))
                toolCalls.append(["id": calls.call(name, id: call["id"] as? String), "type": "function",
                                  "function": ["name": name, "arguments": arguments]])
            } else if let response = part["functionResponse"] as? JSONObject, let name = response["name"] as? String {
                let output = String(buffer: JSONBody.buffer(response["response"] ?? JSONObject()))
                results.append(["role": "tool", "tool_call_id": calls.response(name, id: response["id"] as? String), "content": output])
            } else if let data = part["inlineData"] as? JSONObject, let mime = data["mimeType"] as? String, let base64 = data["data"] as? String {
                // Protocol buffers' JSON writes bytes in either base64 alphabet; data URLs take the standard one.
                let standard = base64.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
                images.append(ChatContent.dataURL(mediaType: mime, base64: standard))
            } else if let file = part["fileData"] as? JSONObject, let uri = file["fileUri"] as? String {
                images.append(uri)
            } else {
                throw BodhiError.invalidRequest("\(param).parts[\(index)] is not a part this server takes (text, inlineData, fileData, functionCall, functionResponse).",
                                                param: "\(param).parts[\(index)]")
            }
        }
        var messages = results
        let chatRole = role == "model" ? "assistant" : "user"
        if !texts.isEmpty || !images.isEmpty || !toolCalls.isEmpty {
            var message: JSONObject = ["role": chatRole, "content": ChatContent.content(texts: texts, imageURLs: images, separator: "")]
            if !toolCalls.isEmpty { message["tool_calls"] = toolCalls }
            messages.append(message)
        }
        return messages
    }

    /// A `Content` (or a bare string) as text: its text parts joined.
    private static func text(of value: Any, param: String) throws -> String {
        if let text = value as? String { return text }
        guard let content = value as? JSONObject, let parts = content["parts"] as? [JSONObject] else {
            throw BodhiError.invalidRequest("\(param) must be a content with text parts.", param: param)
        }
        return parts.compactMap { $0["text"] as? String }.joined(separator: "\n")
    }

    /// A Gemini `Schema` (OpenAPI's subset, types in capitals) as JSON Schema.
    static func jsonSchema(_ value: Any) -> Any {
        if let list = value as? [Any] { return list.map(jsonSchema) }
        guard let schema = value as? JSONObject else { return value }
        var result: JSONObject = [:]
        for (key, inner) in schema {
            switch key {
            case "type": result["type"] = (inner as? String)?.lowercased() ?? inner
            case "properties":
                result["properties"] = (inner as? JSONObject)?.mapValues(jsonSchema) ?? inner
            case "items", "anyOf": result[key] = jsonSchema(inner)
            case "nullable", "propertyOrdering", "format": continue
            default: result[key] = inner
            }
        }
        return result
    }
}

extension GeminiService {
    /// A candidate built from a whole chat completion or its stream chunks.
    struct Candidate {
        var text = ""
        var thinking = ""
        var tools = ToolCalls()
        var finishReason: String?
        var usage: JSONObject?

        /// A whole completion.
        mutating func absorb(completion: JSONObject) {
            let choice = (completion["choices"] as? [JSONObject])?.first ?? [:]
            let message = choice["message"] as? JSONObject ?? [:]
            text = message["content"] as? String ?? ""
            thinking = message["reasoning_content"] as? String ?? ""
            tools.absorb(message["tool_calls"])
            finishReason = choice["finish_reason"] as? String
            absorbUsage(completion["usage"])
        }

        /// A stream chunk; the parts to send now (text and thinking as they come; calls wait for the end).
        mutating func absorb(chunk: JSONObject) -> [JSONObject]? {
            absorbUsage(chunk["usage"])
            guard let choice = (chunk["choices"] as? [JSONObject])?.first else { return nil }
            if let reason = choice["finish_reason"] as? String { finishReason = reason }
            let delta = choice["delta"] as? JSONObject ?? [:]
            tools.absorb(delta["tool_calls"])
            var parts: [JSONObject] = []
            if let thought = delta["reasoning_content"] as? String, !thought.isEmpty {
                thinking += thought
                parts.append(["text": thought, "thought": true])
            }
            if let piece = delta["content"] as? String, !piece.isEmpty {
                text += piece
                parts.append(["text": piece])
            }
            return parts.isEmpty ? nil : parts
        }

        private mutating func absorbUsage(_ value: Any?) {
            if let counts = value as? JSONObject { usage = counts }
        }

        /// The function calls made, as parts.
        var callParts: [JSONObject] {
            tools.ordered.map { ["functionCall": ["name": $0.name, "args": $0.input, "id": $0.id] as JSONObject] }
        }

        /// Every part of the whole answer.
        var allParts: [JSONObject] {
            var parts: [JSONObject] = []
            if !thinking.isEmpty { parts.append(["text": thinking, "thought": true]) }
            if !text.isEmpty || tools.isEmpty { parts.append(["text": text]) }
            return parts + callParts
        }

        var geminiFinishReason: String {
            switch finishReason {
            case "length": "MAX_TOKENS"
            case "content_filter": "SAFETY"
            default: "STOP"
            }
        }

        /// A `GenerateContentResponse`: with `parts` (a stream's piece), or every part; the
        /// finish reason and usage when `final`.
        func response(model: String, id: String, parts: [JSONObject]? = nil, final: Bool) -> JSONObject {
            var candidate: JSONObject = ["content": ["role": "model", "parts": parts ?? allParts], "index": 0]
            var response: JSONObject = ["modelVersion": model, "responseId": id]
            if final {
                candidate["finishReason"] = geminiFinishReason
                let prompt = usage?["prompt_tokens"] as? Int ?? 0
                let completion = usage?["completion_tokens"] as? Int ?? 0
                response["usageMetadata"] = ["promptTokenCount": prompt, "candidatesTokenCount": completion, "totalTokenCount": prompt + completion]
            }
            response["candidates"] = [candidate]
            return response
        }
    }
}
