import BodhiModels
import Foundation

/// Aliases in the `aliases` table; defaults and engine settings are JSON columns.
extension Store: AliasRepository {
    struct AliasRow: Codable, Sendable {
        var name: String
        var model: String
        var request_defaults: String
        var engine_settings: String
        var created_at: Int64
        var updated_at: Int64

        init(_ alias: Alias) throws {
            name = alias.name
            model = alias.model
            request_defaults = try jsonColumn(alias.defaults)
            engine_settings = try jsonColumn(alias.engine)
            created_at = millis(alias.createdAt)
            updated_at = millis(alias.updatedAt)
        }

        func alias() throws -> Alias {
            Alias(
                name: name, model: model,
                defaults: try fromJSONColumn(request_defaults, as: RequestDefaults.self),
                engine: try fromJSONColumn(engine_settings, as: EngineOverrides.self),
                createdAt: date(created_at), updatedAt: date(updated_at))
        }
    }

    public func allAliases() async throws -> [Alias] {
        try await allNamed("aliases", as: AliasRow.self).map { try $0.alias() }
    }

    public func saveAlias(_ alias: Alias) async throws {
        let row = try AliasRow(alias)
        try await saveNamed(row, into: "aliases", replacing: ["model", "request_defaults", "engine_settings", "updated_at"])
    }

    public func deleteAlias(named name: String) async throws {
        try await deleteNamed(name, from: "aliases")
    }
}
