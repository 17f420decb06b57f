import BodhiCore
import BodhiEngine
import BodhiIdentity
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Testing
@testable import BodhiServer

/// Every registered route against every kind of caller: the access table is complete, and
/// each rule answers 401 (who are you?), 403 (not you) or lets the request through.
@Suite(.timeLimit(.minutes(2))) struct AccessTests {
    let hub: String

    init() throws {
        hub = try TestApp.hubWithTinyModel("access")
    }

    enum Caller: CustomStringConvertible {
        case nobody, badToken, expiredToken, revokedToken
        case token(String, role: Role)
        case session(username: String, role: Role)

        var description: String {
            switch self {
            case .nobody: "no credentials"
            case .badToken: "a bad token"
            case .expiredToken: "an expired token"
            case .revokedToken: "a revoked token"
            case .token(_, let role): "a \(role.rawValue) token"
            case .session(let name, _): "\(name)'s session"
            }
        }
    }

    /// A concrete request path for a route pattern.
    static func uri(for pattern: String) -> String {
        pattern.replacingOccurrences(of: "**", with: "org/none:Q4_0")
            .replacing(/\{[a-z_]+\}/, with: "unknown")
    }

    @Test func everyRouteHasARuleAndEveryRuleHolds() async throws {
        try await TestApp.with(hub: hub) { app, client in
            let identity = app.services.identity
            let root = try await identity.authenticate(sessionToken: identity.login(username: "root", password: "root password", client: "t").sessionToken)
            for (name, role) in [("uma", Role.user), ("pia", Role.powerUser), ("max", Role.manager)] {
                _ = try await identity.register(username: name, password: "\(name) password")
                _ = try await identity.setRole(userID: name, role: role, by: root)
            }
            let userToken = try await identity.createToken(forUser: "uma", name: "t", scope: .user, models: nil, expiresIn: nil).token
            let powerToken = try await identity.createToken(forUser: "pia", name: "t", scope: .powerUser, models: nil, expiresIn: nil).token
            let expired = try await identity.createToken(forUser: "pia", name: "t", scope: .powerUser, models: nil, expiresIn: 0.05).token
            let (revoked, revokedSummary) = try await identity.createToken(forUser: "pia", name: "t", scope: .powerUser, models: nil, expiresIn: nil)
            _ = try await identity.revokeToken(revokedSummary.id, userID: try #require(try await app.store.user(named: "pia")).id)
            try await Task.sleep(for: .milliseconds(100))

            let callers: [Caller] = [
                .nobody, .badToken, .expiredToken, .revokedToken,
                .token(userToken, role: .user), .token(powerToken, role: .powerUser),
                .session(username: "uma", role: .user), .session(username: "pia", role: .powerUser),
                .session(username: "max", role: .manager), .session(username: "root", role: .admin),
            ]
            let routes = BodhiHTTPServer.router(services: app.services).routes
            #expect(routes.count >= 40)
            for route in routes {
                let key = "\(route.method.rawValue) \(route.path)"
                let rule = try #require(AccessPolicy.rules[key], "\(key) has no rule in AccessPolicy")
                for caller in callers {
                    var headers: HTTPFields = [:]
                    var role: Role?
                    var isSession = false
                    switch caller {
                    case .nobody: break
                    case .badToken: headers[.authorization] = "Bearer bodhi_not-a-real-token"
                    case .expiredToken: headers[.authorization] = "Bearer \(expired)"
                    case .revokedToken: headers[.authorization] = "Bearer \(revoked)"
                    case .token(let token, let tokenRole):
                        headers[.authorization] = "Bearer \(token)"
                        role = tokenRole
                    case .session(let name, let sessionRole):
                        // A fresh session each time: some routes (logout, password change) end it.
                        let signIn = try await identity.login(username: name, password: "\(name) password", client: "t")
                        headers[.cookie] = "bodhi_session=\(signIn.sessionToken)"
                        headers[AccessMiddleware.csrfHeader] = signIn.csrfToken
                        role = sessionRole
                        isSession = true
                    }
                    let status = try await client.with(authorization: nil).execute(
                        uri: Self.uri(for: "\(route.path)"), method: route.method, headers: headers, body: ByteBuffer()
                    ) { $0.status.code }

                    let expected: String
                    switch rule.level {
                    case .open: expected = "through"
                    case .signedIn, .role:
                        if role == nil { expected = "401" }
                        else if rule.sessionOnly && !isSession { expected = "403" }
                        else if case .role(let needed) = rule.level, role! < needed { expected = "403" }
                        else { expected = "through" }
                    }
                    let got = status == 401 ? "401" : status == 403 ? "403" : "through"
                    #expect(got == expected, "\(key) with \(caller): expected \(expected), got \(status)")
                }
            }
        }
    }

    @Test func tokensLimitedToModelsAndSessionsWithoutCSRFAreRefused() async throws {
        try await TestApp.with(hub: hub) { app, client in
            let identity = app.services.identity
            let limited = try await identity.createToken(forUser: "root", name: "t", scope: .user, models: ["other"], expiresIn: nil).token
            let chat = #"{"model":"org/tiny-GGUF:Q4_K_M","messages":[{"role":"user","content":"hi"}]}"#
            try await client.with(authorization: "Bearer \(limited)").execute(
                uri: "/v1/chat/completions", method: .post, body: ByteBuffer(string: chat)
            ) { response in
                #expect(response.status == .forbidden)
                #expect(String(buffer: response.body).contains("permission_error"))
            }
            try await client.with(authorization: "Bearer \(limited)").execute(uri: "/v1/models", method: .get) { response in
                #expect(!String(buffer: response.body).contains("tiny-GGUF"))
            }

            let signIn = try await identity.login(username: "root", password: "root password", client: "t")
            let cookie: HTTPFields = [.cookie: "bodhi_session=\(signIn.sessionToken)"]
            try await client.with(authorization: nil).execute(
                uri: "/bodhi/v1/aliases", method: .post, headers: cookie,
                body: ByteBuffer(string: #"{"name":"x","model":"org/tiny-GGUF:Q4_K_M"}"#)
            ) { response in
                #expect(response.status == .forbidden)
                #expect(String(buffer: response.body).contains("X-CSRF-Token"))
            }
            // Reading needs no CSRF header.
            try await client.with(authorization: nil).execute(uri: "/bodhi/v1/aliases", method: .get, headers: cookie) { response in
                #expect(response.status == .ok)
            }
        }
    }

    @Test func beforeSetupEveryProtectedRoutePointsToSetup() async throws {
        try await TestApp.with(hub: hub, setUp: false) { _, client in
            try await client.execute(uri: "/v1/models", method: .get) { response in
                #expect(response.status == .unauthorized)
                #expect(String(buffer: response.body).contains("bodhi setup"))
            }
            try await client.execute(uri: "/ping", method: .get) { response in #expect(response.status == .ok) }
            try await client.execute(uri: "/bodhi/v1/setup", method: .get) { response in
                #expect(String(buffer: response.body).contains(#""setup_required":true"#))
            }
            try await client.execute(
                uri: "/bodhi/v1/setup", method: .post, body: ByteBuffer(string: #"{"username":"first","password":"first password"}"#)
            ) { response in #expect(response.status == .created) }
            try await client.execute(
                uri: "/bodhi/v1/setup", method: .post, body: ByteBuffer(string: #"{"username":"second","password":"second password"}"#)
            ) { response in #expect(response.status == .conflict) }
            try await client.execute(uri: "/v1/models", method: .get) { response in
                #expect(response.status == .unauthorized)
                #expect(!String(buffer: response.body).contains("bodhi setup"))
            }
        }
    }

    @Test func signInSetsAStrictHttpOnlyCookieAndLogoutEndsIt() async throws {
        try await TestApp.with(hub: hub) { _, client in
            let anonymous = client.with(authorization: nil)
            let (cookie, csrf): (String, String) = try await anonymous.execute(
                uri: "/bodhi/v1/auth/login", method: .post, body: ByteBuffer(string: #"{"username":"root","password":"root password"}"#)
            ) { response in
                #expect(response.status == .ok)
                let setCookie = try #require(response.headers[.setCookie])
                #expect(setCookie.contains("HttpOnly") && setCookie.contains("SameSite=Strict") && !setCookie.contains("Secure"))
                let value = try #require(setCookie.split(separator: ";").first?.split(separator: "=", maxSplits: 1).last)
                let body = try #require(try JSONSerialization.jsonObject(with: Data(String(buffer: response.body).utf8)) as? [String: Any])
                return (String(value), try #require(body["csrf_token"] as? String))
            }
            let session: HTTPFields = [.cookie: "bodhi_session=\(cookie)", AccessMiddleware.csrfHeader: csrf]
            try await anonymous.execute(uri: "/bodhi/v1/users/me", method: .get, headers: session) { response in
                #expect(response.status == .ok)
                #expect(String(buffer: response.body).contains(#""via":"session""#))
            }
            try await anonymous.execute(uri: "/bodhi/v1/auth/session", method: .get, headers: session) { response in
                #expect(response.status == .ok)
                let body = String(buffer: response.body)
                #expect(body.contains(#""signed_in":true"#) && body.contains(#""username":"root""#) && body.contains(csrf))
            }
            try await anonymous.execute(uri: "/bodhi/v1/auth/logout", method: .post, headers: session) { response in
                #expect(response.status == .noContent)
            }
            try await anonymous.execute(uri: "/bodhi/v1/users/me", method: .get, headers: session) { response in
                #expect(response.status == .unauthorized)
            }
            // The ended session, or none at all, is "nobody", answered without an error status.
            for headers in [session, [:]] {
                try await anonymous.execute(uri: "/bodhi/v1/auth/session", method: .get, headers: headers) { response in
                    #expect(response.status == .ok)
                    #expect(String(buffer: response.body) == #"{"signed_in":false}"#)
                }
            }
            try await anonymous.execute(
                uri: "/bodhi/v1/auth/login", method: .post, headers: [HTTPField.Name("X-Forwarded-Proto")!: "https"],
                body: ByteBuffer(string: #"{"username":"root","password":"root password"}"#)
            ) { response in
                #expect(response.headers[.setCookie]?.contains("Secure") == true)
            }
        }
    }
}

/// The one route table, read by access control, the rate limiter, error rendering and the API document.
@Suite(.timeLimit(.minutes(2))) struct RouteTableTests {
    @Test func everyRouteTheRouterHasIsInTheTableAndNothingElse() async throws {
        let hub = try TestApp.hubWithTinyModel("routes")
        try await TestApp.with(hub: hub) { app, _ in
            let registered = Set(BodhiHTTPServer.router(services: app.services).routes.map { "\($0.method.rawValue) \($0.path)" })
            #expect(registered == Set(RouteTable.routes.keys))
        }
    }

    @Test func everyDescribedRouteExistsAndEveryPostOfTheInferenceClassHasItsBodyDescribed() {
        #expect(Set(RouteSchemas.routes.keys).isSubset(of: Set(RouteTable.routes.keys)))
        // The request shapes clients generate code from first; Gemini's `**` routes and the
        // Responses API are described in docs/API.md only, for now.
        let inference = RouteTable.routes.filter { $0.value.limit == .inference && $0.key.hasPrefix("POST ") }.keys
        let described = inference.filter { RouteSchemas.routes[$0]?.request != nil }
        #expect(Set(inference).subtracting(described) == ["POST /v1beta/models/**", "POST /v1/responses"])
        // Every shape a route names is defined.
        let document = String(data: try! JSONSerialization.data(withJSONObject: RouteSchemas.routes.mapValues { $0.reply.schema.json }), encoding: .utf8)!
        let references = document.matches(of: /components\\?\/schemas\\?\/([A-Za-z]+)/)
        #expect(references.count > 10)
        for match in references {
            #expect(RouteSchemas.components[String(match.1)] != nil, "\(match.1)")
        }
    }

    @Test func inferenceIsLimitedAsInferenceSignInAsAuthAndProbesNotAtAll() {
        for operation in InferenceOperation.allCases where operation.rawValue.hasPrefix("/v1/") {
            #expect(RateLimitMiddleware.routeClass(of: operation.rawValue) == .inference)
        }
        for path in ["/api/chat", "/api/generate", "/api/embed", "/v1/messages"] {
            #expect(RateLimitMiddleware.routeClass(of: path) == .inference)
        }
        #expect(RateLimitMiddleware.routeClass(of: "/bodhi/v1/auth/login") == .auth)
        #expect(RateLimitMiddleware.routeClass(of: "/bodhi/v1/aliases") == .management)
        #expect(RateLimitMiddleware.exempt == ["/ping", "/health", "/health/live", "/health/ready"])
    }

    @Test func eachPathBelongsToTheAPIWhoseErrorsItSpeaks() {
        #expect(APIFamily.of(path: "/v1/messages") == .anthropic)
        #expect(APIFamily.of(path: "/v1/chat/completions") == .openAI)
        #expect(APIFamily.of(path: "/v1/no/such/route") == .openAI)
        #expect(APIFamily.of(path: "/api/chat") == .ollama)
        #expect(APIFamily.of(path: "/bodhi/v1/aliases") == .bodhi)
        #expect(APIFamily.of(path: "/v1messages") == .bodhi)
    }
}
