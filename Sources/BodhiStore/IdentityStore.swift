import BodhiIdentity
import Foundation
import SQLKit

extension Store: IdentityRepository {
    struct UserRow: Codable, Sendable {
        var id: String
        var username: String
        var password_hash: String
        var role: String?
        var disabled: Int
        var failed_logins: Int
        var locked_until: Int64?
        var created_at: Int64
        var updated_at: Int64

        init(_ user: User) {
            id = user.id
            username = user.username
            password_hash = user.passwordHash
            role = user.role?.rawValue
            disabled = user.disabled ? 1 : 0
            failed_logins = user.failedLogins
            locked_until = user.lockedUntil.map(millis)
            created_at = millis(user.createdAt)
            updated_at = millis(user.updatedAt)
        }

        var user: User {
            User(
                id: id, username: username, passwordHash: password_hash, role: role.flatMap(Role.init(rawValue:)),
                disabled: disabled != 0, failedLogins: failed_logins, lockedUntil: locked_until.map(date),
                createdAt: date(created_at), updatedAt: date(updated_at))
        }
    }

    struct SessionRow: Codable, Sendable {
        var id_hash: String
        var user_id: String
        var csrf_token: String
        var created_at: Int64
        var expires_at: Int64
    }

    struct TokenRow: Codable, Sendable {
        var id: String
        var user_id: String
        var name: String
        var prefix: String
        var token_hash: String
        var scope: String
        var models: String?
        var created_at: Int64
        var expires_at: Int64?
        var revoked_at: Int64?
        var last_used_at: Int64?

        init(_ token: APIToken) throws {
            id = token.id
            user_id = token.userID
            name = token.name
            prefix = token.prefix
            token_hash = token.hash
            scope = token.scope.rawValue
            models = try token.models.map { try jsonColumn($0) }
            created_at = millis(token.createdAt)
            expires_at = token.expiresAt.map(millis)
            revoked_at = token.revokedAt.map(millis)
            last_used_at = token.lastUsedAt.map(millis)
        }

        func token() throws -> APIToken {
            APIToken(
                id: id, userID: user_id, name: name, prefix: prefix, hash: token_hash, scope: Role(rawValue: scope) ?? .user,
                models: try models.map { try fromJSONColumn($0, as: [String].self) },
                createdAt: date(created_at), expiresAt: expires_at.map(date), revokedAt: revoked_at.map(date),
                lastUsedAt: last_used_at.map(date))
        }
    }

    struct AccessRequestRow: Codable, Sendable {
        var id: String
        var user_id: String
        var username: String
        var status: String
        var decided_by: String?
        var created_at: Int64
        var decided_at: Int64?

        init(_ request: AccessRequest) {
            id = request.id
            user_id = request.userID
            username = request.username
            status = request.status.rawValue
            decided_by = request.decidedBy
            created_at = millis(request.createdAt)
            decided_at = request.decidedAt.map(millis)
        }

        var request: AccessRequest {
            AccessRequest(
                id: id, userID: user_id, username: username, status: AccessRequest.Status(rawValue: status) ?? .pending,
                decidedBy: decided_by, createdAt: date(created_at), decidedAt: decided_at.map(date))
        }
    }

    // MARK: Users

    public func userCount(withRole role: Role) async throws -> Int {
        try await session { database in
            try await database.select().column(SQLFunction("COUNT", args: SQLLiteral.all), as: "count").from("users")
                .where("role", .equal, role.rawValue).where("disabled", .equal, 0)
                .first(decodingColumn: "count", as: Int.self) ?? 0
        }
    }

    public func user(id: String) async throws -> User? {
        try await session { try await $0.select().column("*").from("users").where("id", .equal, id).first(decoding: UserRow.self) }?.user
    }

    public func user(named username: String) async throws -> User? {
        try await session {
            try await $0.select().column("*").from("users").where("username", .equal, username).first(decoding: UserRow.self)
        }?.user
    }

    public func users() async throws -> [User] {
        try await session { try await $0.select().column("*").from("users").orderBy("username").all(decoding: UserRow.self) }
            .map(\.user)
    }

