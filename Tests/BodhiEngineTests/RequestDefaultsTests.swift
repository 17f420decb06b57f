@testable import BodhiEngine
import BodhiModels
import Foundation
import NIOCore
import Testing

@Suite(.timeLimit(.minutes(2))) struct RequestDefaultsTests {
    func object(_ buffer: ByteBuffer) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(buffer.readableBytesView)) as? [String: Any])
    }

    let defaults = RequestDefaults(temperature: 0.2, topK: 7, maxTokens: 64, stop: ["END"], system: "Be brief.")

    @Test func fillsOnlyWhatTheRequestLeavesUnset() throws {
        let body = ByteBuffer(string: #"{"model":"a","stream":true,"temperature":1.5,"top_k":null,"messages":[{"role":"user","content":"hi"}]}"#)
        let result = try object(try defaults.applied(to: body, for: .chatCompletions))
        #expect(result["temperature"] as? Double == 1.5)
        #expect(result["top_k"] as? Int == 7)
        #expect(result["max_tokens"] as? Int == 64)
        #expect(result["stop"] as? [String] == ["END"])
        #expect(result["stream"] as? Bool == true)
        let messages = try #require(result["messages"] as? [[String: Any]])
        #expect(messages.map { $0["role"] as? String } == ["system", "user"])
        #expect(messages[0]["content"] as? String == "Be brief.")
    }

    @Test func aChatWithItsOwnSystemMessageKeepsIt() throws {
        let body = ByteBuffer(string: #"{"model":"a","max_completion_tokens":5,"messages":[{"role":"system","content":"Mine."},{"role":"user","content":"hi"}]}"#)
        let result = try object(try defaults.applied(to: body, for: .chatCompletions))
        let messages = try #require(result["messages"] as? [[String: Any]])
        #expect(messages.count == 2 && messages[0]["content"] as? String == "Mine.")
        #expect(result["max_tokens"] == nil)
    }

    @Test func embeddingsAndEmptyDefaultsPassUntouched() throws {
        let body = ByteBuffer(string: #"{"model":"a","input":"x"}"#)
        #expect(try defaults.applied(to: body, for: .embeddings) == body)
        #expect(try RequestDefaults().applied(to: body, for: .completions) == body)
        let completion = try object(try defaults.applied(to: ByteBuffer(string: #"{"model":"a","prompt":"x"}"#), for: .completions))
        #expect(completion["temperature"] as? Double == 0.2 && completion["messages"] == nil)
    }
}
