import BodhiCore
import Foundation
import NIOCore

/// Tokens as a model's engine counts them: llama-server's `/tokenize` and `/detokenize`, and the
/// tokens a chat's prompt takes once the model's chat template is applied (what Anthropic's
/// `count_tokens` and Gemini's `countTokens` answer). Local models only; no generation slot waits.
extension InferenceService {
    /// `{"model", "content"}` (or vLLM's `prompt`, or `messages` to apply the chat template to
    /// first), with llama-server's `add_special` (default true) and `with_pieces`: the engine's
    /// `{"tokens"}`, with their `count` and the `model`.
    public func tokenize(_ body: ByteBuffer, allowed: [String]?) async throws -> ByteBuffer {
        let request = try JSONBody.object(from: body)
        let model = try Self.model(in: request)
        let content: String
        if let text = request["content"] as? String ?? request["prompt"] as? String {
            content = text
        } else if let messages = request["messages"] as? [JSONObject] {
            content = try await prompt(model: model, chat: ["messages": messages], allowed: allowed)
        } else {
            throw BodhiError.invalidRequest("Send the text to tokenize as content (a string), or messages.", param: "content")
        }
        var tokenize: JSONObject = ["model": model, "content": content]
        for key in ["add_special", "with_pieces"] where request[key] != nil {
            guard request[key] is Bool else { throw BodhiError.invalidRequest("\(key) must be true or false.", param: key) }
            tokenize[key] = request[key]
        }
        var answer = try await engineAnswer(.tokenize, tokenize, allowed: allowed)
        answer["count"] = (answer["tokens"] as? [Any])?.count ?? 0
        answer["model"] = model
        return JSONBody.buffer(answer)
    }

    /// `{"model", "tokens"}`: the engine's `{"content"}`.
    public func detokenize(_ body: ByteBuffer, allowed: [String]?) async throws -> ByteBuffer {
        let request = try JSONBody.object(from: body)
        let model = try Self.model(in: request)
        guard let tokens = request["tokens"] as? [Int], tokens.allSatisfy({ $0 >= 0 }) else {
            throw BodhiError.invalidRequest("tokens must be a list of token ids (whole numbers, 0 or more).", param: "tokens")
        }
        var answer: JSONObject
        do {
            answer = try await engineAnswer(.detokenize, ["model": model, "tokens": tokens], allowed: allowed)
        } catch let error as BodhiError where error.status == 500 {
            // The engine fails on an id beyond its vocabulary; that is the request's fault.
            throw BodhiError.invalidRequest("tokens holds an id outside the model's vocabulary (\(error.message)).", param: "tokens")
        }
        answer["model"] = model
        return JSONBody.buffer(answer)
    }

    /// How many tokens the prompt of chat completion request `chat` (its `messages` and `tools`)
    /// takes for `model`, as the engine would count it for a completion.
    public func promptTokens(model: String, chat: JSONObject, allowed: [String]?) async throws -> Int {
        let text = try await prompt(model: model, chat: chat, allowed: allowed)
        let answer = try await engineAnswer(.tokenize, ["model": model, "content": text, "add_special": true], allowed: allowed)
        return (answer["tokens"] as? [Any])?.count ?? 0
    }

    /// The prompt the model's chat template makes of `chat`.
    private func prompt(model: String, chat: JSONObject, allowed: [String]?) async throws -> String {
        var request: JSONObject = ["model": model, "messages": chat["messages"] ?? [Any]()]
        if let tools = chat["tools"] { request["tools"] = tools }
        let answer = try await engineAnswer(.applyTemplate, request, allowed: allowed)
        guard let prompt = answer["prompt"] as? String else { throw BodhiError.internalError("The engine applied no chat template.") }
        return prompt
    }

    private static func model(in request: JSONObject) throws -> String {
        guard let model = request["model"] as? String, !model.isEmpty else {
            throw BodhiError.invalidRequest("You must provide a model parameter.", param: "model")
        }
        return model
    }

    /// The engine's JSON answer to one of its own endpoints; its refusals are the caller's 400s.
    private func engineAnswer(_ operation: InferenceOperation, _ body: JSONObject, allowed: [String]?) async throws -> JSONObject {
        guard case .complete(let status, _, let bytes) = try await handle(operation, body: JSONBody.buffer(body), allowedModels: allowed) else {
            throw BodhiError.internalError("The engine answered \(operation.rawValue) with a stream.")
        }
        let object = JSONBody.parsed(bytes) ?? [:]
        guard status == 200 else { throw BodhiError.engineAnswered(status, object) }
        return object
    }
}
