import BodhiCore
import Foundation
import SQLKit

/// One step of the schema, applied once, in a transaction, and recorded in
/// `schema_migrations`. Written with SQLKit's builders so that it runs on every dialect.
public struct Migration: Sendable {
    public let version: Int
    public let name: String
    let up: @Sendable (any SQLDatabase) async throws -> Void
    let down: @Sendable (any SQLDatabase) async throws -> Void
}

extension Migration {
    /// The schema, in order. Never edit a released step; add a new one.
    public static let all: [Migration] = [
        Migration(version: 1, name: "aliases", up: { database in
            try await database.create(table: "aliases")
                .column("name", type: .text, .primaryKey(autoIncrement: false))
                .column("model", type: .text, .notNull)
                .column("request_defaults", type: .text, .notNull)
                .column("engine_settings", type: .text, .notNull)
                .column("created_at", type: .bigint, .notNull)
                .column("updated_at", type: .bigint, .notNull)
                .run()
            try await database.create(index: "aliases_model").on("aliases").column("model").run()
        }, down: { database in
            try await database.drop(table: "aliases").run()
        }),
        Migration(version: 2, name: "pulls", up: { database in
            try await database.create(table: "pulls")
                .column("id", type: .text, .primaryKey(autoIncrement: false))
                .column("reference", type: .text, .notNull)
                .column("repo", type: .text, .notNull)
                .column("revision", type: .text, .notNull)
                .column("commit_sha", type: .text, .notNull)
                .column("model", type: .text, .notNull)
                .column("files", type: .text, .notNull)
                .column("state", type: .text, .notNull)
                .column("error", type: .text)
                .column("total_bytes", type: .bigint, .notNull)
                .column("completed_bytes", type: .bigint, .notNull)
                .column("created_at", type: .bigint, .notNull)
                .column("updated_at", type: .bigint, .notNull)
                .run()
            try await database.create(index: "pulls_state").on("pulls").column("state").run()
        }, down: { database in
            try await database.drop(table: "pulls").run()
        }),
        Migration(version: 3, name: "identity", up: { database in
            try await database.create(table: "users")
                .column("id", type: .text, .primaryKey(autoIncrement: false))
                .column("username", type: .text, .notNull, .unique)
                .column("password_hash", type: .text, .notNull)
                .column("role", type: .text)
                .column("disabled", type: .int, .notNull)
                .column("failed_logins", type: .int, .notNull)
                .column("locked_until", type: .bigint)
                .column("created_at", type: .bigint, .notNull)
                .column("updated_at", type: .bigint, .notNull)
                .run()
            try await database.create(table: "sessions")
                .column("id_hash", type: .text, .primaryKey(autoIncrement: false))
                .column("user_id", type: .text, .notNull, .references("users", "id", onDelete: .cascade))
                .column("csrf_token", type: .text, .notNull)
                .column("created_at", type: .bigint, .notNull)
                .column("expires_at", type: .bigint, .notNull)
                .run()
            try await database.create(index: "sessions_user").on("sessions").column("user_id").run()
            try await database.create(table: "api_tokens")
                .column("id", type: .text, .primaryKey(autoIncrement: false))
                .column("user_id", type: .text, .notNull, .references("users", "id", onDelete: .cascade))
                .column("name", type: .text, .notNull)
                .column("prefix", type: .text, .notNull, .unique)
                .column("token_hash", type: .text, .notNull)
                .column("scope", type: .text, .notNull)
                .column("models", type: .text)
                .column("created_at", type: .bigint, .notNull)
                .column("expires_at", type: .bigint)
                .column("revoked_at", type: .bigint)
                .column("last_used_at", type: .bigint)
                .run()
            try await database.create(index: "api_tokens_user").on("api_tokens").column("user_id").run()
            try await database.create(table: "access_requests")
                .column("id", type: .text, .primaryKey(autoIncrement: false))
                .column("user_id", type: .text, .notNull, .references("users", "id", onDelete: .cascade))
                .column("username", type: .text, .notNull)
                .column("status", type: .text, .notNull)
                .column("decided_by", type: .text)
                .column("created_at", type: .bigint, .notNull)
                .column("decided_at", type: .bigint)
                .run()
        }, down: { database in
            for table in ["access_requests", "api_tokens", "sessions", "users"] {
                try await database.drop(table: table).run()
            }
        }),
        Migration(version: 4, name: "chats", up: { database in
            try await database.create(table: "chats")
                .column("id", type: .text, .primaryKey(autoIncrement: false))
                .column("user_id", type: .text, .notNull, .references("users", "id", onDelete: .cascade))
                .column("title", type: .text, .notNull)
                .column("model", type: .text)
                .column("system_prompt", type: .text)
                .column("settings", type: .text, .notNull)
                .column("message_count", type: .int, .notNull)
                .column("created_at", type: .bigint, .notNull)
                .column("updated_at", type: .bigint, .notNull)
                .run()
            // The list is per user, newest change first.
            try await database.create(index: "chats_user_updated").on("chats").column("user_id").column("updated_at").run()
            try await database.create(table: "chat_messages")
                .column("id", type: .text, .primaryKey(autoIncrement: false))
                .column("chat_id", type: .text, .notNull, .references("chats", "id", onDelete: .cascade))
                .column("position", type: .int, .notNull)
                .column("role", type: .text, .notNull)
                .column("content", type: .text, .notNull)
                .column("model", type: .text)
                .column("stats", type: .text)
                .column("created_at", type: .bigint, .notNull)
                .run()
            // One message per place: two writers racing to append cannot interleave.
            try await database.create(index: "chat_messages_position").unique().on("chat_messages")
                .column("chat_id").column("position").run()
        }, down: { database in
            for table in ["chat_messages", "chats"] {
                try await database.drop(table: table).run()
            }
        }),
        Migration(version: 5, name: "backends", up: { database in
            try await database.create(table: "backends")
                .column("name", type: .text, .primaryKey(autoIncrement: false))
                .column("url", type: .text, .notNull)
                .column("format", type: .text, .notNull)
                .column("prefix", type: .text, .notNull, .unique)
                // Sealed with the secret key (AES-GCM); never the key itself.
                .column("sealed_key", type: .text)
                .column("created_at", type: .bigint, .notNull)
                .column("updated_at", type: .bigint, .notNull)
                .run()
        }, down: { database in
            try await database.drop(table: "backends").run()
        }),
        Migration(version: 6, name: "routers", up: { database in
            try await database.create(table: "routers")
                .column("name", type: .text, .primaryKey(autoIncrement: false))
                .column("targets", type: .text, .notNull)
                .column("strategy", type: .text, .notNull)
                .column("weights", type: .text)
                .column("cooldown_seconds", type: .int, .notNull)
                .column("created_at", type: .bigint, .notNull)
                .column("updated_at", type: .bigint, .notNull)
                .run()
        }, down: { database in
            try await database.drop(table: "routers").run()
        }),
        // Responses API answers kept for their users (`store: true`); a user's go with them.
        Migration(version: 7, name: "responses", up: { database in
            try await database.create(table: "responses")
                .column("id", type: .text, .primaryKey(autoIncrement: false))
                .column("user_id", type: .text, .notNull, .references("users", "id", onDelete: .cascade))
                .column("previous_response_id", type: .text)
                .column("response", type: .text, .notNull)
                .column("input_items", type: .text, .notNull)
                .column("created_at", type: .bigint, .notNull)
                .run()
        }, down: { database in
            try await database.drop(table: "responses").run()
        }),
    ]
}

