/// The command line of one `llama-server` child.
public enum EngineArguments {
    /// Bodhi's fixed choices come first and extra arguments from settings last.
    /// - The child listens on loopback only. Its per-child key travels in the environment
    ///   (`apiKeyVariable`), which other users cannot read, unlike a command line.
    /// - `--jinja` applies the model's own chat template; `--embeddings --pooling mean` lets
    ///   the same process serve chat and embeddings; `--metrics` exposes its Prometheus data.
    /// - `--alias` makes the child report the model under Bodhi's name.
    /// - `--no-context-shift`: a generation stops (finish reason `length`) when its slot's context is
    ///   full, rather than dropping the start of the conversation to go on without bound.
    public static func build(
        modelPath: String, modelName: String, port: Int, parallel: Int, extra: [String]
    ) -> [String] {
        [
            "--model", modelPath,
            "--alias", modelName,
            "--host", "127.0.0.1",
            "--port", String(port),
            "--parallel", String(parallel),
            "--jinja",
            "--embeddings", "--pooling", "mean",
            "--metrics",
            "--no-webui",
            "--no-context-shift",
        ] + extra
    }

    /// llama-server reads its API key from this variable when `--api-key` is not given.
    public static let apiKeyVariable = "LLAMA_API_KEY"

    /// The child's environment: Bodhi's own, with the child's key.
    public static func environment(inheriting parent: [String: String], apiKey: String) -> [String: String] {
        parent.merging([apiKeyVariable: apiKey]) { _, key in key }
    }

    /// The arguments with the port and key replaced, for showing and for benchmarks that
    /// start an identical engine.
    public static func redacted(_ arguments: [String]) -> [String] {
        var result = arguments
        for index in result.indices.dropLast() where result[index] == "--api-key" || result[index] == "--port" {
            result[index + 1] = "<redacted>"
        }
        return result
    }
}
