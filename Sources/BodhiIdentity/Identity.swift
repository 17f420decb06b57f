import BodhiCore
import Foundation

/// Roles in ascending power: each includes everything below it.
public enum Role: String, Codable, Sendable, CaseIterable, Comparable {
    case user
    case powerUser = "power_user"
    case manager
    case admin

    private var rank: Int { Role.allCases.firstIndex(of: self)! }

    public static func < (lhs: Role, rhs: Role) -> Bool { lhs.rank < rhs.rank }

    public init(parsing text: String) throws {
        guard let role = Role(rawValue: text) else {
            throw BodhiError.invalidRequest(
                "'\(text)' is not a role; roles are \(Role.allCases.map(\.rawValue).joined(separator: ", ")).", param: "role")
        }
        self = role
    }
}

/// A person who can sign in. A registered user has no role until a manager grants one.
public struct User: Codable, Sendable, Equatable {
    public let id: String
    public var username: String
    public var passwordHash: String
    public var role: Role?
    public var disabled: Bool
    public var failedLogins: Int
    public var lockedUntil: Date?
    public let createdAt: Date
    public var updatedAt: Date

    public init(
        id: String = UUID.random().lowercaseString, username: String, passwordHash: String, role: Role?,
        disabled: Bool = false, failedLogins: Int = 0, lockedUntil: Date? = nil, createdAt: Date = Date(), updatedAt: Date = Date()
    ) {
        self.id = id
        self.username = username
        self.passwordHash = passwordHash
        self.role = role
        self.disabled = disabled
        self.failedLogins = failedLogins
        self.lockedUntil = lockedUntil
        self.createdAt = createdAt
        self.updatedAt = updatedAt
    }

    /// What the API shows: never the hash.
    public var profile: UserProfile {
        UserProfile(id: id, username: username, role: role, disabled: disabled, createdAt: createdAt)
    }
}

public struct UserProfile: Codable, Sendable, Equatable {
    public let id: String
    public let username: String
    public let role: Role?
    public let disabled: Bool
    public let createdAt: Date

    enum CodingKeys: String, CodingKey {
        case id, username, role, disabled
        case createdAt = "created_at"
    }
}

/// A browser session; the cookie holds the secret, the database only its hash.
public struct Session: Codable, Sendable, Equatable {
    public let idHash: String
    public let userID: String
    public let csrfToken: String
    public let createdAt: Date
    public let expiresAt: Date

    public init(idHash: String, userID: String, csrfToken: String, createdAt: Date, expiresAt: Date) {
        self.idHash = idHash
        self.userID = userID
        self.csrfToken = csrfToken
        self.createdAt = createdAt
        self.expiresAt = expiresAt
    }
}

/// An API token as stored: a hash and a lookup prefix, never the token itself.
public struct APIToken: Codable, Sendable, Equatable {
    public let id: String
    public let userID: String
    public var name: String
    public let prefix: String
    public let hash: String
    public let scope: Role
    /// Models the token may use; nil for all.
    public let models: [String]?
    public let createdAt: Date
    public let expiresAt: Date?
    public var revokedAt: Date?
    public var lastUsedAt: Date?

    public init(
        id: String, userID: String, name: String, prefix: String, hash: String, scope: Role, models: [String]?,
        createdAt: Date, expiresAt: Date?, revokedAt: Date?, lastUsedAt: Date?
    ) {
        self.id = id
        self.userID = userID
        self.name = name
        self.prefix = prefix
        self.hash = hash
        self.scope = scope
        self.models = models
        self.createdAt = createdAt
        self.expiresAt = expiresAt
        self.revokedAt = revokedAt
        self.lastUsedAt = lastUsedAt
    }

    /// What the API shows about a token: never its hash.
    public var summary: APITokenSummary {
        APITokenSummary(
            id: id, name: name, prefix: "bodhi_" + prefix, scope: scope, models: models, createdAt: createdAt,
            expiresAt: expiresAt, revokedAt: revokedAt, lastUsedAt: lastUsedAt)
    }
}

public struct APITokenSummary: Codable, Sendable, Equatable {
    public let id: String
    public let name: String
    public let prefix: String
    public let scope: Role
    public let models: [String]?
    public let createdAt: Date
    public let expiresAt: Date?
    public let revokedAt: Date?
    public let lastUsedAt: Date?

    enum CodingKeys: String, CodingKey {
        case id, name, prefix, scope, models
        case createdAt = "created_at", expiresAt = "expires_at", revokedAt = "revoked_at", lastUsedAt = "last_used_at"
    }
}

