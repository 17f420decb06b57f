import BodhiCore
import Foundation
import Synchronization

/// A name a request used, resolved: what serves it (a local file, or a backend's model) and the
/// alias it came through, if any.
public struct ServedModel: Sendable, Equatable {
    public enum Source: Sendable, Equatable {
        case file(ModelEntry)
        case remote(RemoteModel)
        /// A router model: its targets serve it.
        case router(ModelRouter)
    }

    /// The alias name, or the model's name.
    public let name: String
    public let source: Source
    public let alias: Alias?

    public init(name: String, source: Source, alias: Alias?) {
        self.name = name
        self.source = source
        self.alias = alias
    }

    public init(name: String, entry: ModelEntry, alias: Alias?) {
        self.init(name: name, source: .file(entry), alias: alias)
    }

    /// The local file it serves; nil for a backend's model.
    public var entry: ModelEntry? {
        if case .file(let entry) = source { return entry }
        return nil
    }

    /// The backend's model it serves; nil for a local file.
    public var remote: RemoteModel? {
        if case .remote(let model) = source { return model }
        return nil
    }

    /// The model's own name: the file's id, or `prefix/id` of a backend's model.
    public var modelName: String { source.name }
}

extension ServedModel.Source {
    /// The model's own name: the file's id, or `prefix/id` of a backend's model.
    public var name: String {
        switch self {
        case .file(let entry): entry.id
        case .remote(let model): model.name
        case .router(let router): router.name
        }
    }
}