    public func insertUser(_ user: User) async throws {
        let row = UserRow(user)
        try await session { try await $0.insert(into: "users").model(row, nilEncodingStrategy: .asNil).run() }
    }

    public func updateUser(_ user: User) async throws {
        let row = UserRow(user)
        try await session {
            try await $0.update("users").set(model: row).where("id", .equal, row.id).run()
        }
    }

    public func deleteUser(id: String) async throws {
        // Children first: the same on every database, whatever its foreign-key settings.
        try await transaction { database in
            for table in ["sessions", "api_tokens", "access_requests"] {
                try await database.delete(from: table).where("user_id", .equal, id).run()
            }
            try await database.delete(from: "users").where("id", .equal, id).run()
        }
    }

    // MARK: Sessions

    public func insertSession(_ session: Session) async throws {
        let row = SessionRow(
            id_hash: session.idHash, user_id: session.userID, csrf_token: session.csrfToken,
            created_at: millis(session.createdAt), expires_at: millis(session.expiresAt))
        try await self.session { try await $0.insert(into: "sessions").model(row).run() }
    }

    public func session(idHash: String) async throws -> Session? {
        try await session {
            try await $0.select().column("*").from("sessions").where("id_hash", .equal, idHash).first(decoding: SessionRow.self)
        }.map {
            Session(idHash: $0.id_hash, userID: $0.user_id, csrfToken: $0.csrf_token, createdAt: date($0.created_at), expiresAt: date($0.expires_at))
        }
    }

    public func deleteSession(idHash: String) async throws {
        try await session { try await $0.delete(from: "sessions").where("id_hash", .equal, idHash).run() }
    }

    public func deleteSessions(userID: String) async throws {
        try await session { try await $0.delete(from: "sessions").where("user_id", .equal, userID).run() }
    }

    // MARK: Tokens

    public func insertToken(_ token: APIToken) async throws {
        let row = try TokenRow(token)
        try await session { try await $0.insert(into: "api_tokens").model(row, nilEncodingStrategy: .asNil).run() }
    }

    public func token(prefix: String) async throws -> APIToken? {
        try await session {
            try await $0.select().column("*").from("api_tokens").where("prefix", .equal, prefix).first(decoding: TokenRow.self)
        }?.token()
    }

    public func tokens(userID: String) async throws -> [APIToken] {
        try await session {
            try await $0.select().column("*").from("api_tokens").where("user_id", .equal, userID).orderBy("created_at")
                .all(decoding: TokenRow.self)
        }.map { try $0.token() }
    }

    public func updateToken(_ token: APIToken) async throws {
        let row = try TokenRow(token)
        try await session {
            try await $0.update("api_tokens").set("name", to: row.name).set("revoked_at", to: row.revoked_at)
                .set("last_used_at", to: row.last_used_at).where("id", .equal, row.id).run()
        }
    }

    /// Records a token's last use without writing the rest of its row: a revoke that commits
    /// meanwhile must not be undone by a stale copy.
    public func touchToken(id: String, at date: Date) async throws {
        try await session {
            try await $0.update("api_tokens").set("last_used_at", to: millis(date))
                .where("id", .equal, id).where("revoked_at", .is, SQLLiteral.null).run()
        }
    }

    // MARK: Access requests

    public func insertAccessRequest(_ request: AccessRequest) async throws {
        let row = AccessRequestRow(request)
        try await session { try await $0.insert(into: "access_requests").model(row, nilEncodingStrategy: .asNil).run() }
    }

    public func accessRequests() async throws -> [AccessRequest] {
        try await session {
            try await $0.select().column("*").from("access_requests").orderBy("created_at").all(decoding: AccessRequestRow.self)
        }.map(\.request)
    }

    public func accessRequest(id: String) async throws -> AccessRequest? {
        try await session {
            try await $0.select().column("*").from("access_requests").where("id", .equal, id).first(decoding: AccessRequestRow.self)
        }?.request
    }

    public func updateAccessRequest(_ request: AccessRequest) async throws {
        let row = AccessRequestRow(request)
        try await session {
            try await $0.update("access_requests").set("status", to: row.status).set("decided_by", to: row.decided_by)
                .set("decided_at", to: row.decided_at).where("id", .equal, row.id).run()
        }
    }
}
