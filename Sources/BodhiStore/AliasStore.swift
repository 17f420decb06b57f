import BodhiModels
import Foundation
import SQLKit

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
        try await session { database in
            try await database.select().column("*").from("aliases").orderBy("name").all(decoding: AliasRow.self)
        }.map { try $0.alias() }
    }

    public func saveAlias(_ alias: Alias) async throws {
        let row = try AliasRow(alias)
        try await session { database in
            try await database.insert(into: "aliases").model(row)
                .onConflict(with: "name") { update in
                    update.set(excludedValueOf: "model").set(excludedValueOf: "request_defaults")
                        .set(excludedValueOf: "engine_settings").set(excludedValueOf: "updated_at")
                }
                .run()
        }
    }

    public func deleteAlias(named name: String) async throws {
        try await session { database in
            try await database.delete(from: "aliases").where("name", .equal, name).run()
        }
    }
}
