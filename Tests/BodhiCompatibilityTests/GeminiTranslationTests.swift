import BodhiCore
import Foundation
import Testing
@testable import BodhiCompatibility

/// Gemini's requests as chat completions and answers back, on what the small test model cannot
/// produce (thinking, several calls in a stream).
@Suite(.timeLimit(.minutes(1))) struct GeminiTranslationTests {
    @Test func callsAndResponsesArePairedByFunctionAndSchemasBecomeJSONSchema() throws {
        let chat = try GeminiService.chatRequest([
            "systemInstruction": ["parts": [["text": "Be brief."]]],
            "contents": [
                ["role": "user", "parts": [["text": "Weather?"]]],
                ["role": "model", "parts": [["functionCall": ["name": "w", "args": ["city": "Oslo"]]]]],
                ["role": "user", "parts": [["functionResponse": ["name": "w", "response": ["t": 3]]]]],
            ],
            "tools": [["functionDeclarations": [[
                "name": "w", "parameters": ["type": "OBJECT", "nullable": true, "properties": ["city": ["type": "STRING"]], "required": ["city"]],
            ]]]],
            "toolConfig": ["functionCallingConfig": ["mode": "ANY", "allowedFunctionNames": ["w"]]],
            "generationConfig": ["maxOutputTokens": 9, "topK": 4, "responseMimeType": "application/json"],
        ])
        let messages = try #require(chat["messages"] as? [[String: Any]])
        #expect(messages.map { $0["role"] as? String } == ["system", "user", "assistant", "tool"])
        let call = try #require((messages[2]["tool_calls"] as? [[String: Any]])?.first)
        #expect(messages[3]["tool_call_id"] as? String == call["id"] as? String)
        #expect((call["function"] as? [String: Any])?["arguments"] as? String == #"{"city":"Oslo"}"#)
        let parameters = try #require(((chat["tools"] as? [[String: Any]])?.first?["function"] as? [String: Any])?["parameters"] as? [String: Any])
        #expect(parameters["type"] as? String == "object" && parameters["nullable"] == nil)
        #expect(((parameters["properties"] as? [String: Any])?["city"] as? [String: Any])?["type"] as? String == "string")
        #expect(((chat["tool_choice"] as? [String: Any])?["function"] as? [String: Any])?["name"] as? String == "w")
        #expect(chat["max_tokens"] as? Int == 9 && chat["top_k"] as? Int == 4)
        #expect((chat["response_format"] as? [String: Any])?["type"] as? String == "json_object")
    }

    @Test func badContentsAreRefusedByTheirPlace() {
        for (request, param) in [
            (["contents": []], "contents"),
            (["contents": [["role": "robot", "parts": []]]], "contents[0].role"),
            (["contents": [["role": "user", "parts": [["executableCode": [:]]]]]], "contents[0].parts[0]"),
            (["contents": [["parts": [["text": "x"]]]], "generationConfig": ["candidateCount": 2]], "generationConfig.candidateCount"),
        ] as [([String: Any], String)] {
            do {
                _ = try GeminiService.chatRequest(request)
                Issue.record("accepted \(request)")
            } catch let error as BodhiError {
                #expect(error.status == 400 && error.param == param)
            } catch {
                Issue.record("\(error)")
            }
        }
    }

    @Test func aStreamSendsTextAndThoughtsAsTheyComeAndCallsWithTheEnd() {
        var candidate = GeminiService.Candidate()
        #expect(candidate.absorb(chunk: ["choices": [["delta": ["reasoning_content": "Hm."]]]])?.first?["thought"] as? Bool == true)
        #expect(candidate.absorb(chunk: ["choices": [["delta": ["content": "Let me see."]]]])?.first?["text"] as? String == "Let me see.")
        #expect(candidate.absorb(chunk: ["choices": [["delta": ["tool_calls": [["index": 0, "id": "c1", "function": ["name": "w", "arguments": "{\"a\":"]]]]]]]) == nil)
        _ = candidate.absorb(chunk: ["choices": [["delta": ["tool_calls": [["index": 0, "function": ["arguments": "1}"]]]], "finish_reason": "length"]]])
        _ = candidate.absorb(chunk: ["choices": [], "usage": ["prompt_tokens": 3, "completion_tokens": 5]])
        let end = candidate.response(model: "m", id: "r", parts: candidate.callParts, final: true)
        let first = (end["candidates"] as? [[String: Any]])?.first
        #expect(first?["finishReason"] as? String == "MAX_TOKENS")
        let call = ((first?["content"] as? [String: Any])?["parts"] as? [[String: Any]])?.first?["functionCall"] as? [String: Any]
        #expect(call?["name"] as? String == "w" && (call?["args"] as? [String: Any])?["a"] as? Int == 1)
        #expect((end["usageMetadata"] as? [String: Any])?["totalTokenCount"] as? Int == 8)
        let whole = candidate.response(model: "m", id: "r", final: true)
        let parts = ((whole["candidates"] as? [[String: Any]])?.first?["content"] as? [String: Any])?["parts"] as? [[String: Any]]
        #expect(parts?.map { $0["thought"] as? Bool ?? false } == [true, false, false])
    }
}
