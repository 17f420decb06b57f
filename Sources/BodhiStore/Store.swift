import BodhiCore
import BodhiIdentity
import Foundation
import Logging
import SQLKit
import NIOSSL
import PostgresKit
import SQLiteKit
import Synchronization

/// Milliseconds since 1970, the one time format of every table.
func millis(_ date: Date) -> Int64 { Int64(date.timeIntervalSince1970 * 1000) }
func date(_ millis: Int64) -> Date { Date(timeIntervalSince1970: Double(millis) / 1000) }

/// A value kept as JSON text in one column (defaults, file lists, settings), and read back.
func jsonColumn<Value: Encodable>(_ value: Value) throws -> String {
    String(decoding: try JSONEncoder().encode(value), as: UTF8.self)
}
func fromJSONColumn<Value: Decodable>(_ text: String, as type: Value.Type) throws -> Value {
    try JSONDecoder().decode(type, from: Data(text.utf8))
}

/// Bodhi's database: one dialect-neutral SQLKit layer, so the same queries and migrations run
/// on SQLite (the default, a file in `BODHI_HOME`) and on PostgreSQL.
public final class Store: Sendable {
    private let backend: any StoreBackend
    /// Which database this is, for messages and for the few checks that differ (tests).
    public let kind: DatabaseURL.Kind
    /// The SQLite file, whose write-ahead log shows every commit from any process, the log and
    /// its WAL index (`-shm`), kept open for `changeMarker()`.
    private let markedFiles: (database: KeptOpenFile, journal: KeptOpenFile, walIndex: KeptOpenFile)?

    private init(backend: any StoreBackend, kind: DatabaseURL.Kind, sqlitePath: String? = nil) {
        self.backend = backend
        self.kind = kind
        self.markedFiles = sqlitePath.map { (KeptOpenFile(path: $0), KeptOpenFile(path: $0 + "-wal"), KeptOpenFile(path: $0 + "-shm")) }
    }

    /// For SQLite: the modification time and size of the database and its write-ahead log, and
    /// the header of the WAL index (its change counter moves at every commit, even when the log
    /// was reset to the same size within one clock tick), which every commit changes, this
    /// process's or another's (the CLI's). Two `fstat`s and one `pread`, no query: it is read on
    /// every authenticated request. Nil for PostgreSQL, whose other clients leave no such trace here.
    public func changeMarker() -> ChangeMarker? {
        guard let markedFiles else { return nil }
        return ChangeMarker(
            database: markedFiles.database.stamp(), journal: markedFiles.journal.stamp(), header: markedFiles.walIndex.walIndexHeader())
    }

    /// Opens the database `url` names.
    public static func open(_ url: DatabaseURL, logger: Logger = Logger(label: "bodhi.store")) async throws -> Store {
        switch url.kind {
        case .sqlite: return try await openSQLite(path: url.location, logger: logger)
        case .postgres: return try await openPostgres(url: url.location, logger: logger)
        }
    }

