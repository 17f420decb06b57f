import BodhiCore
import Foundation
import NIOCore
import Testing
@testable import BodhiCompatibility

/// The translations between Ollama's and Anthropic's shapes and the engine's chat completions,
/// on answers the small test model cannot produce (tool calls, thinking).
@Suite(.timeLimit(.minutes(2))) struct TranslationTests {
    func json(_ buffer: ByteBuffer) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(buffer.readableBytesView)) as? [String: Any])
    }

    @Test func ollamaToolCallsGoOutAsStringsAndComeBackAsObjects() throws {
        let message = try OllamaService.openAIMessage([
            "role": "assistant", "content": "",
            "tool_calls": [["function": ["name": "get_weather", "arguments": ["city": "Paris"]]]],
        ])
        let calls = try #require(message["tool_calls"] as? [[String: Any]])
        let function = try #require(calls.first?["function"] as? [String: Any])
        #expect(function["arguments"] as? String == #"{"city":"Paris"}"#)

        var translation = OllamaService.Translation(name: "m", field: .message, started: .now, streaming: true)
        translation.absorb(["choices": [["delta": ["tool_calls": [["index": 0, "function": ["name": "get_weather", "arguments": #"{"ci"#]]]]]]])
        translation.absorb(["choices": [["delta": ["tool_calls": [["index": 0, "function": ["arguments": #"ty":"Oslo"}"#]]]], "finish_reason": "tool_calls"]]])
        translation.absorb(["usage": ["prompt_tokens": 7, "completion_tokens": 3], "choices": []])
        let final = translation.final()
        let finalMessage = try #require(final["message"] as? [String: Any])
        let finalCalls = try #require(finalMessage["tool_calls"] as? [[String: Any]])
        let arguments = try #require((finalCalls.first?["function"] as? [String: Any])?["arguments"] as? [String: Any])
        #expect(arguments["city"] as? String == "Oslo")
        #expect(final["prompt_eval_count"] as? Int == 7 && final["eval_count"] as? Int == 3 && final["done"] as? Bool == true)
    }

    @Test func infillAnswersInLlamaServersNativeFormatBecomeOllamas() {
        var streamed = OllamaService.Translation(name: "coder", field: .response, started: .now, streaming: true)
        #expect(streamed.absorb(["content": "c = a", "stop": false]).first?["response"] as? String == "c = a")
        streamed.absorb(["content": "", "stop": true, "stop_type": "limit", "tokens_evaluated": 12, "tokens_predicted": 4])
        let end = streamed.final()
        #expect(end["done_reason"] as? String == "length" && end["prompt_eval_count"] as? Int == 12 && end["eval_count"] as? Int == 4)

        var whole = OllamaService.Translation(name: "coder", field: .response, started: .now, streaming: false)
        whole.absorb(["content": " + b", "stop": true, "stop_type": "eos", "tokens_evaluated": 9, "tokens_predicted": 3])
        #expect(whole.final()["response"] as? String == " + b" && whole.final()["done_reason"] as? String == "stop")
    }

    @Test func reasoningComesBackAsOllamasThinking() {
        var whole = OllamaService.Translation(name: "m", field: .message, started: .now, streaming: false)
        whole.absorb(["choices": [["message": ["content": "4", "reasoning_content": "2 + 2 is 4"], "finish_reason": "stop"]]])
        let message = whole.final()["message"] as? [String: Any]
        #expect(message?["thinking"] as? String == "2 + 2 is 4" && message?["content"] as? String == "4")

        var streamed = OllamaService.Translation(name: "m", field: .response, started: .now, streaming: true)
        let line = streamed.absorb(["choices": [["delta": ["reasoning_content": "hmm"]]]]).first
        #expect(line?["thinking"] as? String == "hmm" && line?["response"] as? String == "")
    }

    @Test func ollamaOptionsAndFormatsMapToTheEngine() throws {
        let fields = try OllamaService.samplingFields([
            "options": ["temperature": 0.1, "num_predict": 5, "num_ctx": 4096, "stop": ["x"]],
            "format": ["type": "object"], "stream": false,
        ])
        #expect(fields["temperature"] as? Double == 0.1 && fields["max_tokens"] as? Int == 5 && fields["stop"] as? [String] == ["x"])
        #expect(fields["num_ctx"] == nil && fields["stream"] as? Bool == false && fields["stream_options"] == nil)
        #expect((fields["response_format"] as? [String: Any])?["type"] as? String == "json_schema")
        #expect(throws: BodhiError.self) { try OllamaService.samplingFields(["format": 3]) }
        #expect(try OllamaService.keepAlive(["keep_alive": 0]) == .idle(.zero))
        #expect(try OllamaService.keepAlive(["keep_alive": "-1"]) == .forever)
        #expect(try OllamaService.keepAlive(["keep_alive": "10m"]) == .idle(.seconds(600)))
    }

    @Test func ollamaNamesMapOntoBodhisNames() {
        #expect(OllamaNames.candidates(for: "hf.co/o/r:Q4_0") == ["o/r:Q4_0"])
        #expect(OllamaNames.candidates(for: "smol:latest") == ["smol:latest", "smol"])
        #expect(OllamaNames.display("smol", isAlias: true) == "smol:latest")
        #expect(OllamaNames.display("o/r:Q4_0", isAlias: false) == "o/r:Q4_0")
    }

    @Test func anthropicBlocksBecomeChatMessages() throws {
        let chat = try AnthropicService.chatRequest([
            "system": [["type": "text", "text": "Be brief."]],
            "stop_sequences": ["END"], "tool_choice": ["type": "any"],
            "tools": [["name": "f", "input_schema": ["type": "object"]]],
            "messages": [
                ["role": "user", "content": "Hi"],
                ["role": "assistant", "content": [["type": "text", "text": "Calling."], ["type": "tool_use", "id": "t1", "name": "f", "input": ["a": 1]]]],
                ["role": "user", "content": [["type": "tool_result", "tool_use_id": "t1", "content": [["type": "text", "text": "42"]]]]],
            ],
        ])
        let messages = try #require(chat["messages"] as? [[String: Any]])
        #expect(messages.map { $0["role"] as? String } == ["system", "user", "assistant", "tool"])
        #expect(messages[3]["tool_call_id"] as? String == "t1" && messages[3]["content"] as? String == "42")
        let call = try #require((messages[2]["tool_calls"] as? [[String: Any]])?.first?["function"] as? [String: Any])
        #expect(call["arguments"] as? String == #"{"a":1}"#)
        #expect(chat["stop"] as? [String] == ["END"] && chat["tool_choice"] as? String == "required")
        #expect(throws: BodhiError.self) {
            try AnthropicService.chatRequest(["messages": [["role": "user", "content": [["type": "image"]]]]])
        }
    }

    @Test func anthropicStreamsOpenCloseAndNumberTheirBlocks() {
        var message = AnthropicService.Message(id: "msg_1", model: "m")
        var events = message.start()
        events += message.absorb(["choices": [["delta": ["content": "Let me check."]]]])
        events += message.absorb(["choices": [["delta": ["tool_calls": [["index": 0, "id": "call_9", "function": ["name": "f", "arguments": #"{"a""#]]]]]]])
        events += message.absorb(["choices": [["delta": ["tool_calls": [["index": 0, "function": ["arguments": ":1}"]]]], "finish_reason": "tool_calls"]]])
        events += message.absorb(["usage": ["prompt_tokens": 5, "completion_tokens": 9], "choices": []])
        events += message.finish()
        let types = events.map { $0["type"] as? String ?? "" }
        #expect(types == [
            "message_start", "ping", "content_block_start", "content_block_delta", "content_block_stop",
            "content_block_start", "content_block_delta", "content_block_delta", "content_block_stop", "message_delta", "message_stop",
        ])
        #expect(events[5]["index"] as? Int == 1)
        let delta = events[9]["delta"] as? [String: Any]
        #expect(delta?["stop_reason"] as? String == "tool_use")
        let whole = message.whole()
        let content = whole["content"] as? [[String: Any]] ?? []
        #expect(content.count == 2 && (content[1]["input"] as? [String: Any])?["a"] as? Int == 1)
    }
}

@Suite struct StopSequencesTests {
    @Test func textIsHeldBackOnlyWhileItMayStartASequenceAndCutAtTheEarliestMatch() {
        var watch = StopSequences(["END", "xyz"])
        #expect(watch.feed("hello E") == ("hello ", nil))
        #expect(watch.feed("N") == ("", nil))
        #expect(watch.feed("X more") == ("ENX more", nil))
        #expect(watch.feed(" x") == (" ", nil))
        #expect(watch.feed("yz tail END") == ("", "xyz"))
        var other = StopSequences(["b", "abc"])
        #expect(other.feed("zabc") == ("z", "abc"))
        var unmatched = StopSequences(["END"])
        #expect(unmatched.feed("the E") == ("the ", nil))
        #expect(unmatched.flush() == "E")
    }
}

@Suite struct ThinkingTranslationTests {
    @Test func anthropicThinkingBecomesAnEffortAndReasoningComesBackAsAThinkingBlock() throws {
        let chat = try AnthropicService.chatRequest(["messages": [["role": "user", "content": "hi"]], "thinking": ["type": "enabled", "budget_tokens": 1024]])
        #expect(chat["reasoning_effort"] as? String == "low")
        let off = try AnthropicService.chatRequest(["messages": [["role": "user", "content": "hi"]], "thinking": ["type": "disabled"]])
        #expect(off["reasoning_effort"] as? String == "none")

        var message = AnthropicService.Message(id: "m", model: "x")
        var events = message.absorb(["choices": [["delta": ["reasoning_content": "Hmm."]]]])
        events += message.absorb(["choices": [["delta": ["content": "Hi!"]]]])
        #expect(events.map { $0["type"] as? String } == [
            "content_block_start", "content_block_delta", "content_block_stop", "content_block_start", "content_block_delta",
        ])
        #expect((events[1]["delta"] as? [String: Any])?["type"] as? String == "thinking_delta")
        let content = try #require(message.whole()["content"] as? [[String: Any]])
        #expect(content.map { $0["type"] as? String } == ["thinking", "text"] && content[0]["thinking"] as? String == "Hmm.")
    }

    @Test func geminiThinkingConfigBecomesAnEffort() throws {
        func effort(_ thinking: [String: Any]) throws -> String? {
            try GeminiService.chatRequest(["contents": [["parts": [["text": "x"]]]], "generationConfig": ["thinkingConfig": thinking]])["reasoning_effort"] as? String
        }
        #expect(try effort(["thinkingBudget": 0]) == "none")
        #expect(try effort(["thinkingBudget": 1024]) == "low")
        #expect(try effort(["thinkingBudget": -1]) == "medium")
        #expect(try effort(["thinkingLevel": "HIGH"]) == "high")
    }
}
