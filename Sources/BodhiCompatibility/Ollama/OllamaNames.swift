import BodhiCore

/// How Ollama's `name[:tag]` maps onto Bodhi's names: a Hugging Face model is
/// `owner/repo:QUANT`, with or without Ollama's `hf.co/` prefix; an alias is its own name, and
/// an alias without a tag is also reachable as `name:latest`, the tag Ollama assumes.
public enum OllamaNames {
    /// The names to try for an Ollama name, most specific first.
    public static func candidates(for name: String) -> [String] {
        var base = name
        for prefix in ["hf.co/", "huggingface.co/"] where base.lowercased().hasPrefix(prefix) {
            base = String(base.dropFirst(prefix.count))
        }
        var names = [base]
        if base.hasSuffix(":latest") { names.append(String(base.dropLast(":latest".count))) }
        return names
    }

    /// How `/api/tags` shows a Bodhi name: aliases always with a tag, as Ollama's names have one.
    public static func display(_ name: String, isAlias: Bool) -> String {
        isAlias && !name.contains(":") ? name + ":latest" : name
    }

    /// Ollama's wording for a model that is not there.
    public static func notFound(_ name: String) -> BodhiError {
        BodhiError(.modelNotFound, status: 404, "model \"\(name)\" not found, try pulling it first")
    }
}
