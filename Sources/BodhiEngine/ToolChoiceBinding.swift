import BodhiCore
import Foundation
import NIOCore

/// `tool_choice: "required"` or a named function, made binding on a local engine whatever its
/// model's chat template. llama-server follows a required choice only for templates it knows to
/// call tools, and refuses a named function; so Bodhi sends the tools as a system instruction and
/// constrains the answer with a JSON schema (which llama-server turns into a grammar) that only a
/// call of one of them satisfies, then gives the answer back as the tool call it is, whole or
/// streamed.
struct ToolChoiceBinding: ReplyRewrite {
    /// The tools the answer may call.
    let names: [String]

    /// The binding a chat completion request asks for and the body to send in its place; nil when
    /// it asks for none (no tool choice, `auto` or `none`).
    static func bind(_ body: ByteBuffer) throws -> (binding: ToolChoiceBinding, body: ByteBuffer)? {
        // Most requests have no choice to bind; they are not parsed again for it.
        guard body.readableBytesView.firstRange(of: Array(#""tool_choice""#.utf8)) != nil,
              var request = JSONBody.parsed(body) else { return nil }
        var tools = (request["tools"] as? [JSONObject] ?? []).compactMap { $0["function"] as? JSONObject }
        switch request["tool_choice"] {
        case let choice as String where choice == "required":
            break
        case let choice as JSONObject:
            guard let name = (choice["function"] as? JSONObject)?["name"] as? String ?? choice["name"] as? String else {
                throw BodhiError.invalidRequest("tool_choice must name a function: {\"type\": \"function\", \"function\": {\"name\": ...}}.",
                                                param: "tool_choice")
            }
            tools = tools.filter { $0["name"] as? String == name }
            guard !tools.isEmpty else {
                throw BodhiError.invalidRequest("tool_choice names the function '\(name)', which is not among the tools.", param: "tool_choice")
            }
        default:
            return nil
        }
        guard !tools.isEmpty else {
            throw BodhiError.invalidRequest("tool_choice 'required' needs at least one tool in tools.", param: "tool_choice")
        }
        let names = tools.compactMap { $0["name"] as? String }
        request["tools"] = nil
        request["tool_choice"] = nil
        request["parallel_tool_calls"] = nil
        request["messages"] = instructed(request["messages"] as? [JSONObject] ?? [], tools: tools)
        request["response_format"] = ["type": "json_schema", "json_schema": ["name": "tool_call", "schema": schema(of: tools)]]
        return (ToolChoiceBinding(names: names), JSONBody.buffer(request))
    }

    /// The messages with the tools described in the system message (added first if there is none).
    private static func instructed(_ messages: [JSONObject], tools: [JSONObject]) -> [JSONObject] {
        let described = tools.map { tool -> String in
            let parameters = String(buffer: JSONBody.buffer(tool["parameters"] ?? ["type": "object"]))
            let description = (tool["description"] as? String).map { ": \($0)" } ?? ""
            return "- \(tool["name"] as? String ?? "")\(description)\n  Parameters (JSON schema): \(parameters)"
        }
        let instruction = """
            Answer by calling one of these tools, with only a JSON object {"name": the tool's name, "parameters": its arguments}.
            Tools:
            \(described.joined(separator: "\n"))
            """
        return ChatMessages.leadingSystem(messages, adding: instruction)
    }

    /// An object naming one of the tools with arguments by its schema: `name` sorts before
    /// `parameters`, so the tool is chosen before its arguments are written.
    private static func schema(of tools: [JSONObject]) -> JSONObject {
        let calls = tools.map { tool -> JSONObject in
            [
                "type": "object", "required": ["name", "parameters"], "additionalProperties": false,
                "properties": ["name": ["const": tool["name"] ?? ""], "parameters": tool["parameters"] ?? ["type": "object"]],
            ]
        }
        return calls.count == 1 ? calls[0] : ["anyOf": calls]
    }

    /// The call an answer's text makes; nil when the text is not one (an answer cut short).
    private func call(in text: String) -> JSONObject? {
        guard let object = (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? JSONObject,
              let name = object["name"] as? String, names.contains(name) else { return nil }
        let arguments = String(buffer: JSONBody.buffer(object["parameters"] ?? JSONObject()))
        return ["id": "call_" + UUID.random().lowercaseHex.prefix(24), "type": "function", "function": ["name": name, "arguments": arguments]]
    }

    /// A whole chat completion with its answer as the tool call; as it was when it is not one.
    func whole(_ body: ByteBuffer) -> ByteBuffer {
        guard var completion = JSONBody.parsed(body), var choices = completion["choices"] as? [JSONObject], var choice = choices.first,
              var message = choice["message"] as? JSONObject, let call = call(in: message["content"] as? String ?? "")
        else { return body }
        message["content"] = NSNull()
        message["tool_calls"] = [call]
        choice["message"] = message
        if choice["finish_reason"] as? String == "stop" { choice["finish_reason"] = "tool_calls" }
        choices[0] = choice
        completion["choices"] = choices
        return JSONBody.buffer(completion)
    }

    func streamRewriter() -> any StreamRewriter {
        CallRewriter(binding: self)
    }

    /// A stream's chunks with the answer's text held back, and sent at its end as one tool call.
    struct CallRewriter: StreamRewriter {
        let binding: ToolChoiceBinding
        private var text = ""

        init(binding: ToolChoiceBinding) {
            self.binding = binding
        }

        mutating func rewrite(_ event: ByteBuffer) -> [ByteBuffer] {
            guard let data = SSEFramer.data(of: event), data != "[DONE]", var chunk = JSONBody.parsed(ByteBuffer(string: data)),
                  var choices = chunk["choices"] as? [JSONObject], var choice = choices.first
            else { return [event] }
            var delta = choice["delta"] as? JSONObject ?? [:]
            if let piece = delta["content"] as? String {
                text += piece
                delta["content"] = nil
            }
            guard let reason = choice["finish_reason"] as? String else {
                if delta.isEmpty { return [] }
                choice["delta"] = delta
                choices[0] = choice
                chunk["choices"] = choices
                return [SSEFramer.event(chunk)]
            }
            // The end: the call, then the reason it ended.
            var ending: [ByteBuffer] = []
            var made = chunk
            var finish = choice
            if let call = binding.call(in: text) {
                var piece = call
                piece["index"] = 0
                made["choices"] = [["index": 0, "delta": ["tool_calls": [piece]], "finish_reason": NSNull()] as JSONObject]
                finish["finish_reason"] = reason == "stop" ? "tool_calls" : reason
            } else {
                made["choices"] = [["index": 0, "delta": ["content": text], "finish_reason": NSNull()] as JSONObject]
            }
            ending.append(SSEFramer.event(made))
            finish["delta"] = JSONObject()
            chunk["choices"] = [finish]
            ending.append(SSEFramer.event(chunk))
            return ending
        }
    }
}

/// How Bodhi rewrites an engine's answer on its way to the client, whole or event by event.
protocol ReplyRewrite: Sendable {
    func whole(_ body: ByteBuffer) -> ByteBuffer
    func streamRewriter() -> any StreamRewriter
}

/// Rewrites one stream's events in turn: each engine event becomes the events sent on.
protocol StreamRewriter {
    mutating func rewrite(_ event: ByteBuffer) -> [ByteBuffer]
}
