import BodhiCore
import Foundation
import Synchronization

/// A name a request used, resolved: the file to serve and the alias it came through, if any.
public struct ServedModel: Sendable, Equatable {
    /// The alias name, or the model id.
    public let name: String
    public let entry: ModelEntry
    public let alias: Alias?

    public init(name: String, entry: ModelEntry, alias: Alias?) {
        self.name = name
        self.entry = entry
        self.alias = alias
    }
}

/// The aliases, kept in memory for the request path and written through to the database.
public actor AliasRegistry {
    private let repository: (any AliasRepository)?
    private let catalog: ModelCatalog
    private var byName: [String: Alias] = [:] {
        didSet { current.withLock { [byName] in $0 = byName } }
    }
    /// `byName` as of its last change, for `resolveNow`.
    private let current = Mutex<[String: Alias]>([:])

    public init(repository: (any AliasRepository)?, catalog: ModelCatalog) {
        self.repository = repository
        self.catalog = catalog
    }

    /// Reads the aliases from the database (once, at start).
    public func load() async throws {
        byName = Dictionary(try await repository?.allAliases().map { ($0.name, $0) } ?? [], uniquingKeysWith: { a, _ in a })
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

    /// What `name` serves: an alias first (alias names never contain `/`), else a model.
    public func resolve(_ name: String) async throws -> ServedModel {
        if let alias = byName[name] {
            do {
                return ServedModel(name: alias.name, entry: try await catalog.resolve(alias.model), alias: alias)
            } catch {
                throw BodhiError(.modelNotFound, status: 404,
                    "The alias '\(name)' serves the model '\(alias.model)', which is no longer in the model cache. Pull it again or point the alias at another model.", param: "model")
            }
        }
        let entry = try await catalog.resolve(name)
        return ServedModel(name: entry.id, entry: entry, alias: nil)
    }

    /// What `resolve` answers for `name` when that needs no look at the disk (see
    /// `ModelCatalog.resolveNow`); nil when it does, or when `resolve` would refuse the name.
    public nonisolated func resolveNow(_ name: String) -> ServedModel? {
        if let alias = current.withLock({ $0[name] }) {
            return catalog.resolveNow(alias.model).map { ServedModel(name: alias.name, entry: $0, alias: alias) }
        }
        return catalog.resolveNow(name).map { ServedModel(name: $0.id, entry: $0, alias: nil) }
    }

    public func create(_ alias: Alias) async throws -> Alias {
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
            alias.model = try await catalog.resolve(alias.model).id
        } catch let error as BodhiError where error.code == .modelNotFound {
            throw BodhiError.invalidRequest(
                "The alias '\(alias.name)' would serve '\(alias.model)', which is not a local model; pull it first or list models with `bodhi ls`.",
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
