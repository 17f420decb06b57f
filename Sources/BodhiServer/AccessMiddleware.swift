import BodhiCore
import Foundation
import BodhiIdentity
import HTTPTypes
import Hummingbird

/// Applies `AccessPolicy` to every matched route: finds who is asking (an API token in
/// `Authorization: Bearer` or `x-api-key`, else the session cookie), checks their role and, for
/// cookie-authenticated changes, the CSRF header.
struct AccessMiddleware: RouterMiddleware {
    typealias Context = BodhiRequestContext
    let identity: IdentityService

    static let sessionCookie = "bodhi_session"
    static let csrfHeader = HTTPField.Name("X-CSRF-Token")!

    func handle(
        _ request: Request, context: Context, next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        guard let path = context.endpointPath else { return try await next(request, context) }
        // A route without a rule is a mistake; until it is fixed only admins reach it.
        let rule = AccessPolicy.rule(method: request.method, path: path) ?? .admin
        if rule.level == .open { return try await next(request, context) }

        guard try await identity.isSetUp() else {
            throw BodhiError(.unauthorized, status: 401,
                             "Bodhi is not set up yet: create the first admin in a browser at /ui, with `bodhi setup --admin-user NAME --admin-password-stdin`, or with POST /bodhi/v1/setup.")
        }
        guard let principal = try await authenticate(request) else {
            throw BodhiError(.unauthorized, status: 401,
                             "Sign in, or send an API token as `Authorization: Bearer bodhi_...`.")
        }
        try Self.authorize(principal, under: rule, method: request.method, csrfToken: request.headers[Self.csrfHeader])
        var context = context
        context.principal = principal
        return try await next(request, context)
    }

    /// Whether `principal` may use a route under `rule`; the 403 that says why not.
    static func authorize(_ principal: Principal, under rule: AccessPolicy.Rule, method: HTTPRequest.Method, csrfToken: String?) throws {
        if rule.sessionOnly, !principal.isSession {
            throw BodhiError(.forbidden, status: 403, "This needs a signed-in browser session; API tokens cannot do it.")
        }
        if case .role(let needed) = rule.level {
            guard let role = principal.role, role >= needed else {
                let have = principal.role.map { "your role is \($0.rawValue)" + (principal.isSession ? "" : " through this token") }
                    ?? "you have no role yet; request access with POST /bodhi/v1/access-requests"
                throw BodhiError(.forbidden, status: 403, "This needs the role \(needed.rawValue) or higher; \(have).")
            }
        }
        if case .session(let csrf) = principal.credential, ![.get, .head, .options].contains(method) {
            guard let sent = csrfToken, Secrets.constantTimeEquals(sent, csrf) else {
                throw BodhiError(.forbidden, status: 403,
                                 "Missing or wrong \(csrfHeader) header: send the csrf_token you got at sign-in with every change.")
            }
        }
    }

    static let apiKeyHeader = HTTPField.Name("x-api-key")!

    /// The API token the request carries (`Authorization: Bearer` or `x-api-key`); nil when it
    /// sends none, a 401 when `Authorization` is not a bearer token.
    static func apiToken(in headers: HTTPFields) throws -> String? {
        if let authorization = headers[.authorization] {
            let parts = authorization.split(separator: " ", maxSplits: 1)
            guard parts.count == 2, parts[0].lowercased() == "bearer" else {
                throw BodhiError(.unauthorized, status: 401, "Send the API token as `Authorization: Bearer bodhi_...`.")
            }
            return parts[1].trimmingWhitespace()
        }
        return headers[apiKeyHeader]?.trimmingWhitespace()
    }

    /// The principal the request's credentials name; nil when it carries none.
    private func authenticate(_ request: Request) async throws -> Principal? {
        if let token = try Self.apiToken(in: request.headers) {
            return try await identity.authenticate(token: token)
        }
        if let cookie = request.cookies[Self.sessionCookie] {
            return try await identity.authenticate(sessionToken: cookie.value)
        }
        return nil
    }
}