    /// Opens (creating if needed) the SQLite database at `path`. WAL lets other processes — a
    /// CLI beside the server — read while Bodhi writes; the busy timeout makes them wait their turn.
    public static func openSQLite(path: String, logger: Logger = Logger(label: "bodhi.store")) async throws -> Store {
        do {
            try FileManager.default.createDirectory(
                atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            let connection = try await SQLiteConnection.open(storage: .file(path: path), logger: logger)
            // No query logging at any level: binds carry hashes and CSRF tokens.
            let database = connection.sql(queryLogLevel: nil)
            for pragma in ["PRAGMA journal_mode = WAL", "PRAGMA foreign_keys = ON", "PRAGMA busy_timeout = 5000"] {
                try await database.raw(SQLQueryString(pragma)).run()
            }
            return Store(backend: SQLiteBackend(database: database, connection: connection), kind: .sqlite, sqlitePath: path)
        } catch {
            throw BodhiError.internalError("Could not open the database at \(path): \(String(reflecting: error))")
        }
    }

    /// Connects to PostgreSQL at `url` (`postgres://user:password@host:port/database`) with a
    /// small pool; a first connection is made here, so a wrong URL fails at start.
    public static func openPostgres(url: String, logger: Logger = Logger(label: "bodhi.store")) async throws -> Store {
        do {
            return Store(backend: try await PostgresBackend.connect(url: url, logger: logger), kind: .postgres)
        } catch let error as BodhiError {
            throw BodhiError(error.code, status: error.status, "BODHI_DATABASE_URL is not a PostgreSQL URL Bodhi can use: \(error.message)")
        } catch let error as PSQLError {
            let reason = error.serverInfo?[.message] ?? "\(error.code)" + (error.underlying.map { ": \($0)" } ?? "")
            throw BodhiError.internalError("Could not connect to PostgreSQL at \(DatabaseURL.redacted(url)): \(reason)")
        } catch {
            throw BodhiError.internalError("Could not connect to PostgreSQL at \(DatabaseURL.redacted(url)): \(error)")
        }
    }

    /// Runs `body` with one connection to itself.
    public func session<Result: Sendable>(
        _ body: @escaping @Sendable (any SQLDatabase) async throws -> Result
    ) async throws -> Result {
        try await backend.session(body)
    }

    /// Runs `body` in a transaction: committed when it returns, rolled back when it throws.
    public func transaction<Result: Sendable>(
        _ body: @escaping @Sendable (any SQLDatabase) async throws -> Result
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

    /// A trivial query, for health checks.
    public func ping() async throws {
        try await session { try await $0.raw("SELECT 1").run() }
    }

    public func close() async {
        await backend.close()
    }
}

/// How sessions reach a database.
protocol StoreBackend: Sendable {
    func session<Result: Sendable>(_ body: @escaping @Sendable (any SQLDatabase) async throws -> Result) async throws -> Result
    func close() async
}

/// SQLite has one connection; the gate gives each session (a query or a transaction) the
/// connection to itself, so a transaction's statements never interleave with another's.
struct SQLiteBackend: StoreBackend {
    let database: any SQLDatabase
    let connection: SQLiteConnection
    let gate = SerialGate()

    func session<Result: Sendable>(_ body: @escaping @Sendable (any SQLDatabase) async throws -> Result) async throws -> Result {
        try await gate.withTurn { try await body(database) }
    }

    func close() async {
        try? await gate.withTurn { try await connection.close() }
    }
}

/// PostgreSQL through PostgresNIO's client, whose pool gives each session a connection of its own.
final class PostgresBackend: StoreBackend {
    private let client: PostgresClient
    private let running: Task<Void, Never>

    /// Connects once directly, so that a wrong address, user or password fails at once with the
    /// server's reason (the pool would keep retrying), then starts the pool.
    static func connect(url: String, logger: Logger) async throws -> PostgresBackend {
        let target = try Target(url: url)
        let probe = try await PostgresConnection.connect(
            configuration: try target.connectionConfiguration(), id: 0, logger: logger)
        try? await probe.close()
        return PostgresBackend(client: PostgresClient(configuration: target.clientConfiguration(), backgroundLogger: logger))
    }

    private init(client: PostgresClient) {
        self.client = client
        running = Task { await client.run() }
    }

    /// `postgres://user:password@host:port/database?sslmode=disable|prefer|require` (libpq's
    /// `sslmode`, or `tlsmode` as postgres-kit spells it; `prefer` when absent, as in libpq).
    struct Target {
        let host: String
        let port: Int
        let user: String
        let password: String?
        let database: String?
        let mode: String

        init(url: String) throws {
            guard let components = URLComponents(string: url), let host = components.host, !host.isEmpty,
                  let user = components.user, !user.isEmpty else {
                throw BodhiError(.invalidSetting, status: 400, "expected postgres://user:password@host:port/database")
            }
            self.host = host
            port = components.port ?? 5432
            self.user = user.removingPercentEncoding ?? user
            password = components.password?.removingPercentEncoding
            let path = String(components.path.drop(while: { $0 == "/" }))
            database = path.isEmpty ? nil : path
            mode = components.queryItems?.first { $0.name == "sslmode" || $0.name == "tlsmode" }?.value ?? "prefer"
            guard ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"].contains(mode) else {
                throw BodhiError(.invalidSetting, status: 400, "sslmode must be disable, prefer or require (got \(mode))")
            }
        }

        func clientConfiguration() -> PostgresClient.Configuration {
            let tls: PostgresClient.Configuration.TLS = switch mode {
            case "disable": .disable
            case "allow", "prefer": .prefer(.makeClientConfiguration())
            default: .require(.makeClientConfiguration())
            }
            var configuration = PostgresClient.Configuration(
                host: host, port: port, username: user, password: password, database: database, tls: tls)
            configuration.options.maximumConnections = 8
            return configuration
        }

        func connectionConfiguration() throws -> PostgresConnection.Configuration {
            let tls: PostgresConnection.Configuration.TLS = switch mode {
            case "disable": .disable
            case "allow", "prefer": .prefer(try NIOSSLContext(configuration: .makeClientConfiguration()))
            default: .require(try NIOSSLContext(configuration: .makeClientConfiguration()))
            }
            var configuration = PostgresConnection.Configuration(
                host: host, port: port, username: user, password: password, database: database, tls: tls)
            configuration.options.connectTimeout = .seconds(10)
            return configuration
        }
    }

    func session<Result: Sendable>(_ body: @escaping @Sendable (any SQLDatabase) async throws -> Result) async throws -> Result {
        try await client.withConnection { connection in
            try await body(connection.sql(queryLogLevel: nil))
        }
    }

    func close() async {
        running.cancel()
        await running.value
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

/// A file read through a descriptor opened once, for what is read on every request. SQLite
/// keeps its database, log and WAL index files while any connection is open, and Bodhi's own
/// is; should one be replaced anyway, a failed read opens it again.
final class KeptOpenFile: Sendable {
    private let path: String
    private let descriptor = Mutex<CInt>(-1)

    init(path: String) { self.path = path }

    deinit {
        descriptor.withLock { if $0 >= 0 { _ = Glibc.close($0) } }
    }

    /// `read`'s answer for the file; nil when it cannot be opened or read.
    func read<Value>(_ read: (CInt) -> Value?) -> Value? {
        descriptor.withLock { fd in
            for _ in 0..<2 {
                if fd < 0 { fd = open(path, O_RDONLY | O_CLOEXEC) }
                guard fd >= 0 else { return nil }
                if let value = read(fd) { return value }
                _ = Glibc.close(fd)
                fd = -1
            }
            return nil
        }
    }

    /// The file's modification time and size (`fstat`: no path to walk, unlike `stat`).
    func stamp() -> ChangeMarker.FileStamp {
        read { fd -> ChangeMarker.FileStamp? in
            var status = stat()
            guard fstat(fd, &status) == 0 else { return nil }
            return .init(seconds: status.st_mtim.tv_sec, nanoseconds: status.st_mtim.tv_nsec, size: Int(status.st_size))
        } ?? .missing
    }

    /// The header of a SQLite WAL index (`-shm`: version, change counter, frame count, salts):
    /// its first 48 bytes, zero-padded to 64.
    func walIndexHeader() -> SIMD8<UInt64>? {
        read { fd -> SIMD8<UInt64>? in
            var words = SIMD8<UInt64>()
            let count = withUnsafeMutableBytes(of: &words) { pread(fd, $0.baseAddress, 48, 0) }
            return count > 0 ? words : nil
        }
    }
}

extension Store {
    /// The rows of a table of named things (aliases, routers, backends), by name.
    func allNamed<Row: Decodable & Sendable>(_ table: String, as _: Row.Type) async throws -> [Row] {
        try await session { database in
            try await database.select().column("*").from(table).orderBy("name").all(decoding: Row.self)
        }
    }

    /// Writes a named thing's row: inserted, or `columns` replaced when the name exists.
    func saveNamed<Row: Encodable & Sendable>(_ row: Row, into table: String, replacing columns: [String]) async throws {
        try await session { database in
            try await database.insert(into: table).model(row)
                .onConflict(with: "name") { update in
                    columns.reduce(update) { update, column in update.set(excludedValueOf: column) }
                }
                .run()
        }
    }

    func deleteNamed(_ name: String, from table: String) async throws {
        try await session { database in
            try await database.delete(from: table).where("name", .equal, name).run()
        }
    }
}
