/// Chat messages as every chat template takes them: many templates accept one system message, and
/// only first (llama.cpp refuses the rest for them), so system and developer text from anywhere in
/// a conversation is joined, in order, into one leading system message.
public enum ChatMessages {
    /// `messages` with one leading system message holding every system and developer message's
    /// text, then `extra`; unchanged when there is nothing to join or move.
    public static func leadingSystem(_ messages: [JSONObject], adding extra: String? = nil) -> [JSONObject] {
        var texts: [String] = []
        var rest: [JSONObject] = []
        for message in messages {
            guard ["system", "developer"].contains(message["role"] as? String) else {
                rest.append(message)
                continue
            }
            switch message["content"] {
            case let text as String: texts.append(text)
            case let parts as [JSONObject]: texts.append(parts.compactMap { $0["text"] as? String }.joined(separator: "\n"))
            default: break
            }
        }
        if let extra { texts.append(extra) }
        let system = texts.filter { !$0.isEmpty }
        guard !system.isEmpty else { return rest }
        return [["role": "system", "content": system.joined(separator: "\n\n")]] + rest
    }
}
