import BodhiCore
import BodhiModels
import Foundation
import NIOCore
import NIOFoundationCompat

extension RequestDefaults {
    /// The request body with these defaults in every field it leaves unset (absent or null);
    /// the system prompt goes first in a chat that has no system message. What does not generate
    /// (embeddings, tokens) takes no sampling settings and passes untouched.
    func applied(to body: ByteBuffer, for operation: InferenceOperation) throws -> ByteBuffer {
        guard operation.generates, !isEmpty,
              var object = try? JSONSerialization.jsonObject(with: Data(body.readableBytesView)) as? [String: Any] else {
            return body
        }
        func isUnset(_ key: String) -> Bool { object[key] == nil || object[key] is NSNull }
        for (key, value) in samplingFields where isUnset(key) {
            // Newer OpenAI clients send max_completion_tokens for the same limit.
            if key == "max_tokens", !isUnset("max_completion_tokens") || !isUnset("n_predict") { continue }
            object[key] = value
        }
        if operation == .chatCompletions, let system, var messages = object["messages"] as? [Any] {
            let hasSystem = messages.contains { message in
                let role = (message as? [String: Any])?["role"] as? String
                return role == "system" || role == "developer"
            }
            if !hasSystem {
                messages.insert(["role": "system", "content": system], at: 0)
                object["messages"] = messages
            }
        }
        return ByteBuffer(data: try JSONSerialization.data(withJSONObject: object))
    }
}
