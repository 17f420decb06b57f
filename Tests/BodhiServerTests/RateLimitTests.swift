import BodhiCore
import BodhiEngine
import CompressNIO
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Synchronization
import Testing
@testable import BodhiServer

/// A clock the test moves by hand.
final class ManualClock: Sendable {
    private let now = Mutex(1000.0)
    func advance(_ seconds: Double) { now.withLock { $0 += seconds } }
    var read: @Sendable () -> Double { { [self] in now.withLock { $0 } } }
}

@Suite(.timeLimit(.minutes(2))) struct RateLimiterTests {
    static func settings(
        user: String = "inference=3/m management=5/m tokens=100/m", address: String = "all=1000/m auth=2/m",
        tokens: [String: RateLimitPlan] = [:], unlimited: Set<String> = []
    ) -> RateLimitSettings {
        RateLimitSettings(
            enabled: true, roles: ["user": RateLimitPlan(parsing: user)!, "admin": .unlimitedPlan],
            address: RateLimitPlan(parsing: address)!, tokens: tokens, unlimited: unlimited)
    }

    static func allowed(_ decision: RateLimiter.Decision) -> Bool {
        if case .refused = decision { return false }
        return true
    }

    @Test func plansParseAndPrintBack() throws {
        let plan = try #require(RateLimitPlan(parsing: "inference=600/m, management=20/s tokens=100000/h"))
        #expect(plan.rule(for: .inference) == RateLimitRule(limit: 600, windowSeconds: 60))
        #expect(plan.rule(for: .management) == RateLimitRule(limit: 20, windowSeconds: 1))
        #expect(plan.rule(for: .auth) == nil)
        #expect(plan.tokens == RateLimitRule(limit: 100_000, windowSeconds: 3600))
        #expect(plan.description == "inference=600/m management=20/s tokens=100000/h")
        #expect(RateLimitPlan(parsing: "unlimited")?.unlimited == true)
        for bad in ["", "inference=0/m", "inference=5/d", "speed=5/m", "unlimited inference=5/m", "inference=5"] {
            #expect(RateLimitPlan(parsing: bad) == nil, "\(bad)")
        }
        #expect(RateLimitSettings.parseTokenPlans("abc=unlimited; def=inference=5/m")?["def"]?.rule(for: .inference)?.limit == 5)
        #expect(RateLimitSettings.parseTokenPlans("abc") == nil)
    }

    @Test func anInvalidLimitSettingNamesItselfAndItsSource() {
        #expect {
            _ = try Settings.resolve(environment: ["HOME": "/tmp", "BODHI_HOME": "/tmp/none", "BODHI_RATE_LIMIT_USER": "fast"])
        } throws: { error in
            "\(error)".contains("BODHI_RATE_LIMIT_USER") && "\(error)".contains("environment")
        }
    }

    @Test func aBurstIsAllowedThenRefusedUntilTheBucketRefills() {
        let clock = ManualClock()
        let limiter = RateLimiter(settings: Self.settings(), clock: clock.read)
        let subject = limiter.subject(userID: "u1", username: "ann", role: "user", tokenID: "t1")
        for _ in 0..<5 {
            #expect(Self.allowed(limiter.check(subject: subject, address: "10.0.0.1", routeClass: .management, pressure: 0)))
        }
        guard case .refused(let quotas, let retryAfter) = limiter.check(subject: subject, address: "10.0.0.1", routeClass: .management, pressure: 0)
        else { Issue.record("the sixth request passed"); return }
        #expect(quotas.first?.name == "management")
        #expect(quotas.first?.remaining == 0)
        #expect(retryAfter == 12)  // one request's worth at 5 a minute
        // Another token of the same user shares the user's bucket (minting tokens buys nothing);
        // another user has their own; inference is counted apart.
        let other = limiter.subject(userID: "u1", username: "ann", role: "user", tokenID: "t2")
        #expect(!Self.allowed(limiter.check(subject: other, address: "10.0.0.1", routeClass: .management, pressure: 0)))
        let bob = limiter.subject(userID: "u2", username: "bob", role: "user", tokenID: "t3")
        #expect(Self.allowed(limiter.check(subject: bob, address: "10.0.0.1", routeClass: .management, pressure: 0)))
        #expect(Self.allowed(limiter.check(subject: subject, address: "10.0.0.1", routeClass: .inference, pressure: 0)))
        clock.advance(12)
        #expect(Self.allowed(limiter.check(subject: subject, address: "10.0.0.1", routeClass: .management, pressure: 0)))
        #expect(!Self.allowed(limiter.check(subject: subject, address: "10.0.0.1", routeClass: .management, pressure: 0)))
    }

    @Test func signInAttemptsAreLimitedPerAddress() {
        let limiter = RateLimiter(settings: Self.settings(), clock: ManualClock().read)
        #expect(Self.allowed(limiter.check(subject: nil, address: "10.0.0.1", routeClass: .auth, pressure: 0)))
        #expect(Self.allowed(limiter.check(subject: nil, address: "10.0.0.1", routeClass: .auth, pressure: 0)))
        #expect(!Self.allowed(limiter.check(subject: nil, address: "10.0.0.1", routeClass: .auth, pressure: 0)))
        #expect(Self.allowed(limiter.check(subject: nil, address: "10.0.0.2", routeClass: .auth, pressure: 0)))
    }

    @Test func unlimitedUsersTokensAndRolesBypassEveryLimit() {
        let limiter = RateLimiter(
            settings: Self.settings(tokens: ["t9": .unlimitedPlan], unlimited: ["vip", "token:t7", "user:carol"]), clock: ManualClock().read)
        let subjects = [
            limiter.subject(userID: "u2", username: "vip", role: "user", tokenID: nil),
            limiter.subject(userID: "u3", username: "bob", role: "user", tokenID: "t7"),
            limiter.subject(userID: "u3", username: "bob", role: "user", tokenID: "t9"),
            limiter.subject(userID: "u4", username: "root", role: "admin", tokenID: nil),
            limiter.subject(userID: "u5", username: "carol", role: "user", tokenID: "t5"),
        ]
        // A user named like an unlimited token's id gains nothing.
        #expect(!limiter.subject(userID: "u6", username: "t7", role: "user", tokenID: nil).unlimited)
        for subject in subjects {
            #expect(subject.unlimited)
            for _ in 0..<50 {
                #expect(limiter.check(subject: subject, address: "10.0.0.1", routeClass: .inference, pressure: 1) == .unlimited)
            }
        }
    }

    @Test func aTokensOwnPlanReplacesItsRolesPlan() {
        let limiter = RateLimiter(settings: Self.settings(tokens: ["t1": RateLimitPlan(parsing: "management=1/m")!]), clock: ManualClock().read)
        let subject = limiter.subject(userID: "u1", username: "ann", role: "user", tokenID: "t1")
        #expect(Self.allowed(limiter.check(subject: subject, address: "a", routeClass: .management, pressure: 0)))
        #expect(!Self.allowed(limiter.check(subject: subject, address: "a", routeClass: .management, pressure: 0)))
    }

    @Test func tokensUsedAreChargedAndStopTheNextRequest() {
        let limiter = RateLimiter(settings: Self.settings(), clock: ManualClock().read)
        let subject = limiter.subject(userID: "u1", username: "ann", role: "user", tokenID: "t1")
        #expect(Self.allowed(limiter.check(subject: subject, address: "a", routeClass: .inference, pressure: 0)))
        limiter.inferenceFinished(InferenceRecord(
            model: "m", operation: .chatCompletions, caller: InferenceCaller(fairnessKey: "user:u1", limitKey: subject.key),
            status: 200, queueWait: .zero, promptTokens: 80, completionTokens: 40, timeToFirstToken: nil,
            interTokenLatencies: []))
        guard case .refused(let quotas, let retryAfter) = limiter.check(subject: subject, address: "a", routeClass: .inference, pressure: 0)
        else { Issue.record("a caller over its tokens per minute was let through"); return }
        #expect(quotas.first?.name == "tokens")
        #expect(retryAfter == 12)  // 20 tokens over, at 100 a minute
    }

    @Test func limitsTightenAsTheQueueFills() {
        #expect(RateLimiter.tightening(0) == 1)
        #expect(RateLimiter.tightening(0.25) == 1)
        #expect(RateLimiter.tightening(1) == 0.25)
        let limiter = RateLimiter(settings: Self.settings(user: "inference=4/m"), clock: ManualClock().read)
        let subject = limiter.subject(userID: "u1", username: "ann", role: "user", tokenID: nil)
        // At a full queue each request costs four: the first takes the whole burst.
        #expect(Self.allowed(limiter.check(subject: subject, address: "a", routeClass: .inference, pressure: 1)))
        #expect(!Self.allowed(limiter.check(subject: subject, address: "a", routeClass: .inference, pressure: 1)))
    }

    @Test func disabledLimitsLetEverythingThrough() {
        var settings = Self.settings()
        settings.enabled = false
        let limiter = RateLimiter(settings: settings, clock: ManualClock().read)
        for _ in 0..<20 { #expect(limiter.check(subject: nil, address: "a", routeClass: .auth, pressure: 0) == .unlimited) }
    }
}

