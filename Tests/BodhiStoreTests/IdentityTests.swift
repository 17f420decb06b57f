import BodhiCore
@testable import BodhiIdentity
import Foundation
import HummingbirdBcrypt
import Testing
@testable import BodhiStore

/// The identity service on each database. Bcrypt runs at cost 4 here for speed; the default
/// (12) is checked on its own.
@Suite(.timeLimit(.minutes(2))) struct IdentityTests {
    static func service(_ database: TestDatabase) async throws -> (IdentityService, @Sendable () async -> Void) {
        let (store, dispose) = try await database.makeStore()
        try await store.migrate()
        return (IdentityService(repository: store, bcryptCost: 4), dispose)
    }

    @Test func passwordsAreHashedWithBcryptCostTwelveByDefault() async throws {
        let (store, dispose) = try await TestDatabase.sqlite.makeStore()
        defer { Task { await dispose() } }
        try await store.migrate()
        _ = try await IdentityService(repository: store).setup(username: "root", password: "correct horse")
        let hash = try #require(try await store.user(named: "root")?.passwordHash)
        #expect(hash.hasPrefix("$2b$12$") && Bcrypt.verify("correct horse", hash: hash))
        // Unknown users are checked against a real cost-12 hash, so they take as long.
        #expect(IdentityService.timingDummyHash.hasPrefix("$2b$12$") && Bcrypt.verify("bodhi-timing-dummy", hash: IdentityService.timingDummyHash))
    }

    @Test(arguments: TestDatabase.available)
    func setupSignInAndLockout(database: TestDatabase) async throws {
        let (identity, dispose) = try await Self.service(database)
        defer { Task { await dispose() } }
        #expect(try await identity.isSetUp() == false)
        let admin = try await identity.setup(username: "root", password: "correct horse")
        #expect(admin.role == .admin)
        await expectError(409) { _ = try await identity.setup(username: "other", password: "correct horse") }
        #expect(try await identity.isSetUp())

        let signIn = try await identity.login(username: "root", password: "correct horse", client: "a")
        let principal = try await identity.authenticate(sessionToken: signIn.sessionToken)
        #expect(principal.role == .admin && principal.isSession)
        try await identity.logout(sessionToken: signIn.sessionToken)
        await expectError(401) { _ = try await identity.authenticate(sessionToken: signIn.sessionToken) }

        // Each sign-in is a new session.
        let first = try await identity.login(username: "root", password: "correct horse", client: "a")
        let second = try await identity.login(username: "root", password: "correct horse", client: "a")
        #expect(first.sessionToken != second.sessionToken && first.csrfToken != second.csrfToken)

        for _ in 0..<IdentityService.maxFailedLogins {
            await expectError(401) { _ = try await identity.login(username: "root", password: "wrong password", client: "b") }
        }
        // Locked: even the right password is refused, in the words an unknown user gets, so that
        // the answer does not tell which accounts exist.
        let locked = await caught { _ = try await identity.login(username: "root", password: "correct horse", client: "c") }
        let unknown = await caught { _ = try await identity.login(username: "nobody", password: "whatever1", client: "d") }
        #expect(locked != nil && locked == unknown)
        #expect(locked?.status == 401 && locked?.retryAfterSeconds == nil)
    }

    @Test(arguments: TestDatabase.available)
    func accessRequestsAndRolesFollowTheHierarchy(database: TestDatabase) async throws {
        let (identity, dispose) = try await Self.service(database)
        defer { Task { await dispose() } }
        _ = try await identity.setup(username: "root", password: "correct horse")
        let root = try await identity.authenticate(sessionToken: identity.login(username: "root", password: "correct horse", client: "x").sessionToken)

        let newcomer = try await identity.register(username: "ann", password: "ann's password")
        #expect(newcomer.role == nil)
        let ann = try await identity.authenticate(sessionToken: identity.login(username: "ann", password: "ann's password", client: "x").sessionToken)
        let request = try await identity.requestAccess(ann)
        #expect(try await identity.requestAccess(ann).id == request.id)
        let approved = try await identity.decide(request.id, approve: true, role: .manager, by: root)
        #expect(approved.status == .approved && approved.decidedBy == "root")

        let manager = try await identity.authenticate(sessionToken: identity.login(username: "ann", password: "ann's password", client: "x").sessionToken)
        #expect(manager.role == .manager)
        _ = try await identity.register(username: "bob", password: "bob's password")
        await expectError(403) { _ = try await identity.setRole(userID: "bob", role: .admin, by: manager) }
        #expect(try await identity.setRole(userID: "bob", role: .powerUser, by: manager).role == .powerUser)
        await expectError(403) { _ = try await identity.setRole(userID: "root", role: .user, by: manager) }
        await expectError(403) { _ = try await identity.setDisabled(userID: "root", disabled: true, by: root) }
        #expect(try await identity.setDisabled(userID: "bob", disabled: true, by: manager).disabled)
        await expectError(403) { _ = try await identity.login(username: "bob", password: "bob's password", client: "x") }
        try await identity.deleteUser("bob", by: manager)
        #expect(try await identity.users().map(\.username).sorted() == ["ann", "root"])
    }

    @Test(arguments: TestDatabase.available)
    func tokensAreShownOnceScopedLimitedAndRevocable(database: TestDatabase) async throws {
        let (identity, dispose) = try await Self.service(database)
        defer { Task { await dispose() } }
        let admin = try await identity.setup(username: "root", password: "correct horse")
        let (token, summary) = try await identity.createToken(
            forUser: "root", name: "ci", scope: .user, models: ["smol"], expiresIn: 3600)
        #expect(token.hasPrefix("bodhi_") && token.count == 44 && summary.prefix == String(token.prefix(14)))

        let principal = try await identity.authenticate(token: token)
        #expect(principal.role == .user, "the scope caps the admin's role")
        #expect(principal.allowedModels == ["smol"] && !principal.isSession)
        #expect(try await identity.tokens(userID: admin.id).first?.lastUsedAt != nil)

        var tampered = Array(token)
        tampered[10] = tampered[10] == "a" ? "b" : "a"
        await expectError(401) { _ = try await identity.authenticate(token: String(tampered)) }
        await expectError(401) { _ = try await identity.authenticate(token: "bodhi_short") }

        _ = try await identity.revokeToken(summary.id, userID: admin.id)
        await expectError(401) { _ = try await identity.authenticate(token: token) }

        let (expiring, _) = try await identity.createToken(forUser: "root", name: "brief", scope: .powerUser, models: nil, expiresIn: 0.2)
        try await Task.sleep(for: .milliseconds(300))
        await expectError(401) { _ = try await identity.authenticate(token: expiring) }

        _ = try await identity.register(username: "eve", password: "eve's password")
        await expectError(403) { _ = try await identity.createToken(forUser: "eve", name: "x", scope: .user, models: nil, expiresIn: nil) }
        await expectError(400) { _ = try await identity.createToken(forUser: "root", name: "x", scope: .admin, models: nil, expiresIn: nil) }
    }

    @Test(arguments: TestDatabase.available)
    func aPasswordChangeEndsEverySession(database: TestDatabase) async throws {
        let (identity, dispose) = try await Self.service(database)
        defer { Task { await dispose() } }
        let admin = try await identity.setup(username: "root", password: "correct horse")
        let other = try await identity.login(username: "root", password: "correct horse", client: "a")
        await expectError(403) { try await identity.changePassword(userID: admin.id, current: "wrong one", new: "battery staple") }
        await expectError(400) { try await identity.changePassword(userID: admin.id, current: "correct horse", new: "short") }
        try await identity.changePassword(userID: admin.id, current: "correct horse", new: "battery staple")
        await expectError(401) { _ = try await identity.authenticate(sessionToken: other.sessionToken) }
        await expectError(401) { _ = try await identity.login(username: "root", password: "correct horse", client: "a") }
        _ = try await identity.login(username: "root", password: "battery staple", client: "a")
    }

    /// A checked token is remembered, but a revoke by another process (the CLI, on the same
    /// SQLite file) or by this service takes effect at the next request.
    @Test func aRememberedTokenStopsWorkingAsSoonAsItIsRevokedAnywhere() async throws {
        let (store, dispose) = try await TestDatabase.sqlite.makeStore()
        defer { Task { await dispose() } }
        try await store.migrate()
        let server = IdentityService(repository: store, bcryptCost: 4)
        _ = try await server.setup(username: "root", password: "root password")
        let first = try await server.createToken(forUser: "root", name: "a", scope: .user, models: nil, expiresIn: nil)
        let second = try await server.createToken(forUser: "root", name: "b", scope: .user, models: nil, expiresIn: nil)
        for _ in 0..<3 { _ = try await server.authenticate(token: first.token) }
        _ = try await server.authenticate(token: second.token)
        let marker = store.changeMarker()
        #expect(marker != nil)
        _ = try await server.authenticate(token: first.token)
        #expect(store.changeMarker() == marker)  // a remembered token costs no write

        let rootID = try #require(try await store.user(named: "root")).id
        let cli = IdentityService(repository: store, bcryptCost: 4)
        _ = try await cli.revokeToken(first.summary.id, userID: rootID)
        await expectError(401) { _ = try await server.authenticate(token: first.token) }
        // Recording a last use (as a check that read the token before the revoke does) keeps it revoked.
        try await store.touchToken(id: first.summary.id, at: Date())
        await expectError(401) { _ = try await IdentityService(repository: store, bcryptCost: 4).authenticate(token: first.token) }

        _ = try await server.revokeToken(second.summary.id, userID: rootID)
        await expectError(401) { _ = try await server.authenticate(token: second.token) }
    }

    @Test func secretsAreRandomComparedInConstantTimeAndSealed() throws {
        #expect(Secrets.randomBase62(32) != Secrets.randomBase62(32))
        #expect(Secrets.constantTimeEquals("abc", "abc") && !Secrets.constantTimeEquals("abc", "abd") && !Secrets.constantTimeEquals("abc", "ab"))
        let home = FileManager.default.temporaryDirectory.appendingPathComponent("bodhi-key-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: home) }
        let box = try SecretBox.load(environment: [:], home: home)
        let attributes = try FileManager.default.attributesOfItem(atPath: home + "/secret.key")
        #expect((attributes[.posixPermissions] as? Int) == 0o600)
        let sealed = try box.seal("hf_secret")
        #expect(!sealed.contains("hf_secret"))
        #expect(try SecretBox.load(environment: [:], home: home).open(sealed) == "hf_secret")
        #expect(throws: BodhiError.self) { try SecretBox.load(environment: ["BODHI_ENCRYPTION_KEY": "short"], home: home) }
    }
}
