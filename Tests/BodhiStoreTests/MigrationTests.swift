import BodhiCore
import BodhiModels
import Foundation
import Testing
@testable import BodhiStore

@Suite(.timeLimit(.minutes(2))) struct MigrationTests {
    @Test(arguments: TestDatabase.available)
    func migrationsApplyOnceRevertAndReapply(database: TestDatabase) async throws {
        let (store, dispose) = try await database.makeStore()
        defer { Task { await dispose() } }
        try await store.migrate()
        try await store.migrate()
        let all = Migration.all.map(\.version)
        #expect(try await store.appliedMigrations() == all)

        try await store.revert(to: 0)
        #expect(try await store.appliedMigrations().isEmpty)
        try await store.migrate(to: 1)
        #expect(try await store.appliedMigrations() == [1])
        try await store.migrate()
        #expect(try await store.appliedMigrations() == all)
        #expect(try await store.tableNames() == [
            "access_requests", "aliases", "api_tokens", "backends", "chat_messages", "chats", "pulls", "responses", "routers",
            "schema_migrations", "sessions", "users",
        ])
    }

    @Test(arguments: TestDatabase.available)
    func aFailingMigrationLeavesTheSchemaAtTheLastGoodStep(database: TestDatabase) async throws {
        let (store, dispose) = try await database.makeStore()
        defer { Task { await dispose() } }
        let broken = Migration(version: 99, name: "broken", up: { database in
            try await database.create(table: "half_done").column("id", type: .text).run()
            try await database.raw("THIS IS NOT SQL").run()
        }, down: { _ in })
        var failed = false
        do {
            try await store.migrate(migrations: Migration.all + [broken])
        } catch {
            failed = true
            #expect("\(error)".contains("99 (broken)"))
        }
        #expect(failed)
        #expect(try await store.appliedMigrations() == Migration.all.map(\.version))
        // The failed step's table was rolled back with it.
        #expect(!(try await store.tableNames().contains("half_done")))
    }

    @Test func pullsSurviveReopeningTheDatabase() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("bodhi-store-\(UUID().uuidString)").path
        let store = try await Store.openSQLite(path: directory + "/bodhi.sqlite")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try await store.migrate()
        var record = PullRecord(
            id: "pull-1", reference: "owner/repo:Q4_0", repo: "owner/repo", revision: "main", commit: "abc",
            model: "owner/repo:Q4_0", files: [PullFile(path: "m.Q4_0.gguf", size: 10, sha256: String(repeating: "a", count: 64))])
        try await store.save(record)
        record.state = .downloading
        record.completedBytes = 4
        try await store.save(record)
        let finished = PullRecord(
            id: "pull-2", reference: "owner/other", repo: "owner/other", revision: "main", commit: "def",
            model: "owner/other:F16", files: [], state: .completed)
        try await store.save(finished)
        await store.close()

        let reopened = try await Store.openSQLite(path: directory + "/bodhi.sqlite")
        let unfinished = try await reopened.unfinishedPulls()
        #expect(unfinished.map(\.id) == ["pull-1"])
        #expect(unfinished.first?.completedBytes == 4)
        #expect(unfinished.first?.files == record.files)
        #expect(try await reopened.pull(id: "pull-2")?.state == .completed)
        #expect(try await reopened.pulls(limit: 10).count == 2)
        await reopened.close()
    }

    @Test(arguments: TestDatabase.available)
    func pullsAreSavedUpdatedAndFound(database: TestDatabase) async throws {
        let (store, dispose) = try await database.makeStore()
        defer { Task { await dispose() } }
        try await store.migrate()
        var record = PullRecord(
            id: "pull-1", reference: "o/r", repo: "o/r", revision: "main", commit: "c", model: "o/r:Q4_0",
            files: [PullFile(path: "m.Q4_0.gguf", size: 5, sha256: "ab")])
        try await store.save(record)
        record.state = .failed
        record.error = "it broke"
        try await store.save(record)
        let loaded = try await store.pull(id: "pull-1")
        #expect(loaded?.state == .failed && loaded?.error == "it broke" && loaded?.files == record.files)
        #expect(try await store.unfinishedPulls().isEmpty)
    }
}

