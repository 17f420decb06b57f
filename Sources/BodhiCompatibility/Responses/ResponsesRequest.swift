import BodhiCore
import BodhiEngine
import Foundation

/// A Responses API request, checked and translated: its input as items (each with an id, as
/// they are stored and listed), and the chat completion fields it maps to.
///
/// `@unchecked Sendable`: every field is a `let` holding JSON values (strings, numbers, booleans,
/// `NSNull`, and arrays and dictionaries of them) that nothing mutates once it is made.
struct ResponsesRequest: @unchecked Sendable {
    let model: String
    let instructions: String?
    /// The input as items, each with its `id` and `type`.
    let items: [JSONObject]
    let previousResponseID: String?
    let stream: Bool
    let store: Bool
    /// What the response echoes of the request (`tools`, `tool_choice`, `text`, ...).
    let echo: JSONObject
    /// Chat completion fields other than `model`, `messages` and `stream`.
    let chatFields: JSONObject

    init(_ request: JSONObject) throws {
        guard let model = request["model"] as? String, !model.isEmpty else {
            throw BodhiError.invalidRequest("model: Field required (a model name).", param: "model")
        }
        self.model = model
        instructions = try Self.optional(request, "instructions", as: String.self, "a string")
        previousResponseID = try Self.optional(request, "previous_response_id", as: String.self, "a response id")
        stream = try JSONBody.flag(request, "stream") ?? false
        store = try JSONBody.flag(request, "store") ?? true
        switch request["input"] {
        case let text as String:
            items = [Self.message(role: "user", content: text)]
        case let list as [Any]:
            guard !list.isEmpty else { throw BodhiError.invalidRequest("input must not be empty.", param: "input") }
            items = try list.enumerated().map { try Self.item($1, at: $0) }
        case nil, is NSNull:
            throw BodhiError.invalidRequest("input: Field required (a string or a list of items).", param: "input")
        default:
            throw BodhiError.invalidRequest("input must be a string or a list of items.", param: "input")
        }

        var chat: JSONObject = [:]
        var echo: JSONObject = [:]
        // Their ranges are checked where every chat request's are (the engine request's scan).
        for key in ["temperature", "top_p"] where !(request[key] is NSNull) {
            if let value = request[key] { chat[key] = value }
        }
        if let value = try Self.optional(request, "max_output_tokens", as: Int.self, "a whole number") {
            guard value >= 1 else { throw BodhiError.invalidRequest("max_output_tokens must be at least 1.", param: "max_output_tokens") }
            chat["max_tokens"] = value
            echo["max_output_tokens"] = value
        }
        if let value = try JSONBody.flag(request, "parallel_tool_calls") {
            chat["parallel_tool_calls"] = value
        }
        let tools = try Self.tools(request["tools"])
        echo["tools"] = tools.map(\.echo)
        if !tools.isEmpty { chat["tools"] = tools.map(\.chat) }
        let choice = try Self.toolChoice(request["tool_choice"], tools: tools)
        echo["tool_choice"] = request["tool_choice"] ?? "auto"
        if let choice {
            chat["tool_choice"] = choice.choice
            if let only = choice.onlyTool { chat["tools"] = tools.filter { $0.name == only }.map(\.chat) }
        }
        let format = try Self.textFormat(request["text"])
        echo["text"] = ["format": format.echo]
        if let responseFormat = format.chat { chat["response_format"] = responseFormat }
        if let reasoning = request["reasoning"] as? JSONObject {
            echo["reasoning"] = reasoning
            if let effort = reasoning["effort"] as? String { chat["reasoning_effort"] = effort }
        }
        if let metadata = request["metadata"] as? JSONObject { echo["metadata"] = metadata }
        chatFields = chat
        self.echo = echo
    }

    // MARK: Fields

    private static func optional<Value>(_ request: JSONObject, _ key: String, as type: Value.Type, _ what: String) throws -> Value? {
        switch request[key] {
        case nil, is NSNull: return nil
        case let value as Value: return value
        default: throw BodhiError.invalidRequest("\(key) must be \(what).", param: key)
        }
    }

    struct Tool {
        let name: String
        let echo: JSONObject
        let chat: JSONObject
    }