/// A request for a role by a registered user, decided by a manager.
public struct AccessRequest: Codable, Sendable, Equatable {
    public enum Status: String, Codable, Sendable { case pending, approved, rejected }
    public let id: String
    public let userID: String
    public let username: String
    public var status: Status
    public var decidedBy: String?
    public let createdAt: Date
    public var decidedAt: Date?

    public init(
        id: String, userID: String, username: String, status: Status, decidedBy: String?, createdAt: Date, decidedAt: Date?
    ) {
        self.id = id
        self.userID = userID
        self.username = username
        self.status = status
        self.decidedBy = decidedBy
        self.createdAt = createdAt
        self.decidedAt = decidedAt
    }

    enum CodingKeys: String, CodingKey {
        case id, username, status
        case userID = "user_id", decidedBy = "decided_by", createdAt = "created_at", decidedAt = "decided_at"
    }
}

/// Who a request comes from, once authenticated.
public struct Principal: Sendable, Equatable {
    public enum Credential: Sendable, Equatable {
        case session(csrfToken: String)
        case token(id: String, models: [String]?)
    }
    public let user: UserProfile
    public let credential: Credential

    /// The role requests may use: a token's scope caps its owner's role.
    public var role: Role? {
        guard let role = user.role else { return nil }
        if case .token = credential, let scope = tokenScope { return min(role, scope) }
        return role
    }

    let tokenScope: Role?

    public init(user: UserProfile, credential: Credential, tokenScope: Role? = nil) {
        self.user = user
        self.credential = credential
        self.tokenScope = tokenScope
    }

    /// The models a token is limited to; nil when it may use every model (and for sessions).
    public var allowedModels: [String]? {
        if case .token(_, let models) = credential { return models }
        return nil
    }

    /// The API token the request came with; nil for sessions.
    public var tokenID: String? {
        if case .token(let id, _) = credential { return id }
        return nil
    }

    public var isSession: Bool {
        if case .session = credential { return true }
        return false
    }
}

/// A cheap reading of a store's files that changes whenever the stored data may have changed,
/// other processes' writes included. Plain numbers, compared without building anything: it is
/// read on every authenticated request.
public struct ChangeMarker: Equatable, Sendable {
    /// A file's modification time and size; all -1 when it cannot be read.
    public struct FileStamp: Equatable, Sendable {
        public var seconds: Int
        public var nanoseconds: Int
        public var size: Int

        public init(seconds: Int, nanoseconds: Int, size: Int) {
            self.seconds = seconds
            self.nanoseconds = nanoseconds
            self.size = size
        }

        public static let missing = FileStamp(seconds: -1, nanoseconds: -1, size: -1)
    }

    public var database: FileStamp
    /// The database's write-ahead log or journal.
    public var journal: FileStamp
    /// Up to 64 bytes that every commit changes (SQLite's WAL index header), zero-padded; nil
    /// when unreadable.
    public var header: SIMD8<UInt64>?

    public init(database: FileStamp, journal: FileStamp, header: SIMD8<UInt64>?) {
        self.database = database
        self.journal = journal
        self.header = header
    }
}

/// Where users, sessions, tokens and access requests are kept.
public protocol IdentityRepository: Sendable {
    /// A value that changes whenever the stored data may have changed, other processes' writes
    /// included; nil when there is none. Lets checked credentials be reused until it moves.
    func changeMarker() -> ChangeMarker?

    func userCount(withRole role: Role) async throws -> Int
    func user(id: String) async throws -> User?
    func user(named username: String) async throws -> User?
    func users() async throws -> [User]
    func insertUser(_ user: User) async throws
    func updateUser(_ user: User) async throws
    func deleteUser(id: String) async throws

    func insertSession(_ session: Session) async throws
    func session(idHash: String) async throws -> Session?
    func deleteSession(idHash: String) async throws
    func deleteSessions(userID: String) async throws

    func insertToken(_ token: APIToken) async throws
    func token(prefix: String) async throws -> APIToken?
    func tokens(userID: String) async throws -> [APIToken]
    func updateToken(_ token: APIToken) async throws
    /// Sets only the token's last use, and only while it is not revoked.
    func touchToken(id: String, at date: Date) async throws

    func insertAccessRequest(_ request: AccessRequest) async throws
    func accessRequests() async throws -> [AccessRequest]
    func accessRequest(id: String) async throws -> AccessRequest?
    func updateAccessRequest(_ request: AccessRequest) async throws
}

extension IdentityRepository {
    public func changeMarker() -> ChangeMarker? { nil }
}
