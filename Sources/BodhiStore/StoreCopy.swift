import BodhiCore
import Foundation
import SQLKit

extension Store {
    /// How one table is copied: read every row as its row type, insert them all.
    struct TableCopy: Sendable {
        let table: String
        let read: @Sendable (any SQLDatabase) async throws -> [any Encodable & Sendable]
        let insert: @Sendable (any SQLDatabase, [any Encodable & Sendable]) async throws -> Void

        init<Row: Codable & Sendable>(_ table: String, as _: Row.Type) {
            self.table = table
            read = { database in try await database.select().column("*").from(table).all(decoding: Row.self) }
            insert = { database, rows in
                let typed = rows.compactMap { $0 as? Row }
                for start in stride(from: 0, to: typed.count, by: 200) {
                    try await database.insert(into: table)
                        .models(Array(typed[start..<min(start + 200, typed.count)]), nilEncodingStrategy: .asNil).run()
                }
            }
        }
    }

    /// Every table with data, in an order that satisfies references. A table missing here is
    /// caught by a test, so that no data is left behind by a migration to PostgreSQL.
    static let copies: [TableCopy] = [
        TableCopy("aliases", as: AliasRow.self),
        TableCopy("backends", as: BackendRow.self),
        TableCopy("routers", as: RouterRow.self),
        TableCopy("pulls", as: PullRow.self),
        TableCopy("users", as: UserRow.self),
        TableCopy("sessions", as: SessionRow.self),
        TableCopy("api_tokens", as: TokenRow.self),
        TableCopy("access_requests", as: AccessRequestRow.self),
        TableCopy("chats", as: ChatRow.self),
        TableCopy("chat_messages", as: ChatMessageRow.self),
        TableCopy("responses", as: ResponseRow.self),
    ]

    /// The number of rows in `table`.
    public func rowCount(_ table: String) async throws -> Int {
        try await session { database in
            try await database.select().column(SQLFunction("COUNT", args: SQLLiteral.all), as: "count").from(table)
                .first(decodingColumn: "count", as: Int.self) ?? 0
        }
    }

    /// Copies every row of this database into `target`, which must hold no data: its schema is
    /// brought to the same version first, the rows go in one transaction, and each table's row
    /// count is compared afterwards. Returns the rows copied per table.
    public func copy(into target: Store) async throws -> [(table: String, rows: Int)] {
        for table in try await target.tableNames() where try await target.rowCount(table) > 0 {
            throw BodhiError.conflict("The target database is not empty (table \(table) has rows); migrate into an empty database.")
        }
        try await migrate()
        try await target.migrate()
        var rows: [String: [any Encodable & Sendable]] = [:]
        for copy in Self.copies {
            rows[copy.table] = try await session { try await copy.read($0) }
        }
        let snapshot = rows
        try await target.transaction { database in
            for copy in Self.copies {
                try await copy.insert(database, snapshot[copy.table] ?? [])
            }
        }
        var counts: [(table: String, rows: Int)] = []
        for copy in Self.copies {
            let expected = try await rowCount(copy.table)
            let copied = try await target.rowCount(copy.table)
            guard copied == expected, copied == snapshot[copy.table]?.count else {
                throw BodhiError.internalError(
                    "Table \(copy.table): \(expected) rows here but \(copied) in the target after the copy; the target was left as it is.")
            }
            counts.append((copy.table, copied))
        }
        return counts
    }
}
