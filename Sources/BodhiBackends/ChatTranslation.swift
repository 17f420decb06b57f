import BodhiCore
import BodhiEngine
import Foundation

/// What OpenAI's Chat Completions request says, read once for the translations to other
/// providers' formats (Anthropic's Messages, Gemini's generateContent).
struct ChatRequest {
    /// A piece of a message's content.
    enum Part {
        case text(String)
        /// An image: a `data:` URL's media type and base64 data, or a plain URL.
        case image(mediaType: String?, data: String?, url: String?)
    }

    struct ToolCall {
        let id: String
        let name: String
        /// The arguments as JSON text (OpenAI's form).
        let arguments: String

        /// The arguments as an object, `{}` when they are not one.
        var input: JSONObject {
            (try? JSONSerialization.jsonObject(with: Data(arguments.utf8)) as? JSONObject) ?? [:]
        }
    }

    enum Message {
        case user([Part])
        case assistant(text: String, toolCalls: [ToolCall])
        /// A tool's result, answering the call `id`.
        case tool(id: String, content: String)
    }

    struct Tool {
        let name: String
        let description: String?
        let parameters: JSONObject
    }

    enum ToolChoice: Equatable {
        /// `auto`; `off` is OpenAI's `none`; `required`.
        case auto, off, required
        case function(String)
    }

    var system: [String] = []
    var messages: [Message] = []
    var tools: [Tool] = []
    var toolChoice: ToolChoice?
    var parallelToolCalls: Bool?
    var maxTokens: Int?
    var temperature: Double?
    var topP: Double?
    var topK: Int?
    var stop: [String] = []
    var seed: Int?
    var presencePenalty: Double?
    var frequencyPenalty: Double?
    var stream = false
    var user: String?
    /// `response_format`: nil, `json_object`, or `json_schema` with its schema.
    var responseFormat: (type: String, schema: JSONObject?)?

    init(_ body: JSONObject) throws {
        guard let messages = body["messages"] as? [JSONObject], !messages.isEmpty else {
            throw BodhiError.invalidRequest("'messages' must be a non-empty list of messages.", param: "messages")
        }
        for message in messages {
            let role = message["role"] as? String ?? ""
            switch role {
            case "system", "developer":
                system.append(Self.text(of: message["content"]))
            case "user":
                self.messages.append(.user(try Self.parts(of: message["content"])))
            case "assistant":
                let calls = (message["tool_calls"] as? [JSONObject] ?? []).enumerated().map { index, call in
                    let function = call["function"] as? JSONObject ?? [:]
                    let arguments = function["arguments"]
                    return ToolCall(
                        id: call["id"] as? String ?? "call_\(index)", name: function["name"] as? String ?? "",
                        arguments: arguments as? String ?? (arguments.map { String(decoding: JSONBody.buffer($0).readableBytesView, as: UTF8.self) } ?? "{}"))
                }
                self.messages.append(.assistant(text: Self.text(of: message["content"]), toolCalls: calls))
            case "tool", "function":
                self.messages.append(.tool(id: message["tool_call_id"] as? String ?? message["name"] as? String ?? "", content: Self.text(of: message["content"])))
            default:
                throw BodhiError.invalidRequest("A message's role must be system, developer, user, assistant or tool (got '\(role)').", param: "messages")
            }
        }
        for tool in body["tools"] as? [JSONObject] ?? [] {
            guard let function = tool["function"] as? JSONObject, let name = function["name"] as? String else {
                throw BodhiError.invalidRequest("Each tool must be {\"type\": \"function\", \"function\": {\"name\": ...}}.", param: "tools")
            }
            tools.append(Tool(
                name: name, description: function["description"] as? String,
                parameters: function["parameters"] as? JSONObject ?? ["type": "object", "properties": JSONObject()]))
        }
        switch body["tool_choice"] {
        case let text as String:
            switch text {
            case "auto": toolChoice = .auto
            case "none": toolChoice = .off
            case "required": toolChoice = .required
            default: throw BodhiError.invalidRequest("'tool_choice' must be auto, none, required or a function.", param: "tool_choice")
            }
        case let object as JSONObject:
            guard let name = (object["function"] as? JSONObject)?["name"] as? String else {
                throw BodhiError.invalidRequest("'tool_choice' names a function as {\"type\": \"function\", \"function\": {\"name\": ...}}.", param: "tool_choice")
            }
            toolChoice = .function(name)
        default: break
        }
        parallelToolCalls = body["parallel_tool_calls"] as? Bool
        maxTokens = (body["max_completion_tokens"] as? Int) ?? (body["max_tokens"] as? Int)
        temperature = (body["temperature"] as? NSNumber)?.doubleValue
        topP = (body["top_p"] as? NSNumber)?.doubleValue
        topK = body["top_k"] as? Int
        switch body["stop"] {
        case let text as String: stop = [text]
        case let list as [String]: stop = list
        default: break
        }
        seed = body["seed"] as? Int
        presencePenalty = (body["presence_penalty"] as? NSNumber)?.doubleValue
        frequencyPenalty = (body["frequency_penalty"] as? NSNumber)?.doubleValue
        stream = body["stream"] as? Bool ?? false
        user = body["user"] as? String
        if let format = body["response_format"] as? JSONObject, let type = format["type"] as? String, type != "text" {
            responseFormat = (type, (format["json_schema"] as? JSONObject)?["schema"] as? JSONObject)
        }
    }

    /// The text of a message's content: a string, or its text parts joined.
    static func text(of content: Any?) -> String {
        if let text = content as? String { return text }
        return (content as? [JSONObject] ?? []).compactMap { $0["text"] as? String }.joined(separator: "\n")
    }

    static func parts(of content: Any?) throws -> [Part] {
        if let text = content as? String { return [.text(text)] }
        guard let parts = content as? [JSONObject] else { return [.text("")] }
        return try parts.map { part in
            switch part["type"] as? String {
            case "text": return .text(part["text"] as? String ?? "")
            case "image_url":
                let url = (part["image_url"] as? JSONObject)?["url"] as? String ?? part["image_url"] as? String ?? ""
                if url.hasPrefix("data:"), let comma = url.firstIndex(of: ",") {
                    let header = url[url.index(url.startIndex, offsetBy: 5)..<comma]
                    let mediaType = header.split(separator: ";").first.map(String.init)
                    return .image(mediaType: mediaType, data: String(url[url.index(after: comma)...]), url: nil)
                }
                return .image(mediaType: nil, data: nil, url: url)
            default:
                throw BodhiError.invalidRequest("A message part must be text or image_url (got '\(part["type"] ?? "")').", param: "messages")
            }
        }
    }

    /// The name of the function the call `id` called, for formats that answer tools by name.
    func toolName(ofCall id: String) -> String? {
        for case .assistant(_, let calls) in messages {
            if let call = calls.first(where: { $0.id == id }) { return call.name }
        }
        return nil
    }
}
