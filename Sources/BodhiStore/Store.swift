import BodhiCore
import Foundation
import Logging
import SQLKit
import SQLiteKit

/// Bodhi's database: one dialect-neutral SQLKit layer, so the same queries and migrations run
/// on SQLite (the default, a file in `BODHI_HOME`) and on PostgreSQL.
public final class Store: Sendable {
    private let database: any SQLDatabase
    /// SQLite has one connection; the gate gives each session (a query or a transaction) the
    /// connection to itself, so a transaction's statements never interleave with another's.
    private let gate = SerialGate()
    private let closeConnection: @Sendable () async throws -> Void

    private init(database: any SQLDatabase, close: @escaping @Sendable () async throws -> Void) {
        self.database = database
        closeConnection = close
    }

    /// Opens (creating if needed) the SQLite database at `path`. WAL lets other processes — a
    /// CLI beside the server — read while Bodhi writes; the busy timeout makes them wait their turn.
    public static func openSQLite(path: String, logger: Logger = Logger(label: "bodhi.store")) async throws -> Store {
        do {
            try FileManager.default.createDirectory(
                atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            let connection = try await SQLiteConnection.open(storage: .file(path: path), logger: logger)
            let database = connection.sql(queryLogLevel: .trace)
            for pragma in ["PRAGMA journal_mode = WAL", "PRAGMA foreign_keys = ON", "PRAGMA busy_timeout = 5000"] {
                try await database.raw(SQLQueryString(pragma)).run()
            }
            return Store(database: database, close: { try await connection.close() })
        } catch {
            throw BodhiError.internalError("Could not open the database at \(path): \(String(reflecting: error))")
        }
    }

    /// Runs `body` with the database to itself.
    public func session<Result: Sendable>(
        _ body: @Sendable (any SQLDatabase) async throws -> Result
    ) async throws -> Result {
        try await gate.withTurn { try await body(database) }
    }

    /// Runs `body` in a transaction: committed when it returns, rolled back when it throws.
    public func transaction<Result: Sendable>(
        _ body: @Sendable (any SQLDatabase) async throws -> Result
    ) async throws -> Result {
        try await session { database in
            try await database.raw("BEGIN").run()
            do {
                let result = try await body(database)
                try await database.raw("COMMIT").run()
                return result
            } catch {
                try? await database.raw("ROLLBACK").run()
                throw error
            }
        }
    }

    public func close() async {
        try? await gate.withTurn { try await closeConnection() }
    }
}

/// A FIFO lock for async code: one turn at a time, in the order asked.
actor SerialGate {
    private var busy = false
    private var waiting: [CheckedContinuation<Void, Never>] = []

    func withTurn<Result: Sendable>(_ body: @Sendable () async throws -> Result) async throws -> Result {
        await acquire()
        defer { release() }
        return try await body()
    }

    private func acquire() async {
        if !busy {
            busy = true
            return
        }
        await withCheckedContinuation { waiting.append($0) }
    }

    private func release() {
        if waiting.isEmpty {
            busy = false
        } else {
            waiting.removeFirst().resume()
        }
    }
}