@Suite(.timeLimit(.minutes(2))) struct AliasStoreTests {
    @Test(arguments: TestDatabase.available)
    func aliasesRoundTripAndUpdateInPlace(database: TestDatabase) async throws {
        let (store, dispose) = try await database.makeStore()
        defer { Task { await dispose() } }
        try await store.migrate()
        var alias = Alias(
            name: "smol", model: "o/r:Q4_0", defaults: RequestDefaults(temperature: 0.3, stop: ["x"], system: "Hi"),
            engine: EngineOverrides(contextSize: 1024, extraArgs: ["--no-mmap"]))
        try await store.saveAlias(alias)
        alias.defaults.temperature = 0.9
        try await store.saveAlias(alias)
        try await store.saveAlias(Alias(name: "another", model: "o/r:Q8_0"))
        let loaded = try await store.allAliases()
        #expect(loaded.map(\.name) == ["another", "smol"])
        #expect(loaded[1].defaults == alias.defaults && loaded[1].engine == alias.engine)
        try await store.deleteAlias(named: "smol")
        #expect(try await store.allAliases().map(\.name) == ["another"])
    }

    @Test(arguments: TestDatabase.available)
    func backendsRoundTripWithTheirKeySealedAndPrefixesUnique(database: TestDatabase) async throws {
        let (store, dispose) = try await database.makeStore()
        defer { Task { await dispose() } }
        try await store.migrate()
        let lab = BackendConfig(name: "lab", url: "http://10.0.0.2:8080/v1", format: .openai, sealedKey: "c2VhbGVk")
        try await store.saveBackend(lab)
        try await store.saveBackend(BackendConfig(name: "claude", url: "https://api.anthropic.com", format: .anthropic, prefix: "c"))
        let loaded = try await store.allBackends()
        #expect(loaded.map(\.name) == ["claude", "lab"])
        #expect(loaded[1].sameSettings(as: lab) && loaded[0].prefix == "c" && loaded[0].sealedKey == nil)
        do {
            try await store.saveBackend(BackendConfig(name: "other", url: "http://x", format: .openai, prefix: "lab"))
            Issue.record("two backends got one prefix")
        } catch {}
        try await store.deleteBackend(named: "lab")
        #expect(try await store.allBackends().map(\.name) == ["claude"])
    }
}

@Suite(.timeLimit(.minutes(2))) struct StoreCopyTests {
    @Test func everyTableWithDataIsCopied() async throws {
        let (store, dispose) = try await TestDatabase.sqlite.makeStore()
        defer { Task { await dispose() } }
        try await store.migrate()
        let tables = try await store.tableNames().filter { $0 != "schema_migrations" }
        #expect(tables == Store.copies.map(\.table).sorted(), "add a TableCopy for every new table")
    }

    @Test(.enabled(if: TestDatabase.postgresURL != nil, "needs BODHI_TEST_POSTGRES_URL"))
    func anInstallationMovesFromSQLiteToPostgreSQL() async throws {
        let (source, disposeSource) = try await TestDatabase.sqlite.makeStore()
        let (target, disposeTarget) = try await TestDatabase.postgres.makeStore()
        defer { Task { await disposeSource(); await disposeTarget() } }
        try await source.migrate()
        for index in 0..<450 {
            try await source.saveAlias(Alias(name: "a\(index)", model: "o/r:Q4_0", defaults: .init(temperature: 0.5, system: "S\(index)")))
        }
        try await source.save(PullRecord(
            id: "p1", reference: "o/r", repo: "o/r", revision: "main", commit: "c", model: "o/r:Q4_0",
            files: [PullFile(path: "f.gguf", size: 3, sha256: "x")], state: .completed))

        let backend = BackendConfig(name: "lab", url: "http://10.0.0.2:8080", format: .gemini, prefix: "g", sealedKey: "c2VhbGVk")
        try await source.saveBackend(backend)
        let router = ModelRouter(name: "chat", targets: ["o/r:Q4_0", "g/x"], strategy: .weighted, weights: [3, 1], cooldownSeconds: 12)
        try await source.saveRouter(router)

        let counts = try await source.copy(into: target)
        #expect(counts.map(\.table) == [
            "aliases", "backends", "routers", "pulls", "users", "sessions", "api_tokens", "access_requests", "chats", "chat_messages",
            "responses",
        ])
        #expect(counts.map(\.rows) == [450, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0])
        let copiedRouter = try await target.allRouters().first
        #expect(copiedRouter?.targets == router.targets && copiedRouter?.weights == [3, 1] && copiedRouter?.cooldownSeconds == 12)
        #expect(try await target.allBackends().first?.sameSettings(as: backend) == true)
        let copied = try await target.allAliases()
        #expect(copied.count == 450)
        #expect(copied.first { $0.name == "a7" }?.defaults.system == "S7")
        #expect(try await target.pull(id: "p1")?.state == .completed)

        // A second run meets a non-empty target and refuses, changing nothing.
        do {
            _ = try await source.copy(into: target)
            Issue.record("copied into a non-empty database")
        } catch let error as BodhiError {
            #expect(error.status == 409)
        }
        #expect(try await target.rowCount("aliases") == 450)
    }
}
