import BodhiCore
import BodhiModels

/// Model management that involves the files, the aliases and the engines running them.
public struct ModelService: Sendable {
    private let catalog: ModelCatalog
    private let aliases: AliasRegistry
    private let supervisor: EngineSupervisor

    public init(catalog: ModelCatalog, aliases: AliasRegistry, supervisor: EngineSupervisor) {
        self.catalog = catalog
        self.aliases = aliases
        self.supervisor = supervisor
    }

    /// Unloads the model (and its aliases' engines), then deletes its files. While aliases
    /// serve it the delete is refused, unless `force`, which deletes those aliases too.
    public func delete(_ name: String, force: Bool = false) async throws -> ModelEntry {
        let entry = try Self.file(of: await aliases.resolve(name))
        try await aliases.release(entry.id, force: force)
        await supervisor.unload(usingFile: entry.path)
        return try await catalog.delete(entry.id)
    }

    /// A model (or the model an alias serves) with its header facts, the memory it takes as
    /// it would run, and the aliases that serve it.
    public func describe(_ name: String, plan: EnginePlan) async throws -> ModelDescription {
        let served = try await aliases.resolve(name)
        var plan = plan
        if let engine = served.alias?.engine {
            if let parallel = engine.parallel { plan.slots = parallel }
            if let context = engine.contextSize { plan.contextSize = context > 0 ? context : nil }
        }
        let entry = try Self.file(of: served)
        var description = try await catalog.describe(entry.id, plan: plan)
        description.aliases = await aliases.aliases(of: entry.id).map(\.name)
        return description
    }

    /// Every model, described, with the aliases that serve it.
    public func describeAll(plan: EnginePlan) async -> [ModelDescription] {
        let all = await aliases.list()
        return await catalog.describeAll(plan: plan).map { description in
            var description = description
            description.aliases = all.filter { $0.model == description.entry.id }.map(\.name)
            return description
        }
    }

    /// The local file `served` is; a backend's model has none here, which is a 400 naming its backend.
    public static func file(of served: ServedModel) throws -> ModelEntry {
        switch served.source {
        case .file(let entry): return entry
        case .remote(let model):
            throw BodhiError.invalidRequest(
                "'\(served.name)' is the model '\(model.id)' of the backend '\(model.backend)'; it has no files on this machine.", param: "model")
        case .router(let router):
            throw BodhiError.invalidRequest(
                "'\(served.name)' is a router to \(router.targets.joined(separator: ", ")); it has no files of its own.", param: "model")
        }
    }

    /// An alias changed or went away: its own engine must not keep the old settings.
    public func aliasChanged(_ name: String) async {
        await supervisor.unload(name)
    }
}
