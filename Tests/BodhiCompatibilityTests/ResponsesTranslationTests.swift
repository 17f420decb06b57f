import BodhiCore
import Foundation
import Testing
@testable import BodhiCompatibility

/// The Responses API's translation to chat completions and back, on what the small test model
/// cannot produce (reasoning, tool calls in a stream).
@Suite(.timeLimit(.minutes(1))) struct ResponsesTranslationTests {
    func request(_ fields: [String: Any]) throws -> ResponsesRequest {
        try ResponsesRequest(["model": "m", "input": "hi"].merging(fields) { $1 })
    }

    @Test func aNamedFunctionBecomesARequiredChoiceOfThatToolAlone() throws {
        let tools: [[String: Any]] = [
            ["type": "function", "name": "a", "parameters": ["type": "object"]],
            ["type": "function", "name": "b", "description": "B"],
        ]
        let named = try request(["tools": tools, "tool_choice": ["type": "function", "name": "b"]])
        #expect(named.chatFields["tool_choice"] as? String == "required")
        let sent = try #require(named.chatFields["tools"] as? [[String: Any]])
        #expect(sent.count == 1 && (sent[0]["function"] as? [String: Any])?["name"] as? String == "b")
        #expect((named.echo["tools"] as? [[String: Any]])?.count == 2)

        let auto = try request(["tools": tools])
        #expect(auto.chatFields["tool_choice"] == nil && (auto.chatFields["tools"] as? [[String: Any]])?.count == 2)
        do {
            _ = try request(["tool_choice": "required"])
            Issue.record("required without tools was accepted")
        } catch let error as BodhiError {
            #expect(error.status == 400 && error.param == "tool_choice")
        }
    }

    @Test func itemsBecomeChatMessagesWithCallsJoinedToTheirAssistantTurn() throws {
        let parsed = try request(["input": [
            ["role": "developer", "content": "Be brief."],
            ["role": "user", "content": [["type": "input_text", "text": "Weather?"]]],
            ["type": "message", "role": "assistant", "content": [["type": "output_text", "text": "Let me look."]]],
            ["type": "function_call", "call_id": "c1", "name": "w", "arguments": "{}"],
            ["type": "function_call", "call_id": "c2", "name": "w", "arguments": "{\"x\":1}"],
            ["type": "function_call_output", "call_id": "c1", "output": "Sunny"],
            ["type": "reasoning", "summary": []],
        ] as [Any]])
        #expect(parsed.items.allSatisfy { ($0["id"] as? String)?.isEmpty == false })
        let messages = ResponsesRequest.chatMessages(parsed.items)
        #expect(messages.map { $0["role"] as? String } == ["system", "user", "assistant", "tool"])
        #expect(messages[2]["content"] as? String == "Let me look.")
        #expect((messages[2]["tool_calls"] as? [[String: Any]])?.map { $0["id"] as? String } == ["c1", "c2"])
        #expect(messages[3]["tool_call_id"] as? String == "c1" && messages[3]["content"] as? String == "Sunny")
    }

    @Test func badItemsAreRefusedByTheirPlace() throws {
        for (input, param) in [
            ([["role": "robot", "content": "x"]], "input[0].role"),
            ([["role": "user", "content": [["type": "input_audio"]]]], "input[0].content[0]"),
            ([["type": "function_call", "name": "w"]], "input[0]"),
            ([["type": "web_search_call"]], "input[0]"),
        ] as [([[String: Any]], String)] {
            do {
                _ = try request(["input": input])
                Issue.record("accepted \(input)")
            } catch let error as BodhiError {
                #expect(error.status == 400 && error.param == param)
            }
        }
    }

    @Test func aStreamWithReasoningTextAndTwoCallsOpensAndClosesEachItemInTurn() throws {
        var builder = ResponseBuilder(id: "resp_1", model: "m", createdAt: 1, request: try request([:]))
        var events = builder.start()
        events += builder.absorb(chunk: ["choices": [["delta": ["reasoning_content": "Think"]]]])
        events += builder.absorb(chunk: ["choices": [["delta": ["reasoning_content": "ing."]]]])
        events += builder.absorb(chunk: ["choices": [["delta": ["content": "Calling."]]]])
        events += builder.absorb(chunk: ["choices": [["delta": ["tool_calls": [
            ["index": 0, "id": "call_a", "function": ["name": "w", "arguments": "{\"ci"]],
        ]]]]])
        events += builder.absorb(chunk: ["choices": [["delta": ["tool_calls": [["index": 0, "function": ["arguments": "ty\":1}"]]]]]]])
        events += builder.absorb(chunk: ["choices": [["delta": ["tool_calls": [
            ["index": 1, "id": "call_b", "function": ["name": "v", "arguments": "{}"]],
        ]], "finish_reason": "tool_calls"]]])
        events += builder.absorb(chunk: ["choices": [], "usage": ["prompt_tokens": 5, "completion_tokens": 9]])
        events += builder.finish()

        #expect(events.map { $0["type"] as? String } == [
            "response.created", "response.in_progress",
            "response.output_item.added", "response.reasoning_text.delta", "response.reasoning_text.delta",
            "response.reasoning_text.done", "response.output_item.done",
            "response.output_item.added", "response.content_part.added", "response.output_text.delta",
            "response.output_text.done", "response.content_part.done", "response.output_item.done",
            "response.output_item.added", "response.function_call_arguments.delta", "response.function_call_arguments.delta",
            "response.function_call_arguments.done", "response.output_item.done",
            "response.output_item.added", "response.function_call_arguments.delta",
            "response.function_call_arguments.done", "response.output_item.done",
            "response.completed",
        ])
        #expect(events.map { $0["sequence_number"] as? Int } == Array(0..<events.count))
        let response = try #require(events.last?["response"] as? [String: Any])
        let output = try #require(response["output"] as? [[String: Any]])
        #expect(output.map { $0["type"] as? String } == ["reasoning", "message", "function_call", "function_call"])
        #expect(output[2]["arguments"] as? String == "{\"city\":1}" && output[2]["call_id"] as? String == "call_a")
        #expect(output[3]["name"] as? String == "v")
        #expect((response["usage"] as? [String: Any])?["total_tokens"] as? Int == 14)
        // Each done event and the response agree on every item's index.
        let doneIndexes = events.filter { $0["type"] as? String == "response.output_item.done" }.map { $0["output_index"] as? Int }
        #expect(doneIndexes == [0, 1, 2, 3])
    }

    @Test func aWholeCompletionCutAtItsLimitIsIncomplete() throws {
        var builder = ResponseBuilder(id: "resp_2", model: "m", createdAt: 1, request: try request(["max_output_tokens": 3]))
        builder.absorb(completion: [
            "choices": [["message": ["content": "Once upon", "reasoning_content": "Story."], "finish_reason": "length"]],
            "usage": ["prompt_tokens": 4, "completion_tokens": 3],
        ])
        let response = builder.response(status: builder.finalStatus)
        #expect(response["status"] as? String == "incomplete")
        #expect((response["incomplete_details"] as? [String: Any])?["reason"] as? String == "max_output_tokens")
        #expect(response["max_output_tokens"] as? Int == 3)
        let output = try #require(response["output"] as? [[String: Any]])
        #expect(output.map { $0["type"] as? String } == ["reasoning", "message"])
        #expect(output[1]["status"] as? String == "incomplete")
    }
}