    private static func tools(_ value: Any?) throws -> [Tool] {
        switch value {
        case nil, is NSNull: return []
        case let list as [JSONObject]:
            return try list.map { tool in
                guard tool["type"] as? String == "function" else {
                    throw BodhiError.invalidRequest(
                        "Only function tools are supported here; '\(tool["type"] as? String ?? "?")' is not.", param: "tools")
                }
                guard let name = tool["name"] as? String, !name.isEmpty else {
                    throw BodhiError.invalidRequest("tools: each function tool needs a name.", param: "tools")
                }
                var function: JSONObject = ["name": name, "parameters": tool["parameters"] ?? ["type": "object", "properties": [:] as JSONObject]]
                if let description = tool["description"] as? String { function["description"] = description }
                let echo: JSONObject = [
                    "type": "function", "name": name, "description": tool["description"] ?? NSNull(),
                    "parameters": tool["parameters"] ?? NSNull(), "strict": tool["strict"] ?? NSNull(),
                ]
                return Tool(name: name, echo: echo, chat: ["type": "function", "function": function])
            }
        default:
            throw BodhiError.invalidRequest("tools must be a list of tools.", param: "tools")
        }
    }

    /// The chat completion's `tool_choice`; a named function becomes "required" with that tool
    /// alone, which engines that only know auto, none and required can follow.
    private static func toolChoice(_ value: Any?, tools: [Tool]) throws -> (choice: String, onlyTool: String?)? {
        switch value {
        case nil, is NSNull: return nil
        case let choice as String:
            guard ["auto", "none", "required"].contains(choice) else {
                throw BodhiError.invalidRequest("tool_choice must be auto, none, required or a function.", param: "tool_choice")
            }
            if choice == "required", tools.isEmpty {
                throw BodhiError.invalidRequest("tool_choice 'required' needs tools.", param: "tool_choice")
            }
            return (choice, nil)
        case let object as JSONObject where object["type"] as? String == "function":
            guard let name = object["name"] as? String, tools.contains(where: { $0.name == name }) else {
                throw BodhiError.invalidRequest("tool_choice names a function that is not among the tools.", param: "tool_choice")
            }
            return ("required", name)
        default:
            throw BodhiError.invalidRequest("tool_choice must be auto, none, required or a function.", param: "tool_choice")
        }
    }

    private static func textFormat(_ value: Any?) throws -> (echo: JSONObject, chat: JSONObject?) {
        let plain: JSONObject = ["type": "text"]
        guard let text = value as? JSONObject, let format = text["format"] as? JSONObject else {
            if value != nil, !(value is NSNull), !(value is JSONObject) {
                throw BodhiError.invalidRequest("text must be an object.", param: "text")
            }
            return (plain, nil)
        }
        switch format["type"] as? String {
        case "text": return (plain, nil)
        case "json_object": return (format, ["type": "json_object"])
        case "json_schema":
            guard let schema = format["schema"] as? JSONObject else {
                throw BodhiError.invalidRequest("text.format.schema: Field required (a JSON schema).", param: "text.format.schema")
            }
            var jsonSchema: JSONObject = ["name": format["name"] ?? "response", "schema": schema]
            if let strict = format["strict"] { jsonSchema["strict"] = strict }
            return (format, ["type": "json_schema", "json_schema": jsonSchema])
        default:
            throw BodhiError.invalidRequest("text.format.type must be text, json_object or json_schema.", param: "text.format")
        }
    }

    // MARK: Items

    static func newID(_ prefix: String) -> String {
        prefix + UUID.random().lowercaseHex.prefix(24)
    }

    /// A message item whose content is one text part.
    static func message(role: String, content: String) -> JSONObject {
        let part = role == "assistant" ? "output_text" : "input_text"
        var content: JSONObject = ["type": part, "text": content]
        if role == "assistant" { content["annotations"] = [Any]() }
        return ["type": "message", "id": newID("msg_"), "role": role, "content": [content], "status": "completed"]
    }

