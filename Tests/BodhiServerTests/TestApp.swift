import BodhiBackends
import BodhiChats
import BodhiCore
import BodhiEngine
import BodhiHub
import BodhiIdentity
import BodhiModels
import BodhiServer
import BodhiStore
import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import Testing

/// Bodhi's whole HTTP server, live on a loopback port, on a temporary SQLite database with an admin `root` already set up
/// (unless asked not to), and a client that sends root's power_user token by default.
struct TestApp: Sendable {
    let services: BodhiServices
    let store: Store
    let rootToken: String
    /// BODHI_HOME of this app.
    let home: String

    static func with(
        hub: String, maxBody: Int = 1024, setUp: Bool = true, environment: [String: String] = [:],
        _ test: @Sendable (TestApp, Client) async throws -> Void
    ) async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("bodhi-app-\(UUID().uuidString)").path
        // Engines never start (no binary), the Hub is an address where nothing listens, and the
        // bootstrap's cache (the docs' assets) is an empty folder of this app's.
        let environment = [
            "HOME": NSHomeDirectory(), "BODHI_LLAMA_SERVER": "/nonexistent", "BODHI_HOME": directory, "BODHI_CACHE": directory + "/cache", "HF_HOME": URL(fileURLWithPath: hub).deletingLastPathComponent().path,
            "HF_ENDPOINT": "http://127.0.0.1:9",
        ]
            .merging(environment) { _, new in new }
        let settings = try Settings.resolve(environment: environment)
        let store = try await Store.openSQLite(path: directory + "/bodhi.sqlite")
        try await store.migrate()
        let identity = IdentityService(repository: store, bcryptCost: 4)
        var rootToken = ""
        if setUp {
            _ = try await identity.setup(username: "root", password: "root password")
            rootToken = try await identity.createToken(forUser: "root", name: "tests", scope: .powerUser, models: nil, expiresIn: nil).token
        }
        let services = try await BodhiAssembly.assemble(
            settings: settings, store: store, databasePing: { try await store.ping() },
            secrets: try SecretBox.load(environment: environment, home: directory), engineHTTP: .shared, backendHTTP: .shared,
            hubHTTP: .shared, logger: Logger(label: "test"), environment: environment, bcryptCost: 4, maxRequestBodyBytes: maxBody,
            readinessEngineBinary: "/bin/sh"
        ).services
        let logger = Logger(label: "test")
        let app = TestApp(services: services, store: store, rootToken: rootToken, home: directory)
        // The real server on a free port, so that every request crosses the real pipeline: the
        // fast path for inference requests with a remembered token, the router for the rest.
        let application = BodhiHTTPServer.application(services: services, host: "127.0.0.1", port: 0, logger: logger)
        do {
            try await application.test(.live) { client in
                try await test(app, Client(inner: client, authorization: setUp ? "Bearer \(app.rootToken)" : nil))
            }
        } catch {
            await store.close()
            try? FileManager.default.removeItem(atPath: directory)
            throw error
        }
        await store.close()
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// A temporary, empty Hugging Face cache (a `hub` folder: `HF_HOME/hub`).
    static func emptyHub(_ label: String) throws -> String {
        let hub = FileManager.default.temporaryDirectory.appendingPathComponent("bodhi-\(label)-\(UUID().uuidString)/hub").path
        try FileManager.default.createDirectory(atPath: hub, withIntermediateDirectories: true)
        return hub
    }

    /// A temporary Hugging Face cache holding one tiny model, `org/tiny-GGUF:Q4_K_M`.
    static func hubWithTinyModel(_ label: String) throws -> String {
        let hub = FileManager.default.temporaryDirectory.appendingPathComponent("bodhi-\(label)-\(UUID().uuidString)/hub").path
        let snapshot = hub + "/models--org--tiny-GGUF/snapshots/abc"
        try FileManager.default.createDirectory(atPath: snapshot, withIntermediateDirectories: true)
        try Data(count: 64).write(to: URL(fileURLWithPath: snapshot + "/tiny.Q4_K_M.gguf"))
        return hub
    }

    /// A test client that sends credentials with every request unless told otherwise.
    struct Client: Sendable {
        let inner: any TestClientProtocol
        let authorization: String?

        @discardableResult
        func execute<Return>(
            uri: String, method: HTTPRequest.Method, headers: HTTPFields = [:], body: ByteBuffer? = nil,
            _ check: @escaping @Sendable (TestResponse) async throws -> Return
        ) async throws -> Return {
            var headers = headers
            if let authorization, headers[.authorization] == nil, headers[.cookie] == nil {
                headers[.authorization] = authorization
            }
            return try await inner.execute(uri: uri, method: method, headers: headers, body: body, testCallback: check)
        }

        /// The same client with other credentials (or none).
        func with(authorization: String?) -> Client {
            Client(inner: inner, authorization: authorization)
        }
    }
}
