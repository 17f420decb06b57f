import BodhiCore
import BodhiIdentity
import Foundation
import HTTPTypes
import Hummingbird

/// First run, sign-in, accounts, access requests and API tokens.
struct IdentityRoutes {
    let services: BodhiServices

    struct Credentials: Decodable {
        let username: String
        let password: String
    }

    struct SetupState: Encodable {
        let setupRequired: Bool
        enum CodingKeys: String, CodingKey { case setupRequired = "setup_required" }
    }

    struct SignedIn: Encodable {
        let user: UserProfile
        let csrfToken: String
        let expiresAt: Date
        enum CodingKeys: String, CodingKey {
            case user
            case csrfToken = "csrf_token", expiresAt = "expires_at"
        }
    }

    /// Who a request's credentials name, if anyone: a `Me` with `signed_in`.
    struct SessionState: Encodable {
        let signedIn: Bool
        let me: Me?
        func encode(to encoder: any Encoder) throws {
            try me?.encode(to: encoder)
            var container = encoder.container(keyedBy: Key.self)
            try container.encode(signedIn, forKey: .signedIn)
        }
        enum Key: String, CodingKey { case signedIn = "signed_in" }
    }

    struct Me: Encodable {
        let user: UserProfile
        /// For a browser session: the header value its changes must carry.
        let csrfToken: String?
        let via: String
        enum CodingKeys: String, CodingKey {
            case user, via
            case csrfToken = "csrf_token"
        }

        init(_ principal: Principal) {
            user = principal.user
            if case .session(let token) = principal.credential { csrfToken = token } else { csrfToken = nil }
            via = principal.isSession ? "session" : "token"
        }
    }

    struct PasswordChange: Decodable {
        let current: String
        let new: String
    }

    struct RoleChange: Decodable {
        let role: String?
    }

    struct DisabledChange: Decodable {
        let disabled: Bool
    }

    struct Decision: Decodable {
        let role: String?
    }

    struct NewToken: Decodable {
        let name: String
        let scope: String?
        let models: [String]?
        /// A duration such as `30d`, `12h`; absent for no expiry.
        let expiresIn: String?
        enum CodingKeys: String, CodingKey {
            case name, scope, models
            case expiresIn = "expires_in"
        }
    }

    struct CreatedToken: Encodable {
        let token: String
        let summary: APITokenSummary
        func encode(to encoder: any Encoder) throws {
            try summary.encode(to: encoder)
            var container = encoder.container(keyedBy: Key.self)
            try container.encode(token, forKey: .token)
        }
        enum Key: String, CodingKey { case token }
    }

    struct List<Item: Encodable & Sendable>: Encodable, Sendable {
        let data: [Item]
    }