    /// One input item, checked, with an id.
    private static func item(_ value: Any, at index: Int) throws -> JSONObject {
        let param = "input[\(index)]"
        guard var item = value as? JSONObject else { throw BodhiError.invalidRequest("\(param) must be an object.", param: param) }
        switch item["type"] as? String ?? "message" {
        case "message":
            guard let role = item["role"] as? String, ["user", "assistant", "system", "developer"].contains(role) else {
                throw BodhiError.invalidRequest("\(param).role must be user, assistant, system or developer.", param: "\(param).role")
            }
            switch item["content"] {
            case let text as String:
                var message = Self.message(role: role, content: text)
                if let id = item["id"] as? String { message["id"] = id }
                return message
            case let parts as [JSONObject]:
                for (position, part) in parts.enumerated() { try checkPart(part, param: "\(param).content[\(position)]") }
            default:
                throw BodhiError.invalidRequest("\(param).content must be a string or a list of content parts.", param: "\(param).content")
            }
            item["type"] = "message"
            item["status"] = item["status"] ?? "completed"
        case "function_call":
            guard item["call_id"] is String, item["name"] is String, item["arguments"] is String else {
                throw BodhiError.invalidRequest("\(param): a function_call needs call_id, name and arguments (strings).", param: param)
            }
            item["status"] = item["status"] ?? "completed"
        case "function_call_output":
            guard item["call_id"] is String else {
                throw BodhiError.invalidRequest("\(param).call_id: Field required.", param: "\(param).call_id")
            }
            guard item["output"] is String || item["output"] is [JSONObject] else {
                throw BodhiError.invalidRequest("\(param).output must be a string or a list of content parts.", param: "\(param).output")
            }
        case "reasoning":
            break
        case let other:
            throw BodhiError.invalidRequest("\(param): items of type '\(other)' are not supported here.", param: param)
        }
        if item["id"] == nil {
            let prefix = ["function_call": "fc_", "function_call_output": "fco_", "reasoning": "rs_"][item["type"] as? String ?? ""] ?? "msg_"
            item["id"] = newID(prefix)
        }
        return item
    }

    private static func checkPart(_ part: JSONObject, param: String) throws {
        switch part["type"] as? String {
        case "input_text", "output_text", "text", "refusal":
            guard part["text"] is String || part["refusal"] is String else {
                throw BodhiError.invalidRequest("\(param).text must be a string.", param: "\(param).text")
            }
        case "input_image":
            guard part["image_url"] is String else {
                throw BodhiError.invalidRequest("\(param): images are sent as image_url (a URL or a data URL).", param: "\(param).image_url")
            }
        case let other:
            throw BodhiError.invalidRequest("\(param): content of type '\(other ?? "none")' is not supported here.", param: param)
        }
    }

    // MARK: Chat messages

    /// The chat messages for stored and new items: consecutive function calls join one assistant
    /// message (with the text before them), outputs become tool messages, reasoning is left out.
    static func chatMessages(_ items: [JSONObject]) -> [JSONObject] {
        var messages: [JSONObject] = []
        for item in items {
            switch item["type"] as? String ?? "message" {
            case "message":
                let role = item["role"] as? String == "developer" ? "system" : item["role"] as? String ?? "user"
                messages.append(["role": role, "content": chatContent(item["content"])])
            case "function_call":
                let call: JSONObject = [
                    "id": item["call_id"] ?? "", "type": "function",
                    "function": ["name": item["name"] ?? "", "arguments": item["arguments"] ?? "{}"],
                ]
                if var last = messages.last, last["role"] as? String == "assistant" {
                    last["tool_calls"] = (last["tool_calls"] as? [JSONObject] ?? []) + [call]
                    messages[messages.count - 1] = last
                } else {
                    messages.append(["role": "assistant", "content": "", "tool_calls": [call]])
                }
            case "function_call_output":
                messages.append(["role": "tool", "tool_call_id": item["call_id"] ?? "", "content": chatContent(item["output"])])
            default:
                continue
            }
        }
        return messages
    }

    /// Text parts joined as one string (what every chat template reads); with an image, the
    /// chat API's list of parts.
    private static func chatContent(_ content: Any?) -> Any {
        if let text = content as? String { return text }
        let parts = content as? [JSONObject] ?? []
        let texts = parts.compactMap { $0["text"] as? String ?? $0["refusal"] as? String }
        let images = parts.filter { $0["type"] as? String == "input_image" }.compactMap { $0["image_url"] as? String }
        return ChatContent.content(texts: texts, imageURLs: images)
    }
}
