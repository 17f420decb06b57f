import BodhiModels

/// Model management that involves both the files and the engines running them.
public struct ModelService: Sendable {
    private let catalog: ModelCatalog
    private let supervisor: EngineSupervisor

    public init(catalog: ModelCatalog, supervisor: EngineSupervisor) {
        self.catalog = catalog
        self.supervisor = supervisor
    }

    /// Unloads the model if it is loaded, then deletes its files.
    public func delete(_ name: String) async throws -> ModelEntry {
        let entry = try await catalog.resolve(name)
        await supervisor.unload(entry.id)
        return try await catalog.delete(entry.id)
    }
}
