import BodhiCore
import BodhiEngine
import Foundation
import NIOCore
import Testing
@testable import BodhiBackends

/// OpenAI's chat requests in Anthropic's and Gemini's words, and their answers back: one test
/// per thing a client would notice going wrong.
@Suite(.timeLimit(.minutes(1))) struct TranslationTests {
    static var toolConversation: JSONObject { [
        "model": "x",
        "messages": [
            ["role": "system", "content": "Be brief."],
            ["role": "developer", "content": "Use metric units."],
            ["role": "user", "content": "Weather in Paris?"],
            ["role": "assistant", "content": NSNull(), "tool_calls": [
                ["id": "call_1", "type": "function", "function": ["name": "get_weather", "arguments": #"{"city":"Paris"}"#]],
            ]],
            ["role": "tool", "tool_call_id": "call_1", "content": "sunny"],
            ["role": "user", "content": "And tomorrow?"],
        ] as [Any],
        "tools": [["type": "function", "function": ["name": "get_weather", "parameters": ["type": "object"]]]],
        "tool_choice": "required",
        "stop": "END",
        "temperature": 0.5,
    ] }

    static func events(_ lines: [String]) -> [ByteBuffer] {
        lines.map { ByteBuffer(string: "data: \($0)\n\n") }
    }

    static func objects(_ events: [ByteBuffer]) -> [JSONObject] {
        events.compactMap { event in
            let text = String(buffer: event)
            guard text.hasPrefix("data: {") else { return nil }
            return JSONBody.parsed(ByteBuffer(string: String(text.dropFirst(6))))
        }
    }

    @Test func anthropicGetsTheSystemApartToolResultsAsUserTurnsAndARequiredMaxTokens() throws {
        let request = try AnthropicBackend.messagesRequest(try ChatRequest(Self.toolConversation), model: "claude")
        #expect(request["system"] as? String == "Be brief.\n\nUse metric units.")
        #expect(request["max_tokens"] as? Int == AnthropicBackend.defaultMaxTokens)
        #expect(request["stop_sequences"] as? [String] == ["END"])
        #expect((request["tool_choice"] as? JSONObject)?["type"] as? String == "any")
        let messages = try #require(request["messages"] as? [JSONObject])
        #expect(messages.map { $0["role"] as? String } == ["user", "assistant", "user"])
        let call = try #require((messages[1]["content"] as? [JSONObject])?.first)
        #expect(call["type"] as? String == "tool_use" && call["id"] as? String == "call_1")
        #expect((call["input"] as? JSONObject)?["city"] as? String == "Paris")
        // The tool's result and the next question are one user turn, the result first.
        let turn = try #require(messages[2]["content"] as? [JSONObject])
        #expect(turn.map { $0["type"] as? String } == ["tool_result", "text"])
        #expect(turn[0]["tool_use_id"] as? String == "call_1" && turn[0]["content"] as? String == "sunny")
        let tool = try #require((request["tools"] as? [JSONObject])?.first)
        #expect(tool["name"] as? String == "get_weather" && tool["input_schema"] != nil)
    }

    @Test func anthropicRefusesAResponseFormatItCannotKeep() throws {
        var body = Self.toolConversation
        body["response_format"] = ["type": "json_object"]
        do {
            _ = try AnthropicBackend.messagesRequest(try ChatRequest(body), model: "claude")
            Issue.record("response_format was dropped silently")
        } catch let error as BodhiError { #expect(error.status == 400 && error.param == "response_format") }
    }

    @Test func anthropicsStreamBecomesOpenAIChunksWithToolArgumentsUsageAndDone() {
        var translator = AnthropicBackend.StreamTranslator(chunks: ChatChunks(model: "claude/x"))
        let input = Self.events([
            #"{"type":"message_start","message":{"usage":{"input_tokens":10,"cache_read_input_tokens":5}}}"#,
            #"{"type":"ping"}"#,
            #"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
            #"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}"#,
            #"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_1","name":"f","input":{}}}"#,
            #"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"a\":"}}"#,
            #"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"1}"}}"#,
            #"{"type":"message_delta","delta":{"stop_reason":"tool_use"},"usage":{"output_tokens":7}}"#,
            #"{"type":"message_stop"}"#,
        ])
        let output = input.flatMap { translator.translate($0) } + translator.finish()
        #expect(String(buffer: output.last!) == "data: [DONE]\n\n")
        let chunks = Self.objects(output)
        #expect(chunks.allSatisfy { $0["model"] as? String == "claude/x" })
        let deltas = chunks.compactMap { (($0["choices"] as? [JSONObject])?.first)?["delta"] as? JSONObject }
        #expect(deltas.compactMap { $0["content"] as? String }.joined() == "Hi")
        let calls = deltas.compactMap { ($0["tool_calls"] as? [JSONObject])?.first }
        #expect(calls.first?["id"] as? String == "toolu_1")
        #expect(calls.compactMap { ($0["function"] as? JSONObject)?["arguments"] as? String }.joined() == #"{"a":1}"#)
        let finish = chunks.compactMap { (($0["choices"] as? [JSONObject])?.first)?["finish_reason"] as? String }
        #expect(finish == ["tool_calls"])
        let usage = chunks.last?["usage"] as? JSONObject
        #expect(usage?["prompt_tokens"] as? Int == 15 && usage?["completion_tokens"] as? Int == 7)
    }

    @Test func anthropicsStreamErrorEndsTheStreamWithAnOpenAIError() {
        var translator = AnthropicBackend.StreamTranslator(chunks: ChatChunks(model: "m"))
        let output = translator.translate(ByteBuffer(string: #"data: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"# + "\n\n"))
        let error = Self.objects(output).first?["error"] as? JSONObject
        #expect((error?["message"] as? String)?.contains("Overloaded") == true)
    }

    @Test func geminiGetsSystemInstructionModelTurnsAndToolResultsByFunctionName() throws {
        let request = GeminiBackend.generateRequest(try ChatRequest(Self.toolConversation))
        #expect((request["systemInstruction"] as? JSONObject)?["parts"] as? [[String: String]] == [["text": "Be brief."], ["text": "Use metric units."]])
        let contents = try #require(request["contents"] as? [JSONObject])
        #expect(contents.map { $0["role"] as? String } == ["user", "model", "user"])
        let call = try #require(((contents[1]["parts"] as? [JSONObject])?.first)?["functionCall"] as? JSONObject)
        #expect(call["name"] as? String == "get_weather" && (call["args"] as? JSONObject)?["city"] as? String == "Paris")
        let response = try #require(((contents[2]["parts"] as? [JSONObject])?.first)?["functionResponse"] as? JSONObject)
        #expect(response["name"] as? String == "get_weather")
        #expect((response["response"] as? JSONObject)?["content"] as? String == "sunny")
        let generation = try #require(request["generationConfig"] as? JSONObject)
        #expect(generation["stopSequences"] as? [String] == ["END"] && generation["temperature"] as? Double == 0.5)
        #expect(((request["toolConfig"] as? JSONObject)?["functionCallingConfig"] as? JSONObject)?["mode"] as? String == "ANY")
    }

    @Test func geminisStreamEndsWithFinishUsageAndDoneOnlyWhenItSaidItFinished() {
        var finished = GeminiBackend.StreamTranslator(chunks: ChatChunks(model: "gemini/x"))
        var output = Self.events([
            #"{"candidates":[{"content":{"role":"model","parts":[{"text":"Hel"}]}}]}"#,
            #"{"candidates":[{"content":{"role":"model","parts":[{"text":"lo"}]},"finishReason":"MAX_TOKENS"}],"usageMetadata":{"promptTokenCount":4,"candidatesTokenCount":2}}"#,
        ]).flatMap { finished.translate($0) }
        output += finished.finish()
        let chunks = Self.objects(output)
        let deltas = chunks.compactMap { (($0["choices"] as? [JSONObject])?.first)?["delta"] as? JSONObject }
        #expect(deltas.compactMap { $0["content"] as? String }.joined() == "Hello")
        #expect(chunks.compactMap { (($0["choices"] as? [JSONObject])?.first)?["finish_reason"] as? String } == ["length"])
        #expect((chunks.last?["usage"] as? JSONObject)?["completion_tokens"] as? Int == 2)
        #expect(String(buffer: output.last!) == "data: [DONE]\n\n")

        // Cut off before a finish reason: no [DONE], so Bodhi tells the client the reply broke off.
        var cut = GeminiBackend.StreamTranslator(chunks: ChatChunks(model: "gemini/x"))
        _ = Self.events([#"{"candidates":[{"content":{"parts":[{"text":"Hel"}]}}]}"#]).flatMap { cut.translate($0) }
        #expect(cut.finish().isEmpty)
    }

    @Test func anOpenAICompatibleStreamNamesTheModelAsTheClientDid() {
        let renaming = OpenAICompatibleBackend.Renaming(from: "org/m:Q4", to: "lab/org/m:Q4")
        let compact = renaming.translate(ByteBuffer(string: #"data: {"model":"org\/m:Q4","x":1}"# + "\n\n"))
        #expect(String(buffer: compact[0]).contains(#""model":"lab\/org\/m:Q4""#))
        let spaced = renaming.translate(ByteBuffer(string: #"data: {"model": "org/m:Q4"}"# + "\n\n"))
        #expect(String(buffer: spaced[0]).contains(#""model": "lab/org/m:Q4""#))
    }

    @Test func aChatRequestWithoutMessagesOrWithAnUnknownRoleIsA400() {
        for body: JSONObject in [["model": "x"], ["model": "x", "messages": [["role": "wizard", "content": "hi"]]]] {
            do {
                _ = try ChatRequest(body)
                Issue.record("accepted \(body)")
            } catch let error as BodhiError { #expect(error.status == 400) } catch { Issue.record("\(error)") }
        }
    }
}