/// The aliases and routers, kept in memory for the request path and written through to the
/// database. One registry for both: they share one namespace of names.
public actor AliasRegistry {
    private let repository: (any AliasRepository)?
    private let routerRepository: (any RouterRepository)?
    private var routersByName: [String: ModelRouter] = [:] {
        didSet { currentRouters.withLock { [routersByName] in $0 = routersByName } }
    }
    /// `routersByName` as of its last change, for `routerNow`.
    private let currentRouters = Mutex<[String: ModelRouter]>([:])
    private let catalog: ModelCatalog
    /// The backends' models, which names that are no local file may be.
    private let remote: (any RemoteModelDirectory)?
    private var byName: [String: Alias] = [:] {
        didSet { current.withLock { [byName] in $0 = byName } }
    }
    /// `byName` as of its last change, for `resolveNow`.
    private let current = Mutex<[String: Alias]>([:])

    public init(
        repository: (any AliasRepository)?, catalog: ModelCatalog, remote: (any RemoteModelDirectory)? = nil,
        routers: (any RouterRepository)? = nil
    ) {
        self.repository = repository
        routerRepository = routers
        self.catalog = catalog
        self.remote = remote
    }

    /// Reads the aliases from the database (once, at start).
    public func load() async throws {
        byName = Dictionary(try await repository?.allAliases().map { ($0.name, $0) } ?? [], uniquingKeysWith: { a, _ in a })
        routersByName = Dictionary(try await routerRepository?.allRouters().map { ($0.name, $0) } ?? [], uniquingKeysWith: { a, _ in a })
    }

    // MARK: Routers

    public func routers() -> [ModelRouter] {
        routersByName.values.sorted { $0.name < $1.name }
    }

    public func router(named name: String) throws -> ModelRouter {
        guard let router = routersByName[name] else {
            throw BodhiError.notFound("There is no router '\(name)'. List routers with GET /bodhi/v1/routers or `bodhi router ls`.")
        }
        return router
    }

    /// The router `name` names, without the actor.
    public nonisolated func routerNow(_ name: String) -> ModelRouter? {
        currentRouters.withLock { $0[name] }
    }

    /// Creates or replaces a router. Its targets must each resolve (local, a backend's, or an
    /// alias) and none may be a router; its name may not be an alias's.
    public func setRouter(_ router: ModelRouter) async throws -> ModelRouter {
        try router.validate()
        if byName[router.name] != nil {
            throw BodhiError.conflict("'\(router.name)' is an alias; a router needs a name of its own.")
        }
        var router = router
        for (index, target) in router.targets.enumerated() {
            if routersByName[target] != nil {
                throw BodhiError.invalidRequest("The target '\(target)' is a router; a router's targets are models or aliases.", param: "targets")
            }
            do {
                router.targets[index] = try await resolve(target).name
            } catch let error as BodhiError where error.status == 404 {
                throw BodhiError.invalidRequest(
                    "The target '\(target)' is neither a model, a backend's model nor an alias; list models with `bodhi ls`.", param: "targets")
            }
        }
        router.createdAt = routersByName[router.name]?.createdAt ?? Date()
        router.updatedAt = Date()
        try await routerRepository?.saveRouter(router)
        routersByName[router.name] = router
        return router
    }

    @discardableResult
    public func deleteRouter(_ name: String) async throws -> ModelRouter {
        let router = try self.router(named: name)
        try await routerRepository?.deleteRouter(named: name)
        routersByName[name] = nil
        return router
    }

    /// All aliases, by name.
    public func list() -> [Alias] {
        byName.values.sorted { $0.name < $1.name }
    }

    public func alias(named name: String) throws -> Alias {
        guard let alias = byName[name] else {
            throw BodhiError.notFound("There is no alias '\(name)'. List aliases with GET /bodhi/v1/aliases or `bodhi alias ls`.")
        }
        return alias
    }

    /// The backends' models, by name.
    public nonisolated func remoteModels() -> [RemoteModel] {
        remote?.remoteModels() ?? []
    }

    /// The aliases that serve `modelID`.
    public func aliases(of modelID: String) -> [Alias] {
        list().filter { $0.model == modelID }
    }

    /// Clears the way for deleting a model's files: refused while aliases serve it, unless
    /// `force`, which deletes those aliases.
    public func release(_ modelID: String, force: Bool) async throws {
        let dependents = aliases(of: modelID)
        guard !dependents.isEmpty else { return }
        guard force else {
            throw BodhiError.conflict(
                "The model '\(modelID)' is served by the aliases \(dependents.map(\.name).joined(separator: ", ")); delete them first, or delete with force (?force=true, `bodhi rm --force`) to remove them too.")
        }
        for alias in dependents { try await delete(alias.name) }
    }

    /// What `name` serves: a router or an alias first (their names never contain `/`), else a
    /// backend's model (`prefix/model`), else a local model.
    public func resolve(_ name: String) async throws -> ServedModel {
        if let router = routersByName[name] { return ServedModel(name: name, source: .router(router), alias: nil) }
        if let alias = byName[name] {
            do {
                return ServedModel(name: alias.name, source: try await source(of: alias.model), alias: alias)
            } catch {
                throw BodhiError(.modelNotFound, status: 404,
                    "The alias '\(name)' serves the model '\(alias.model)', which is no longer in the model cache or served by a backend. Pull it again or point the alias at another model.", param: "model")
            }
        }
        let source = try await source(of: name)
        return ServedModel(name: source.name, source: source, alias: nil)
    }

    /// What serves the model `name` (no alias): a backend's model, else a local file.
    private func source(of name: String) async throws -> ServedModel.Source {
        if let model = await remote?.remoteModel(named: name) { return .remote(model) }
        return .file(try await catalog.resolve(name))
    }

    /// What `resolve` answers for `name` when that needs no look at the disk (see
    /// `ModelCatalog.resolveNow`); nil when it does, or when `resolve` would refuse the name.
    public nonisolated func resolveNow(_ name: String) -> ServedModel? {
        if let router = routerNow(name) { return ServedModel(name: name, source: .router(router), alias: nil) }
        if let alias = current.withLock({ $0[name] }) {
            return sourceNow(of: alias.model).map { ServedModel(name: alias.name, source: $0, alias: alias) }
        }
        return sourceNow(of: name).map { ServedModel(name: $0.name, source: $0, alias: nil) }
    }

    /// Whether `resolve` would refuse `name` as missing, known without waiting for anything: no
    /// router, alias or backend's model has the name, and the model cache was looked at within
    /// the last second without finding it (`ModelCatalog.isMissingNow`).
    public nonisolated func isMissingNow(_ name: String) -> Bool {
        routerNow(name) == nil && current.withLock({ $0[name] }) == nil && (remote?.servesNoModelNow(named: name) ?? true)
            && catalog.isMissingNow(name)
    }

    private nonisolated func sourceNow(of name: String) -> ServedModel.Source? {
        if let model = remote?.remoteModelNow(named: name) { return .remote(model) }
        return catalog.resolveNow(name).map { .file($0) }
    }

    public func create(_ alias: Alias) async throws -> Alias {
        if routersByName[alias.name] != nil {
            throw BodhiError.conflict("'\(alias.name)' is a router; an alias needs a name of its own.")
        }
        guard byName[alias.name] == nil else {
            throw BodhiError.conflict("The alias '\(alias.name)' exists already; update it with PUT /bodhi/v1/aliases/\(alias.name).")
        }
        var alias = try await checked(alias)
        alias.createdAt = Date()
        alias.updatedAt = alias.createdAt
        return try await save(alias)
    }

    /// Replaces the alias's model, defaults and engine settings.
    public func update(_ alias: Alias) async throws -> Alias {
        let existing = try self.alias(named: alias.name)
        var alias = try await checked(alias)
        alias.createdAt = existing.createdAt
        alias.updatedAt = Date()
        return try await save(alias)
    }

    public func copy(_ name: String, to newName: String) async throws -> Alias {
        var copy = try alias(named: name)
        copy.name = newName
        return try await create(copy)
    }

    @discardableResult
    public func delete(_ name: String) async throws -> Alias {
        let alias = try self.alias(named: name)
        try await repository?.deleteAlias(named: name)
        byName[name] = nil
        return alias
    }

    /// Validates the alias and names its model by its exact id.
    private func checked(_ alias: Alias) async throws -> Alias {
        try alias.validate()
        var alias = alias
        do {
            alias.model = try await source(of: alias.model).name
        } catch let error as BodhiError where error.code == .modelNotFound {
            throw BodhiError.invalidRequest(
                "The alias '\(alias.name)' would serve '\(alias.model)', which is neither a local model nor a backend's; pull it first or list models with `bodhi ls`.",
                param: "model")
        }
        return alias
    }

    private func save(_ alias: Alias) async throws -> Alias {
        try await repository?.saveAlias(alias)
        byName[alias.name] = alias
        return alias
    }
}
