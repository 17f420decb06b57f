import BodhiCore
import Foundation
import NIOCore

/// OpenAI's legacy completions answered as OpenAI answers them, where llama-server answers
/// otherwise: `echo` puts the prompt before the text, `logprobs` comes in the legacy shape
/// (`tokens`, `token_logprobs`, `top_logprobs`, `text_offset` counted from the prompt's start),
/// whole or streamed. What the engine cannot do is refused by name: `best_of` above 1, `echo`
/// with `logprobs` (the prompt's own log probabilities), `suffix` (fill in the middle is Ollama's
/// `/api/generate` with `suffix` here).
struct LegacyCompletion: ReplyRewrite {
    /// The prompt, put before the text when echoed.
    let echo: String?
    /// Where the completion starts in prompt + completion, for `text_offset`.
    let promptLength: Int
    let logprobs: Bool

    private static let fields = ["\"echo\"", "\"logprobs\"", "\"best_of\"", "\"suffix\""].map { Array($0.utf8) }

    /// The shaping a completion request asks for, and its body for the engine; nil for none.
    static func shape(_ body: ByteBuffer) throws -> (shape: LegacyCompletion, body: ByteBuffer)? {
        let bytes = body.readableBytesView
        guard fields.contains(where: { bytes.firstRange(of: $0) != nil }), var request = JSONBody.parsed(body) else { return nil }
        switch request["best_of"] {
        case nil, is NSNull: break
        case let value as Int where value == 1: break
        default: throw BodhiError.invalidRequest("best_of above 1 is not supported: this server makes one completion per request.", param: "best_of")
        }
        if let suffix = request["suffix"] as? String, !suffix.isEmpty {
            throw BodhiError.invalidRequest(
                "suffix is not supported on /v1/completions; fill in the middle with Ollama's /api/generate and its suffix.", param: "suffix")
        }
        let echo = try JSONBody.flag(request, "echo") ?? false
        var logprobs = false
        switch request["logprobs"] {
        case nil, is NSNull: break
        case let value as Int where (0...20).contains(value): logprobs = true
        default: throw BodhiError.invalidRequest("logprobs must be a whole number from 0 to 20.", param: "logprobs")
        }
        let prompt = request["prompt"] as? String
        if echo {
            guard !logprobs else {
                throw BodhiError.invalidRequest("echo with logprobs is not supported: the prompt's own log probabilities are not available.",
                                                param: "echo")
            }
            guard prompt != nil else { throw BodhiError.invalidRequest("echo needs the prompt as one string.", param: "echo") }
        }
        guard echo || logprobs else { return nil }
        request["echo"] = nil
        request["best_of"] = nil
        // Offsets count code points, as Python's (and OpenAI's) string indices do.
        return (LegacyCompletion(echo: echo ? prompt : nil, promptLength: prompt?.unicodeScalars.count ?? 0, logprobs: logprobs),
                JSONBody.buffer(request))
    }

    func whole(_ body: ByteBuffer) -> ByteBuffer {
        guard var completion = JSONBody.parsed(body), var choices = completion["choices"] as? [JSONObject] else { return body }
        for index in choices.indices {
            var offset = promptLength
            choices[index] = shaped(choices[index], first: true, offset: &offset)
        }
        completion["choices"] = choices
        return JSONBody.buffer(completion)
    }

    func streamRewriter() -> any StreamRewriter {
        Rewriter(shape: self, offset: promptLength)
    }

    private struct Rewriter: StreamRewriter {
        let shape: LegacyCompletion
        var offset: Int
        var first = true

        mutating func rewrite(_ event: ByteBuffer) -> [ByteBuffer] {
            guard let data = SSEFramer.data(of: event), data != "[DONE]", var chunk = JSONBody.parsed(ByteBuffer(string: data)),
                  var choices = chunk["choices"] as? [JSONObject], !choices.isEmpty
            else { return [event] }
            choices[0] = shape.shaped(choices[0], first: first, offset: &offset)
            first = false
            chunk["choices"] = choices
            return [SSEFramer.event(chunk)]
        }
    }

    /// A choice with the prompt before its text (the first piece of it) and its log probabilities
    /// in the legacy shape, `offset` moving past its text.
    private func shaped(_ choice: JSONObject, first: Bool, offset: inout Int) -> JSONObject {
        var choice = choice
        if first, let echo { choice["text"] = echo + (choice["text"] as? String ?? "") }
        guard logprobs else { return choice }
        let content = (choice["logprobs"] as? JSONObject)?["content"] as? [JSONObject] ?? []
        var tokens: [String] = []
        var tokenLogprobs: [Any] = []
        var top: [Any] = []
        var offsets: [Int] = []
        for entry in content {
            let token = entry["token"] as? String ?? ""
            tokens.append(token)
            tokenLogprobs.append(entry["logprob"] ?? NSNull())
            var alternatives: JSONObject = [:]
            for alternative in entry["top_logprobs"] as? [JSONObject] ?? [] {
                if let text = alternative["token"] as? String { alternatives[text] = alternative["logprob"] ?? NSNull() }
            }
            top.append(alternatives)
            offsets.append(offset)
            offset += token.unicodeScalars.count
        }
        choice["logprobs"] = ["tokens": tokens, "token_logprobs": tokenLogprobs, "top_logprobs": top, "text_offset": offsets] as JSONObject
        return choice
    }
}