extension Store {
    /// The versions applied so far, ascending.
    public func appliedMigrations() async throws -> [Int] {
        try await session { database in
            try await Self.createMigrationTable(database)
            return try await database.select().column("version").from("schema_migrations")
                .orderBy("version").all(decodingColumn: "version", as: Int.self)
        }
    }

    /// Applies every step not yet applied, up to `target` (all by default). Each step and its
    /// record commit together, so a failure leaves the schema at the last good step.
    public func migrate(to target: Int? = nil, migrations: [Migration] = Migration.all) async throws {
        let applied = Set(try await appliedMigrations())
        for migration in migrations.sorted(by: { $0.version < $1.version })
        where !applied.contains(migration.version) && migration.version <= (target ?? Int.max) {
            do {
                try await transaction { database in
                    try await migration.up(database)
                    try await database.insert(into: "schema_migrations")
                        .columns("version", "name", "applied_at")
                        .values(SQLBind(migration.version), SQLBind(migration.name), SQLBind(Int64(Date().timeIntervalSince1970)))
                        .run()
                }
            } catch {
                throw BodhiError.internalError(
                    "Database migration \(migration.version) (\(migration.name)) failed: \(String(reflecting: error))")
            }
        }
    }

    /// Reverts applied steps, newest first, down to (not including) `target`.
    public func revert(to target: Int, migrations: [Migration] = Migration.all) async throws {
        let applied = Set(try await appliedMigrations())
        for migration in migrations.sorted(by: { $0.version > $1.version })
        where applied.contains(migration.version) && migration.version > target {
            try await transaction { database in
                try await migration.down(database)
                try await database.delete(from: "schema_migrations").where("version", .equal, migration.version).run()
            }
        }
    }

    private static func createMigrationTable(_ database: any SQLDatabase) async throws {
        try await database.create(table: "schema_migrations").ifNotExists()
            .column("version", type: .bigint, .primaryKey(autoIncrement: false))
            .column("name", type: .text, .notNull)
            .column("applied_at", type: .bigint, .notNull)
            .run()
    }
}

extension Store {
    /// The tables in the database (the current schema on PostgreSQL), sorted.
    public func tableNames() async throws -> [String] {
        let query: SQLQueryString = kind == .sqlite
            ? "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            : "SELECT table_name AS name FROM information_schema.tables WHERE table_schema = current_schema()"
        return try await session { database in
            try await database.raw(query).all(decodingColumn: "name", as: String.self)
        }.sorted()
    }
}