@Suite(.timeLimit(.minutes(2))) struct RateLimitHTTPTests {
    let hub: String

    init() throws {
        hub = try TestApp.emptyHub("limits")
    }

    @Test func everyPolicyARequestCountsAgainstIsStampedInOrder() {
        var headers = HTTPFields()
        RateLimitMiddleware.stamp(&headers, [
            RateLimiter.Quota(name: "address-inference", limit: 600, windowSeconds: 60, remaining: 599, resetSeconds: 1),
            RateLimiter.Quota(name: "tokens", limit: 100_000, windowSeconds: 60, remaining: 0, resetSeconds: 36),
        ])
        #expect(headers[RateLimitMiddleware.policyHeader] == #""address-inference";q=600;w=60, "tokens";q=100000;w=60"#)
        #expect(headers[RateLimitMiddleware.stateHeader] == #""address-inference";r=599;t=1, "tokens";r=0;t=36"#)
    }

    @Test func overTheLimitIs429InEachAPIsOwnFormatWithRetryAfterAndRateLimitHeaders() async throws {
        let environment = ["BODHI_RATE_LIMIT_POWER_USER": "management=2/m inference=1/m"]
        try await TestApp.with(hub: hub, environment: environment) { _, client in
            try await client.execute(uri: "/v1/models", method: .get) { response in
                #expect(response.status == .ok)
                #expect(response.headers[RateLimitMiddleware.policyHeader]?.contains(#""management";q=2;w=60"#) == true)
                #expect(response.headers[RateLimitMiddleware.stateHeader]?.contains(#""management";r=1;"#) == true)
            }
            try await client.execute(uri: "/api/tags", method: .get) { #expect($0.status == .ok) }
            try await client.execute(uri: "/v1/models", method: .get) { response in
                #expect(response.status == .tooManyRequests)
                // One request per 30 s comes back: as long as that, less what passed since (a
                // busy machine can take a second between these requests).
                #expect(response.headers[.retryAfter].flatMap { Int($0) }.map { (25...30).contains($0) } == true)
                #expect(response.headers[RateLimitMiddleware.stateHeader]?.hasPrefix(#""management";r=0;t="#) == true)
                let body = try JSONSerialization.jsonObject(with: Data(buffer: response.body)) as? [String: Any]
                let error = body?["error"] as? [String: Any]
                #expect(error?["code"] as? String == "rate_limited")
                #expect(error?["type"] as? String == "rate_limit_error")
            }
            try await client.execute(uri: "/api/tags", method: .get) { response in
                #expect(response.status == .tooManyRequests)
                let body = try JSONSerialization.jsonObject(with: Data(buffer: response.body)) as? [String: Any]
                #expect((body?["error"] as? String)?.contains("Rate limit exceeded") == true)
            }
            // Probes are never limited.
            for _ in 0..<5 { try await client.execute(uri: "/health/live", method: .get) { #expect($0.status == .ok) } }
            // Inference counts apart from management: the first request passes the limiter.
            try await client.execute(uri: "/v1/chat/completions", method: .post, body: ByteBuffer(string: "{}")) { response in
                #expect(response.status == .badRequest)
            }
            try await client.execute(uri: "/v1/chat/completions", method: .post, body: ByteBuffer(string: "{}")) { response in
                #expect(response.status == .tooManyRequests)
            }
        }
    }

    @Test func metricsCountInferenceTokensLatenciesAndRefusals() async throws {
        try await TestApp.with(hub: hub, environment: ["BODHI_RATE_LIMIT_POWER_USER": "management=1/m"]) { app, client in
            app.services.metrics.inferenceFinished(InferenceRecord(
                model: "org/tiny-GGUF:Q4_K_M", operation: .chatCompletions, caller: InferenceCaller(fairnessKey: "u", limitKey: "u"),
                status: 200, queueWait: .milliseconds(3), promptTokens: 11, completionTokens: 5, timeToFirstToken: .milliseconds(40),
                interTokenLatencies: [.milliseconds(8), .milliseconds(9), .milliseconds(7), .milliseconds(8)]))
            app.services.metrics.queueRejected(model: "org/tiny-GGUF:Q4_K_M")
            try await client.execute(uri: "/v1/models", method: .get) { #expect($0.status == .ok) }
            try await client.execute(uri: "/v1/models", method: .get) { #expect($0.status == .tooManyRequests) }
            let admin = try await app.services.identity.createToken(forUser: "root", name: "scrape", scope: .user, models: nil, expiresIn: nil).token
            let text = try await client.with(authorization: "Bearer \(admin)").execute(uri: "/metrics", method: .get) { String(buffer: $0.body) }
            for expected in [
                #"bodhi_prompt_tokens_total{model="org/tiny-GGUF:Q4_K_M",backend="local"} 11"#,
                #"bodhi_completion_tokens_total{model="org/tiny-GGUF:Q4_K_M",backend="local"} 5"#,
                #"bodhi_inference_requests_total{model="org/tiny-GGUF:Q4_K_M",backend="local",operation="chat",status="200"} 1"#,
                #"bodhi_time_to_first_token_seconds_count{model="org/tiny-GGUF:Q4_K_M"} 1"#,
                #"bodhi_inter_token_latency_seconds_count{model="org/tiny-GGUF:Q4_K_M"} 4"#,
                #"bodhi_stream_tokens_per_second_count{model="org/tiny-GGUF:Q4_K_M"} 1"#,
                #"bodhi_queue_wait_seconds_count{model="org/tiny-GGUF:Q4_K_M"} 1"#,
                #"bodhi_queue_rejections_total{model="org/tiny-GGUF:Q4_K_M"} 1"#,
                #"bodhi_rate_limited_total{class="management",policy="management"} 1"#,
                "bodhi_pull_bytes_total 0",
            ] {
                #expect(text.contains(expected), "\(expected)")
            }
        }
    }

    @Test func limitsChangeLiveThroughTheSettingsAPI() async throws {
        try await TestApp.with(hub: hub, environment: ["BODHI_RATE_LIMIT_POWER_USER": "management=1/m"]) { app, client in
            #expect(app.services.rateLimiter.settings.roles["power_user"]?.rule(for: .management)?.limit == 1)
            _ = try await app.services.settings.set("BODHI_RATE_LIMIT_ADMIN", value: "management=7/s")
            #expect(app.services.rateLimiter.settings.roles["admin"]?.rule(for: .management)?.limit == 7)
            _ = try await app.services.settings.set("BODHI_MAX_QUEUE", value: "9")
            await #expect(throws: BodhiError.self) { _ = try await app.services.settings.set("BODHI_RATE_LIMIT_IP", value: "lots") }
        }
    }
}

@Suite(.timeLimit(.minutes(2))) struct CompressionTests {
    let hub: String

    init() throws {
        hub = try TestApp.emptyHub("gzip")
    }

    @Test func largeBodiesAreCompressedAsTheClientAsksAndSmallOnesNever() async throws {
        try await TestApp.with(hub: hub) { _, client in
            let plain = try await client.execute(uri: "/openapi.json", method: .get) { response in
                #expect(response.headers[.contentEncoding] == nil)
                return response.body
            }
            let choices = [
                ("gzip", "gzip"), ("deflate", "deflate"), ("br;q=1, gzip;q=0.5, deflate;q=0.8", "br"), ("*", "gzip"), ("br", "br"),
                ("zstd", "zstd"), ("gzip, deflate, br, zstd", "gzip"), ("br, zstd", "zstd"), ("br;q=0, zstd;q=0, deflate", "deflate"),
            ]
            for (accept, encoding) in choices {
                try await client.execute(uri: "/openapi.json", method: .get, headers: [.acceptEncoding: accept]) { response in
                    #expect(response.headers[.contentEncoding] == encoding, "\(accept)")
                    #expect(response.headers[.vary] == "Accept-Encoding")
                    #expect(response.body.readableBytes < plain.readableBytes / 3)
                    #expect(response.headers[.contentLength] == String(response.body.readableBytes))
                    var compressed = response.body
                    switch encoding {
                    case "gzip", "deflate":
                        let inflated = try compressed.decompress(with: encoding == "gzip" ? .gzip() : .zlib())
                        #expect(inflated == plain)
                    // A Zstandard frame (RFC 8878); the end-to-end tests decode br and zstd with two other implementations.
                    case "zstd": #expect(compressed.readBytes(length: 4) == [0x28, 0xB5, 0x2F, 0xFD])
                    default: break
                    }
                }
            }
            for accept in ["identity", "gzip;q=0", "compress", "gzip;q=0, br;q=0, zstd;q=0, deflate;q=0"] {
                try await client.execute(uri: "/openapi.json", method: .get, headers: [.acceptEncoding: accept]) { response in
                    #expect(response.headers[.contentEncoding] == nil, "\(accept)")
                }
            }
            try await client.execute(uri: "/ping", method: .get, headers: [.acceptEncoding: "gzip"]) { response in
                #expect(response.headers[.contentEncoding] == nil)
                #expect(String(buffer: response.body).contains("pong"))
            }
        }
    }

    @Test func docsNeedTheirAssetsAndSayHowToGetThem() async throws {
        try await TestApp.with(hub: hub) { _, client in
            try await client.execute(uri: "/docs", method: .get) { response in
                #expect(response.status == .notFound)
                #expect(String(buffer: response.body).contains("run scripts\\/bootstrap"))
            }
            try await client.execute(uri: "/docs/bodhi-docs.js", method: .get) { response in
                #expect(response.status == .ok)
                #expect(String(buffer: response.body).contains("/openapi.json"))
                #expect(response.headers[.contentSecurityPolicy]?.contains("script-src 'self'") == true)
            }
            try await client.execute(uri: "/docs/..%2Fsecret.key", method: .get) { #expect($0.status == .notFound) }
        }
    }
}
