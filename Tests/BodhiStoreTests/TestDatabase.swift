import BodhiCore
import Foundation
import Testing
@testable import BodhiStore

/// The databases store tests run against: SQLite always, PostgreSQL when
/// `BODHI_TEST_POSTGRES_URL` names a server (`make test` and `.ci/run` start one).
enum TestDatabase: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case sqlite, postgres

    static let postgresURL = ProcessInfo.processInfo.environment["BODHI_TEST_POSTGRES_URL"].flatMap { $0.isEmpty ? nil : $0 }
    static var available: [TestDatabase] { postgresURL == nil ? [.sqlite] : [.sqlite, .postgres] }

    var testDescription: String { rawValue }

    /// A new, empty database of this kind, and how to throw it away.
    func makeStore() async throws -> (store: Store, dispose: @Sendable () async -> Void) {
        switch self {
        case .sqlite:
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("bodhi-store-\(UUID().uuidString)").path
            let store = try await Store.openSQLite(path: directory + "/bodhi.sqlite")
            return (store, { await store.close(); try? FileManager.default.removeItem(atPath: directory) })
        case .postgres:
            let adminURL = try #require(Self.postgresURL)
            let name = "bodhi_test_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "").prefix(16)
            let admin = try await Store.openPostgres(url: adminURL)
            try await admin.session { try await $0.raw("CREATE DATABASE \(unsafeRaw: name)").run() }
            await admin.close()
            let store = try await Store.openPostgres(url: Self.url(adminURL, database: String(name)))
            return (store, {
                await store.close()
                if let admin = try? await Store.openPostgres(url: adminURL) {
                    try? await admin.session { try await $0.raw("DROP DATABASE IF EXISTS \(unsafeRaw: name) WITH (FORCE)").run() }
                    await admin.close()
                }
            })
        }
    }

    /// `url` with its database replaced.
    static func url(_ url: String, database: String) -> String {
        var components = URLComponents(string: url)!
        components.path = "/" + database
        return components.string!
    }
}

/// Runs `body` and checks that it fails with a `BodhiError` of this HTTP status.
/// The `BodhiError` that `body` throws; nil, with an issue recorded, when it throws none.
func caught(_ body: () async throws -> Void) async -> BodhiError? {
    do {
        try await body()
        Issue.record("expected an error")
    } catch let error as BodhiError {
        return error
    } catch {
        Issue.record("unexpected \(error)")
    }
    return nil
}

func expectError(_ status: Int, _ body: () async throws -> Void) async {
    do {
        try await body()
        Issue.record("expected an error with status \(status)")
    } catch let error as BodhiError {
        #expect(error.status == status, "\(error.message)")
    } catch {
        Issue.record("unexpected \(error)")
    }
}
