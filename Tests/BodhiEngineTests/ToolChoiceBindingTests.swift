import BodhiCore
import Foundation
import NIOCore
import Testing
@testable import BodhiEngine

/// A required or named tool choice bound by Bodhi: the request the engine gets, and its answer
/// turned into the call, whole and streamed.
@Suite(.timeLimit(.minutes(1))) struct ToolChoiceBindingTests {
    static var tools: [[String: Any]] {
        [
        ["type": "function", "function": ["name": "a", "description": "A.", "parameters": ["type": "object", "properties": ["x": ["type": "string"]]]]],
        ["type": "function", "function": ["name": "b"]],
        ]
    }

    func body(_ fields: [String: Any]) -> ByteBuffer {
        JSONBody.buffer(["model": "m", "messages": [["role": "system", "content": "Be brief."], ["role": "user", "content": "hi"]]]
            .merging(fields) { $1 })
    }

    func object(_ buffer: ByteBuffer) throws -> [String: Any] {
        try #require(JSONBody.parsed(buffer))
    }

    @Test func onlyARequiredOrNamedChoiceIsBound() throws {
        #expect(try ToolChoiceBinding.bind(body(["tools": Self.tools])) == nil)
        #expect(try ToolChoiceBinding.bind(body(["tools": Self.tools, "tool_choice": "auto"])) == nil)
        #expect(try ToolChoiceBinding.bind(body(["tools": Self.tools, "tool_choice": "none"])) == nil)

        let required = try #require(try ToolChoiceBinding.bind(body(["tools": Self.tools, "tool_choice": "required", "parallel_tool_calls": true])))
        #expect(required.binding.names == ["a", "b"])
        let sent = try object(required.body)
        #expect(sent["tools"] == nil && sent["tool_choice"] == nil && sent["parallel_tool_calls"] == nil)
        let schema = try #require(((sent["response_format"] as? [String: Any])?["json_schema"] as? [String: Any])?["schema"] as? [String: Any])
        #expect((schema["anyOf"] as? [[String: Any]])?.count == 2)
        let messages = try #require(sent["messages"] as? [[String: Any]])
        #expect(messages.count == 2)
        let system = try #require(messages[0]["content"] as? String)
        #expect(system.hasPrefix("Be brief.\n\n") && system.contains("- a: A.\n  Parameters (JSON schema): {") && system.contains("- b\n"))

        let named = try #require(try ToolChoiceBinding.bind(body(["tools": Self.tools, "tool_choice": ["type": "function", "function": ["name": "b"]]])))
        #expect(named.binding.names == ["b"])
        let namedSchema = try #require(((try object(named.body)["response_format"] as? [String: Any])?["json_schema"] as? [String: Any])?["schema"] as? [String: Any])
        #expect(((namedSchema["properties"] as? [String: Any])?["name"] as? [String: Any])?["const"] as? String == "b")
    }

    @Test func aChoiceTheToolsCannotMeetIsA400() {
        for fields in [["tool_choice": "required"], ["tools": Self.tools, "tool_choice": ["type": "function", "function": ["name": "c"]]]] as [[String: Any]] {
            do {
                _ = try ToolChoiceBinding.bind(body(fields))
                Issue.record("bound \(fields)")
            } catch let error as BodhiError {
                #expect(error.status == 400 && error.param == "tool_choice")
            } catch {
                Issue.record("\(error)")
            }
        }
    }

    @Test func aWholeAnswerBecomesTheCallAndTextThatIsNoCallStaysText() throws {
        let binding = ToolChoiceBinding(names: ["a"])
        let answer = JSONBody.buffer(["choices": [["message": ["role": "assistant", "content": #"{"name":"a","parameters":{"x":"y"}}"#], "finish_reason": "stop"]]])
        let choice = try #require((try object(binding.whole(answer))["choices"] as? [[String: Any]])?.first)
        let message = try #require(choice["message"] as? [String: Any])
        #expect(message["content"] is NSNull && choice["finish_reason"] as? String == "tool_calls")
        let function = try #require((message["tool_calls"] as? [[String: Any]])?.first?["function"] as? [String: Any])
        #expect(function["name"] as? String == "a" && function["arguments"] as? String == #"{"x":"y"}"#)

        let cut = JSONBody.buffer(["choices": [["message": ["role": "assistant", "content": #"{"name":"a","para"#], "finish_reason": "length"]]])
        #expect(binding.whole(cut) == cut)
    }

    @Test func aStreamHoldsItsTextBackAndEndsWithTheCall() throws {
        var rewriter = ToolChoiceBinding(names: ["a"]).streamRewriter()
        func event(_ chunk: [String: Any]) -> ByteBuffer {
            var event = ByteBuffer(string: "data: ")
            var json = JSONBody.buffer(chunk)
            event.writeBuffer(&json)
            event.writeString("\n\n")
            return event
        }
        func chunk(_ delta: [String: Any], _ reason: String? = nil) -> ByteBuffer {
            event(["id": "c1", "object": "chat.completion.chunk", "choices": [["index": 0, "delta": delta, "finish_reason": reason.map { $0 as Any } ?? NSNull()]]])
        }
        var out: [ByteBuffer] = []
        out += rewriter.rewrite(chunk(["role": "assistant", "content": NSNull()]))
        out += rewriter.rewrite(chunk(["content": #"{"name":"a","#]))
        out += rewriter.rewrite(chunk(["content": #""parameters":{}}"#]))
        out += rewriter.rewrite(chunk([:], "stop"))
        out += rewriter.rewrite(event(["choices": [], "usage": ["completion_tokens": 9]]))
        out += rewriter.rewrite(ByteBuffer(string: "data: [DONE]\n\n"))
        let parsed = out.map { SSEFramer.data(of: $0) }
        #expect(parsed.count == 5 && parsed.last == "[DONE]")
        let objects = try parsed.dropLast().map { try #require(JSONBody.parsed(ByteBuffer(string: $0 ?? ""))) }
        let deltas = objects.map { (($0["choices"] as? [[String: Any]])?.first?["delta"] as? [String: Any]) }
        #expect(deltas[0]?["role"] as? String == "assistant")
        let call = try #require((deltas[1]?["tool_calls"] as? [[String: Any]])?.first)
        #expect((call["function"] as? [String: Any])?["name"] as? String == "a" && call["index"] as? Int == 0)
        #expect((objects[2]["choices"] as? [[String: Any]])?.first?["finish_reason"] as? String == "tool_calls")
        #expect(objects[2]["id"] as? String == "c1" && objects[3]["usage"] != nil)
        #expect(!deltas.contains { $0?["content"] is String })
    }
}

/// Reasoning effort as the engine's chat templates read it.
@Suite struct ReasoningControlTests {
    func kwargs(_ request: [String: Any]) throws -> [String: Any]? {
        guard let body = try ReasoningControl.apply(JSONBody.buffer(request)) else { return nil }
        return JSONBody.parsed(body)?["chat_template_kwargs"] as? [String: Any]
    }

    @Test func anEffortTurnsThinkingOnOrOffUnlessTheRequestSaidItself() throws {
        #expect(try kwargs(["model": "m"]) == nil)
        let high = try kwargs(["reasoning_effort": "high"])
        #expect(high?["enable_thinking"] as? Bool == true && high?["reasoning_effort"] as? String == "high")
        #expect(try kwargs(["reasoning_effort": "none"])?["enable_thinking"] as? Bool == false)
        #expect(try kwargs(["reasoning_effort": "none", "chat_template_kwargs": ["enable_thinking": true]])?["enable_thinking"] as? Bool == true)
        do {
            _ = try ReasoningControl.apply(JSONBody.buffer(["reasoning_effort": "extreme"]))
            Issue.record("an unknown effort was accepted")
        } catch let error as BodhiError {
            #expect(error.param == "reasoning_effort")
        }
    }
}

@Suite struct ChatMessagesTests {
    @Test func systemAndDeveloperTextFromAnywhereLeadsAsOneMessage() {
        let messages: [[String: Any]] = [
            ["role": "system", "content": "Be brief."], ["role": "user", "content": "hi"],
            ["role": "developer", "content": [["type": "text", "text": "Use French."]]], ["role": "assistant", "content": "Salut"],
        ]
        let joined = ChatMessages.leadingSystem(messages, adding: "Call a tool.")
        #expect(joined.map { $0["role"] as? String } == ["system", "user", "assistant"])
        #expect(joined[0]["content"] as? String == "Be brief.\n\nUse French.\n\nCall a tool.")
        #expect(ChatMessages.leadingSystem([["role": "user", "content": "x"]]).count == 1)
    }
}
