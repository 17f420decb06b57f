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
        guard let principal = try await Self.principal(of: request, identity: identity) else {
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
    /// Google's clients send the key here, or as `?key=` on the Gemini API.
    static let googleAPIKeyHeader = HTTPField.Name("x-goog-api-key")!

    /// The key a request sends without `Authorization`: Anthropic's header, Google's, or
    /// (on Gemini's paths) Google's query parameter.
    static func apiKey(of request: Request) -> String? {
        if let key = request.headers[Self.apiKeyHeader] ?? request.headers[Self.googleAPIKeyHeader] { return key }
        guard APIFamily.of(path: request.uri.path) == .gemini else { return nil }
        return request.uri.queryParameters["key"].map(String.init)
    }

    /// The API token a request carries (`Authorization: Bearer` or `x-api-key`); nil when it
    /// sends none, a 401 when `Authorization` is not a bearer token. Read as bytes: this runs
    /// on every request with a token.
    static func apiToken(authorization: String?, apiKey: String?) throws -> String? {
        guard let authorization else { return apiKey?.trimmingWhitespace() }
        let bytes = authorization.utf8
        let scheme = "bearer".utf8
        guard bytes.count > scheme.count + 1,
              zip(bytes, scheme).allSatisfy({ $0 | 0x20 == $1 }),
              bytes.dropFirst(scheme.count).first == UInt8(ascii: " ")
        else {
            throw BodhiError(.unauthorized, status: 401, "Send the API token as `Authorization: Bearer bodhi_...`.")
        }
        let token = Substring(authorization.utf8.dropFirst(scheme.count + 1)).trimmingWhitespace()
        guard !token.isEmpty else {
            throw BodhiError(.unauthorized, status: 401, "Send the API token as `Authorization: Bearer bodhi_...`.")
        }
        return token
    }

    /// The principal the request's credentials name; nil when it carries none.
    static func principal(of request: Request, identity: IdentityService) async throws -> Principal? {
        if let token = try Self.apiToken(authorization: request.headers[.authorization], apiKey: Self.apiKey(of: request)) {
            return try await identity.authenticate(token: token)
        }
        if let cookie = request.cookies[Self.sessionCookie] {
            return try await identity.authenticate(sessionToken: cookie.value)
        }
        return nil
    }
}
