import BodhiModels

/// What one engine child runs: a model file under a name, with the engine settings of the
/// alias it serves, if any. Plain models and aliases without engine settings share the
/// engine of their file; an alias with engine settings gets an engine of its own.
public struct EngineTarget: Sendable, Equatable {
    /// The engine's key and the name it reports: the model id, or the alias name.
    public let id: String
    public let entry: ModelEntry
    public let overrides: EngineOverrides
    /// What it serves: a model's embeddings and reranking get an engine of their own each, with
    /// one slot whose batch takes an input as long as its context, so that they never wait behind
    /// the model's generations nor fail on a long input.
    public let role: Role

    public enum Role: String, Sendable, CaseIterable {
        case generation
        case embeddings
        /// Scores a query against documents (llama-server's `--reranking`).
        case rerank

        /// The suffix of its engine's key after the model's: `#embeddings`, `#rerank`.
        var keySuffix: String { self == .generation ? "" : "#" + rawValue }
    }

    /// Whether it pools an input into one vector or score (embeddings, reranking).
    public var pools: Bool { role != .generation }

    public init(model entry: ModelEntry) {
        id = entry.id
        self.entry = entry
        overrides = EngineOverrides()
        role = .generation
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
        role = .generation
    }

    private init(_ role: Role, of target: EngineTarget) {
        id = Self.servedID(of: target.id) + role.keySuffix
        entry = target.entry
        overrides = target.overrides
        self.role = role
    }

    /// The engine of the same model that plays `role`.
    public func companion(_ role: Role) -> EngineTarget { role == self.role ? self : EngineTarget(role, of: self) }

    /// The engine of the same model that serves `operation`.
    public func companion(for operation: InferenceOperation) -> EngineTarget {
        companion(operation == .embeddings ? .embeddings : operation == .rerank ? .rerank : .generation)
    }

    /// The keys of every engine of the model whose generation engine is keyed `id`.
    public static func companionIDs(of id: String) -> [String] { Role.allCases.map { id + $0.keySuffix } }

    /// The key of the generation engine of the model whose engine is keyed `id`; `id` itself for those.
    public static func servedID(of id: String) -> String {
        for role in Role.allCases where role != .generation && id.hasSuffix(role.keySuffix) { return String(id.dropLast(role.keySuffix.count)) }
        return id
    }

    /// The name the engine reports its model by: the one its requests give.
    public var reportedName: String { Self.servedID(of: id) }

    public var path: String { entry.path }
}
