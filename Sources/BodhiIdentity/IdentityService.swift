import BodhiCore
import Foundation
import HummingbirdBcrypt
import NIOPosix
import Synchronization

/// Users, sign-in, sessions, API tokens and access requests. Holds only what must be shared
/// in memory (whether setup is done, recent failures per client); everything else is in the
/// repository.
public actor IdentityService {
    private let repository: any IdentityRepository
    private let bcryptCost: UInt8
    public let sessionLifetime: TimeInterval
    /// Whether the first admin exists, once known; never unset. Outside the actor's isolation, so
    /// that requests need not queue on the actor to ask.
    private let setUpKnown = Atomic(false)

    /// Failed sign-ins per client address, for throttling.
    private var failuresByClient: [String: [Date]] = [:]

    /// API tokens checked recently, by their SHA-256, so that a busy client does not cost two
    /// database reads per request. An entry is used only while the repository's change marker
    /// is the one it was checked under (any write, this process's or another's — a CLI revoke —
    /// moves it) and for at most `tokenRecheck`; without a marker (PostgreSQL, shared by several
    /// replicas) for at most `tokenRecheckWithoutMarker`. Under a lock rather than the actor's
    /// isolation, so that a request with a remembered token is answered without queueing on the actor.
    private struct CheckedToken {
        let principal: Principal
        let expiresAt: Date?
        let checkedAt: ContinuousClock.Instant
        let marker: ChangeMarker?
    }
    private struct CheckedTokens {
        var byHash: [String: CheckedToken] = [:]
        /// Moves at every identity change made here; a check that began before one is not remembered.
        var generation = 0

        /// The principal remembered for `hash`, if it may still be trusted.
        func principal(for hash: String, marker: ChangeMarker?, at now: ContinuousClock.Instant) -> Principal? {
            guard let checked = byHash[hash], checked.marker == marker,
                  now - checked.checkedAt < (marker == nil ? IdentityService.tokenRecheckWithoutMarker : IdentityService.tokenRecheck),
                  checked.expiresAt.map({ $0 > Date() }) ?? true
            else { return nil }
            return checked.principal
        }
    }
    private let checkedTokens = Mutex(CheckedTokens())
    /// Checks under way, by token hash: many requests with one token that all miss (after a
    /// write moved the marker) wait for one database check instead of queueing one each.
    private var checkingTokens: [String: Task<Principal, any Error>] = [:]
    static let tokenRecheck: Duration = .seconds(60)
    static let tokenRecheckWithoutMarker: Duration = .seconds(5)
    static let maxCheckedTokens = 10_000

    public static let maxFailedLogins = 5
    public static let lockout: TimeInterval = 15 * 60
    public static let clientFailureWindow: TimeInterval = 5 * 60
    public static let maxClientFailures = 20

    public init(repository: any IdentityRepository, bcryptCost: UInt8 = 12, sessionLifetime: TimeInterval = 7 * 24 * 3600) {
        self.repository = repository
        self.bcryptCost = bcryptCost
        self.sessionLifetime = sessionLifetime
    }

    // MARK: Setup

    /// Whether the first admin exists.
    public nonisolated func isSetUp() async throws -> Bool {
        if isKnownSetUp { return true }
        return try await lookUpSetUp()
    }

    private func lookUpSetUp() async throws -> Bool {
        if try await repository.userCount(withRole: .admin) > 0 { setUpKnown.store(true, ordering: .releasing) }
        return setUpKnown.load(ordering: .acquiring)
    }

    /// Creates the first admin; refused once one exists.
    public func setup(username: String, password: String) async throws -> UserProfile {
        guard !(try await isSetUp()) else {
            throw BodhiError.conflict("Bodhi is set up already; sign in as an admin to manage users.")
        }
        let user = try await newUser(username: username, password: password, role: .admin)
        setUpKnown.store(true, ordering: .releasing)
        return user.profile
    }

    // MARK: Accounts

    /// A new account without a role; it can request access.
    public func register(username: String, password: String) async throws -> UserProfile {
        try await newUser(username: username, password: password, role: nil).profile
    }

    private func newUser(username: String, password: String, role: Role?) async throws -> User {
        try Self.validate(username: username)
        try Self.validate(password: password)
        if try await repository.user(named: username) != nil {
            throw BodhiError.conflict("The username '\(username)' is taken.")
        }
        let user = User(username: username, passwordHash: try await hash(password), role: role)
        try await repository.insertUser(user)
        return user
    }

    static func validate(username: String) throws {
        guard username.wholeMatch(of: /[A-Za-z0-9][A-Za-z0-9._@-]{0,63}/) != nil else {
            throw BodhiError.invalidRequest(
                "A username is 1 to 64 letters, digits, '.', '_', '@' or '-', starting with a letter or digit.", param: "username")
        }
    }

    static func validate(password: String) throws {
        guard password.count >= 8, password.utf8.count <= 72 else {
            throw BodhiError.invalidRequest("A password has at least 8 characters and at most 72 bytes.", param: "password")
        }
    }

    // MARK: Sign-in

    /// What a successful sign-in gives the browser.
    public struct SignIn: Sendable {
        public let user: UserProfile
        /// The cookie value; only its hash is stored.
        public let sessionToken: String
        public let csrfToken: String
        public let expiresAt: Date
    }

    /// Checks the password and starts a new session (a fresh id each time: rotation at sign-in).
    /// Repeated failures lock the account for a while; a client with many failures is throttled.
    public func login(username: String, password: String, client: String) async throws -> SignIn {
        let now = Date()
        let recent = (failuresByClient[client] ?? []).filter { now.timeIntervalSince($0) < Self.clientFailureWindow }
        failuresByClient[client] = recent
        if recent.count >= Self.maxClientFailures {
            throw BodhiError(.rateLimited, status: 429, "Too many failed sign-ins from this address; try again in a few minutes.",
                             retryAfterSeconds: Int(Self.clientFailureWindow))
        }
        guard var user = try await repository.user(named: username) else {
            _ = await verify(password, hash: Self.timingDummyHash)
            failuresByClient[client, default: []].append(now)
            throw Self.badCredentials
        }
        if let lockedUntil = user.lockedUntil, lockedUntil > now {
            // Answered as an unknown user is, in the same time: a different answer would tell an
            // attacker which accounts exist. The password is not even looked at.
            _ = await verify(password, hash: Self.timingDummyHash)
            failuresByClient[client, default: []].append(now)
            throw Self.badCredentials
        }
        guard await verify(password, hash: user.passwordHash) else {
            failuresByClient[client, default: []].append(now)
            user.failedLogins += 1
            if user.failedLogins >= Self.maxFailedLogins {
                user.lockedUntil = now.addingTimeInterval(Self.lockout)
                user.failedLogins = 0
            }
            user.updatedAt = now
            try await repository.updateUser(user)
            throw Self.badCredentials
        }
        guard !user.disabled else {
            throw BodhiError(.forbidden, status: 403, "This account is disabled; ask a manager to enable it.")
        }
        if user.failedLogins > 0 || user.lockedUntil != nil {
            user.failedLogins = 0
            user.lockedUntil = nil
            user.updatedAt = now
            try await repository.updateUser(user)
        }
        let token = Secrets.randomBase62(43)
        let session = Session(
            idHash: Secrets.sha256(token), userID: user.id, csrfToken: Secrets.randomBase62(32), createdAt: now,
            expiresAt: now.addingTimeInterval(sessionLifetime))
        try await repository.insertSession(session)
        return SignIn(user: user.profile, sessionToken: token, csrfToken: session.csrfToken, expiresAt: session.expiresAt)
    }

    public func logout(sessionToken: String) async throws {
        try await repository.deleteSession(idHash: Secrets.sha256(sessionToken))
    }

    private static let badCredentials = BodhiError(.unauthorized, status: 401, "Wrong username or password.")
    /// Verified against when the user does not exist, so that the answer takes as long. A
    /// constant (the cost-12 hash of `bodhi-timing-dummy`): hashing it on first use would stall
    /// the actor, and the event loop it runs on, for a quarter of a second.
    static let timingDummyHash = "$2b$12$.lImZ7mpqthOvpbDJicjs./2QPLhNHHjjTOqBHA/ysR0IzDhf9Qou"

    // MARK: Authentication

    /// The principal behind a session cookie.
    public func authenticate(sessionToken: String) async throws -> Principal {
        guard let session = try await repository.session(idHash: Secrets.sha256(sessionToken)) else {
            throw BodhiError(.unauthorized, status: 401, "Your session has ended; sign in again.")
        }
        guard session.expiresAt > Date() else {
            try await repository.deleteSession(idHash: session.idHash)
            throw BodhiError(.unauthorized, status: 401, "Your session has expired; sign in again.")
        }
        let user = try await activeUser(session.userID)
        return Principal(user: user.profile, credential: .session(csrfToken: session.csrfToken))
    }

    /// Whether the first admin is known to exist, without asking the database.
    public nonisolated var isKnownSetUp: Bool { setUpKnown.load(ordering: .acquiring) }

    /// The principal behind an API token checked recently and still to be trusted, without
    /// waiting for anything; nil when only the database can tell (`authenticate(token:)`).
    public nonisolated func rememberedPrincipal(token: String) -> Principal? {
        rememberedPrincipal(tokenHash: Secrets.sha256(token))
    }

    /// `rememberedPrincipal(token:)` for a token whose SHA-256 (`Secrets.sha256`) the caller has.
    public nonisolated func rememberedPrincipal(tokenHash: String) -> Principal? {
        remembered(hash: tokenHash, marker: repository.changeMarker(), at: .now)
    }

    private nonisolated func remembered(hash: String, marker: ChangeMarker?, at now: ContinuousClock.Instant) -> Principal? {
        checkedTokens.withLock { $0.principal(for: hash, marker: marker, at: now) }
    }

    /// The principal behind an API token.
    public nonisolated func authenticate(token: String) async throws -> Principal {
        let hash = Secrets.sha256(token)
        // Read before the database, so that a change made meanwhile is not filed under the old marker.
        let marker = repository.changeMarker()
        let now = ContinuousClock.now
        // Only well-formed tokens are remembered, so one found here needs no format check.
        if let principal = remembered(hash: hash, marker: marker, at: now) { return principal }
        guard let prefix = TokenFormat.lookupPrefix(of: token) else {
            throw BodhiError(.unauthorized, status: 401, "The API token is not valid.")
        }
        return try await checkOnce(token: hash, prefix: prefix, marker: marker, at: now)
    }

    /// Checks a token against the database, joining a check of the same token under way.
    private func checkOnce(token hash: String, prefix: String, marker: ChangeMarker?, at now: ContinuousClock.Instant) async throws -> Principal {
        if let checking = checkingTokens[hash] { return try await checking.value }
        let check = Task { try await self.check(token: hash, prefix: prefix, marker: marker, at: now) }
        checkingTokens[hash] = check
        let generation = checkedTokens.withLock { $0.generation }
        defer { if generation == checkedTokens.withLock({ $0.generation }) { checkingTokens[hash] = nil } }
        return try await check.value
    }

    /// Reads a token and its owner from the database, and remembers the result.
    private func check(token hash: String, prefix: String, marker: ChangeMarker?, at now: ContinuousClock.Instant) async throws -> Principal {
        let generation = checkedTokens.withLock { $0.generation }
        guard let stored = try await repository.token(prefix: prefix), Secrets.constantTimeEquals(stored.hash, hash) else {
            throw BodhiError(.unauthorized, status: 401, "The API token is not valid.")
        }
        if stored.revokedAt != nil { throw BodhiError(.unauthorized, status: 401, "The API token was revoked.") }
        if let expiresAt = stored.expiresAt, expiresAt <= Date() {
            throw BodhiError(.unauthorized, status: 401, "The API token expired.")
        }
        let user = try await activeUser(stored.userID)
        // Last use is kept to the minute: no write per request.
        if stored.lastUsedAt.map({ Date().timeIntervalSince($0) > 60 }) ?? true {
            try await repository.touchToken(id: stored.id, at: Date())
        }
        let principal = Principal(user: user.profile, credential: .token(id: stored.id, models: stored.models), tokenScope: stored.scope)
        checkedTokens.withLock { checked in
            // A change made here while this check ran (a revoke) wins: nothing read before it is kept.
            guard checked.generation == generation else { return }
            if checked.byHash.count >= Self.maxCheckedTokens { checked.byHash.removeAll() }
            checked.byHash[hash] = CheckedToken(principal: principal, expiresAt: stored.expiresAt, checkedAt: now, marker: marker)
        }
        return principal
    }

    /// Who may do what just changed here: no token checked before may be trusted without a new look.
    private func forgetCheckedTokens() {
        checkedTokens.withLock { checked in
            checked.byHash.removeAll()
            checked.generation += 1
        }
        // Requests from now on check anew rather than join a check that began before the change.
        checkingTokens.removeAll()
    }

    private func activeUser(_ id: String) async throws -> User {
        guard let user = try await repository.user(id: id) else {
            throw BodhiError(.unauthorized, status: 401, "The account behind these credentials no longer exists.")
        }
        guard !user.disabled else { throw BodhiError(.unauthorized, status: 401, "This account is disabled.") }
        return user
    }

    // MARK: Self-service

    public func changePassword(userID: String, current: String, new: String) async throws {
        defer { forgetCheckedTokens() }
        guard var user = try await repository.user(id: userID) else { throw BodhiError.notFound("No such user.") }
        guard await verify(current, hash: user.passwordHash) else {
            throw BodhiError(.forbidden, status: 403, "The current password is wrong.")
        }
        try Self.validate(password: new)
        user.passwordHash = try await hash(new)
        user.updatedAt = Date()
        try await repository.updateUser(user)
        // Every other session ends with the old password.
        try await repository.deleteSessions(userID: userID)
    }

    public func requestAccess(_ principal: Principal) async throws -> AccessRequest {
        guard principal.user.role == nil else {
            throw BodhiError.conflict("You have the role \(principal.user.role!.rawValue) already.")
        }
        if let pending = try await repository.accessRequests().first(where: { $0.userID == principal.user.id && $0.status == .pending }) {
            return pending
        }
        let request = AccessRequest(
            id: UUID.random().lowercaseString, userID: principal.user.id, username: principal.user.username, status: .pending,
            decidedBy: nil, createdAt: Date(), decidedAt: nil)
        try await repository.insertAccessRequest(request)
        return request
    }

    // MARK: Management (managers and admins)

    public func users() async throws -> [UserProfile] {
        try await repository.users().map(\.profile)
    }

    public func accessRequests() async throws -> [AccessRequest] {
        try await repository.accessRequests()
    }

    /// Approves (granting `role`) or rejects a pending request.
    public func decide(_ requestID: String, approve: Bool, role: Role, by actor: Principal) async throws -> AccessRequest {
        defer { forgetCheckedTokens() }
        guard var request = try await repository.accessRequest(id: requestID) else {
            throw BodhiError.notFound("There is no access request '\(requestID)'.")
        }
        guard request.status == .pending else { throw BodhiError.conflict("This request was \(request.status.rawValue) already.") }
        if approve { _ = try await setRole(userID: request.userID, role: role, by: actor) }
        request.status = approve ? .approved : .rejected
        request.decidedBy = actor.user.username
        request.decidedAt = Date()
        try await repository.updateAccessRequest(request)
        return request
    }

    /// Nobody grants a role above their own, or changes someone who outranks them.
    public func setRole(userID: String, role: Role?, by actor: Principal) async throws -> UserProfile {
        defer { forgetCheckedTokens() }
        var user = try await managedUser(userID, by: actor)
        if let role, let actorRole = actor.role, role > actorRole {
            throw BodhiError(.forbidden, status: 403, "You cannot grant \(role.rawValue), which is above your own role.")
        }
        if user.role == .admin, role != .admin { try await keepOneAdmin() }
        user.role = role
        user.updatedAt = Date()
        try await repository.updateUser(user)
        return user.profile
    }

    public func setDisabled(userID: String, disabled: Bool, by actor: Principal) async throws -> UserProfile {
        defer { forgetCheckedTokens() }
        var user = try await managedUser(userID, by: actor)
        if disabled, user.role == .admin { try await keepOneAdmin() }
        user.disabled = disabled
        user.updatedAt = Date()
        try await repository.updateUser(user)
        if disabled { try await repository.deleteSessions(userID: user.id) }
        return user.profile
    }

    public func deleteUser(_ userID: String, by actor: Principal) async throws {
        defer { forgetCheckedTokens() }
        let user = try await managedUser(userID, by: actor)
        if user.role == .admin { try await keepOneAdmin() }
        try await repository.deleteUser(id: user.id)
    }

    private func managedUser(_ userID: String, by actor: Principal) async throws -> User {
        guard let user = try await findUser(userID) else {
            throw BodhiError.notFound("There is no user '\(userID)'.")
        }
        if user.id == actor.user.id { throw BodhiError(.forbidden, status: 403, "Manage your own account through /bodhi/v1/users/me.") }
        if let role = user.role, let actorRole = actor.role, role > actorRole {
            throw BodhiError(.forbidden, status: 403, "You cannot change a user whose role is above your own.")
        }
        return user
    }

    private func keepOneAdmin() async throws {
        if try await repository.userCount(withRole: .admin) <= 1 {
            throw BodhiError.conflict("This is the last admin; make another admin first.")
        }
    }

    // MARK: Tokens

    /// A new token for `username`, returned once in full. Its scope is at most `user` or
    /// `power_user`, and never above its owner's role.
    public func createToken(
        forUser userID: String, name: String, scope: Role, models: [String]?, expiresIn: TimeInterval?
    ) async throws -> (token: String, summary: APITokenSummary) {
        guard let user = try await findUser(userID) else {
            throw BodhiError.notFound("There is no user '\(userID)'.")
        }
        guard scope == .user || scope == .powerUser else {
            throw BodhiError.invalidRequest("A token's scope is user or power_user.", param: "scope")
        }
        guard let role = user.role, scope <= role else {
            throw BodhiError(.forbidden, status: 403, "\(user.username) cannot hold a \(scope.rawValue) token: their role is \(user.role?.rawValue ?? "none").")
        }
        let trimmed = name.trimmingCharacters(in: .whitespaces)
        guard !trimmed.isEmpty, trimmed.count <= 100 else {
            throw BodhiError.invalidRequest("A token needs a name of 1 to 100 characters.", param: "name")
        }
        if let models, models.isEmpty || models.contains(where: \.isEmpty) {
            throw BodhiError.invalidRequest("'models' lists model names; leave it out to allow every model.", param: "models")
        }
        if let expiresIn, expiresIn <= 0 {
            throw BodhiError.invalidRequest("A token's lifetime must be positive.", param: "expires_in")
        }
        let token = TokenFormat.make()
        let stored = APIToken(
            id: UUID.random().lowercaseString, userID: user.id, name: trimmed, prefix: TokenFormat.lookupPrefix(of: token)!,
            hash: Secrets.sha256(token), scope: scope, models: models, createdAt: Date(),
            expiresAt: expiresIn.map { Date().addingTimeInterval($0) }, revokedAt: nil, lastUsedAt: nil)
        try await repository.insertToken(stored)
        return (token, stored.summary)
    }

    public func tokens(userID: String) async throws -> [APITokenSummary] {
        try await repository.tokens(userID: userID).map(\.summary)
    }

    public func revokeToken(_ tokenID: String, userID: String) async throws -> APITokenSummary {
        defer { forgetCheckedTokens() }
        guard var token = try await repository.tokens(userID: userID).first(where: { $0.id == tokenID }) else {
            throw BodhiError.notFound("You have no token '\(tokenID)'.")
        }
        if token.revokedAt == nil {
            token.revokedAt = Date()
            try await repository.updateToken(token)
        }
        return token.summary
    }

    /// A user by id, or by name.
    private func findUser(_ idOrName: String) async throws -> User? {
        if let user = try await repository.user(id: idOrName) { return user }
        return try await repository.user(named: idOrName)
    }

    // MARK: Hashing

    private func hash(_ password: String) async throws -> String {
        let cost = bcryptCost
        return try await NIOThreadPool.singleton.runIfActive { Bcrypt.hash(password, cost: cost) }
    }

    private func verify(_ password: String, hash: String) async -> Bool {
        (try? await NIOThreadPool.singleton.runIfActive { Bcrypt.verify(password, hash: hash) }) ?? false
    }
}
