import BodhiModels

/// What one engine child runs: a model file under a name, with the engine settings of the
/// alias it serves, if any. Plain models and aliases without engine settings share the
/// engine of their file; an alias with engine settings gets an engine of its own.
public struct EngineTarget: Sendable, Equatable {
    /// The engine's key and the name it reports: the model id, or the alias name.
    public let id: String
    public let entry: ModelEntry
    public let overrides: EngineOverrides
    /// Whether it serves embeddings only: a model's embeddings get an engine of their own, with
    /// one slot whose batch takes an input as long as its context, so that they never wait behind
    /// the model's generations nor fail on a long input.
    public let forEmbeddings: Bool

    public init(model entry: ModelEntry) {
        id = entry.id
        self.entry = entry
        overrides = EngineOverrides()
        forEmbeddings = false
    }

    /// The engine of a local model; nil for a backend's, which has none here.
    public init?(_ served: ServedModel) {
        guard let entry = served.entry else { return nil }
        self.init(served, entry: entry)
    }

    init(_ served: ServedModel, entry: ModelEntry) {
        let overrides = served.alias?.engine ?? EngineOverrides()
        id = overrides.isEmpty ? entry.id : served.name
        self.entry = entry
        self.overrides = overrides
        forEmbeddings = false
    }

    private init(embeddingsOf target: EngineTarget) {
        id = Self.embeddingsID(of: target.id)
        entry = target.entry
        var overrides = target.overrides
        overrides.parallel = 1
        self.overrides = overrides
        forEmbeddings = true
    }

    /// The engine that serves this one's embeddings.
    public var embeddings: EngineTarget { forEmbeddings ? self : EngineTarget(embeddingsOf: self) }

    /// The key of the embeddings engine of the engine keyed `id`.
    public static func embeddingsID(of id: String) -> String { id + embeddingsSuffix }

    /// The key of the engine an engine keyed `id` serves embeddings for; `id` itself for others.
    public static func servedID(of id: String) -> String { id.hasSuffix(embeddingsSuffix) ? String(id.dropLast(embeddingsSuffix.count)) : id }

    private static let embeddingsSuffix = "#embeddings"

    /// The name the engine reports its model by: the one its requests give.
    public var reportedName: String { Self.servedID(of: id) }

    public var path: String { entry.path }
}