    func register(on router: Router<BodhiRequestContext>) {
        let identity = services.identity
        let limit = 64 * 1024

        router.get("/bodhi/v1/setup") { _, _ in
            try Response.json(SetupState(setupRequired: !(try await identity.isSetUp())))
        }
        router.post("/bodhi/v1/setup") { request, _ in
            let body = try await request.decodeJSON(Credentials.self, limit: limit)
            return try Response.json(try await identity.setup(username: body.username, password: body.password), status: .created)
        }
        router.post("/bodhi/v1/auth/register") { request, _ in
            let body = try await request.decodeJSON(Credentials.self, limit: limit)
            return try Response.json(try await identity.register(username: body.username, password: body.password), status: .created)
        }
        router.post("/bodhi/v1/auth/login") { request, context in
            let body = try await request.decodeJSON(Credentials.self, limit: limit)
            // A session the browser still holds is ended: every sign-in gets a new id.
            if let old = request.cookies[AccessMiddleware.sessionCookie] { try? await identity.logout(sessionToken: old.value) }
            let signIn = try await identity.login(username: body.username, password: body.password, client: context.clientAddress)
            var response = try Response.json(SignedIn(user: signIn.user, csrfToken: signIn.csrfToken, expiresAt: signIn.expiresAt))
            response.setCookie(Self.sessionCookie(signIn.sessionToken, maxAge: Int(signIn.expiresAt.timeIntervalSinceNow), request: request))
            return response
        }
        router.post("/bodhi/v1/auth/logout") { request, _ in
            if let cookie = request.cookies[AccessMiddleware.sessionCookie] { try await identity.logout(sessionToken: cookie.value) }
            var response = Response(status: .noContent)
            response.setCookie(Self.sessionCookie("", maxAge: 0, request: request))
            return response
        }
        router.get("/bodhi/v1/auth/session") { request, _ in
            // Credentials that name nobody (an expired session, a revoked token) are "not signed in" here.
            let principal = try? await AccessMiddleware.principal(of: request, identity: identity)
            return try Response.json(SessionState(signedIn: principal != nil, me: principal.map(Me.init)))
        }
        router.get("/bodhi/v1/users/me") { _, context in
            try Response.json(Me(try context.requirePrincipal()))
        }
        router.put("/bodhi/v1/users/me/password") { request, context in
            let body = try await request.decodeJSON(PasswordChange.self, limit: limit)
            try await identity.changePassword(userID: try context.requirePrincipal().user.id, current: body.current, new: body.new)
            var response = Response(status: .noContent)
            response.setCookie(Self.sessionCookie("", maxAge: 0, request: request))
            return response
        }
        router.post("/bodhi/v1/access-requests") { _, context in
            try Response.json(try await identity.requestAccess(try context.requirePrincipal()), status: .created)
        }
        router.get("/bodhi/v1/access-requests") { _, _ in
            try Response.json(List(data: try await identity.accessRequests()))
        }
        for (action, approve) in [("approve", true), ("reject", false)] {
            router.post(RouterPath("/bodhi/v1/access-requests/:id/\(action)")) { request, context in
                let body = approve ? try await request.decodeJSON(Decision.self, limit: limit) : Decision(role: nil)
                let role = try Role(parsing: body.role ?? Role.user.rawValue)
                return try Response.json(try await identity.decide(
                    context.parameters.decoded("id"), approve: approve, role: role, by: try context.requirePrincipal()))
            }
        }
        router.get("/bodhi/v1/users") { _, _ in
            try Response.json(List(data: try await identity.users()))
        }
        router.put("/bodhi/v1/users/:id/role") { request, context in
            let body = try await request.decodeJSON(RoleChange.self, limit: limit)
            let role = try body.role.map(Role.init(parsing:))
            return try Response.json(try await identity.setRole(
                userID: context.parameters.decoded("id"), role: role, by: try context.requirePrincipal()))
        }
        router.put("/bodhi/v1/users/:id/disabled") { request, context in
            let body = try await request.decodeJSON(DisabledChange.self, limit: limit)
            return try Response.json(try await identity.setDisabled(
                userID: context.parameters.decoded("id"), disabled: body.disabled, by: try context.requirePrincipal()))
        }
        router.delete("/bodhi/v1/users/:id") { _, context in
            try await identity.deleteUser(context.parameters.decoded("id"), by: try context.requirePrincipal())
            return Response(status: .noContent)
        }
        router.get("/bodhi/v1/tokens") { _, context in
            try Response.json(List(data: try await identity.tokens(userID: try context.requirePrincipal().user.id)))
        }
        router.post("/bodhi/v1/tokens") { request, context in
            let body = try await request.decodeJSON(NewToken.self, limit: limit)
            let expiresIn = try body.expiresIn.map { text -> TimeInterval in
                guard let duration = Duration(parsing: text), duration > .zero else {
                    throw BodhiError.invalidRequest("'expires_in' is a duration such as 30d, 12h or 90m.", param: "expires_in")
                }
                return Double(duration.components.seconds)
            }
            let created = try await identity.createToken(
                forUser: try context.requirePrincipal().user.id, name: body.name,
                scope: try Role(parsing: body.scope ?? Role.user.rawValue), models: body.models, expiresIn: expiresIn)
            return try Response.json(CreatedToken(token: created.token, summary: created.summary), status: .created)
        }
        router.delete("/bodhi/v1/tokens/:id") { _, context in
            try Response.json(try await identity.revokeToken(context.parameters.decoded("id"), userID: try context.requirePrincipal().user.id))
        }
    }

    /// The session cookie: HttpOnly, SameSite=Strict, and Secure when the request came over
    /// https (directly or through a proxy that says so).
    static func sessionCookie(_ value: String, maxAge: Int, request: Request) -> Cookie {
        let secure = request.head.scheme == "https" || request.headers[HTTPField.Name("X-Forwarded-Proto")!]?.lowercased() == "https"
        return Cookie(name: AccessMiddleware.sessionCookie, value: value, maxAge: max(0, maxAge), path: "/",
                      secure: secure, httpOnly: true, sameSite: .strict)
    }
}
