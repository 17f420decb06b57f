import BodhiModels

/// What one engine child runs: a model file under a name, with the engine settings of the
/// alias it serves, if any. Plain models and aliases without engine settings share the
/// engine of their file; an alias with engine settings gets an engine of its own.
public struct EngineTarget: Sendable, Equatable {
    /// The engine's key and the name it reports: the model id, or the alias name.
    public let id: String
    public let entry: ModelEntry
    public let overrides: EngineOverrides

    public init(model entry: ModelEntry) {
        id = entry.id
        self.entry = entry
        overrides = EngineOverrides()
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
    }

    public var path: String { entry.path }
}
