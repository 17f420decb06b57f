import BodhiCore
import BodhiEngine
import BodhiIdentity
import HTTPTypes
import Hummingbird

/// Applies `RateLimiter` to every matched route after access control (so it knows the caller),
/// answers 429 in the API's own error format with `Retry-After`, and tells every caller where
/// they stand in `RateLimit-Policy` and `RateLimit` (IETF httpapi ratelimit-headers draft).
/// It also names the caller for the admission queue's round robin.
struct RateLimitMiddleware: RouterMiddleware {
    typealias Context = BodhiRequestContext
    let limiter: RateLimiter
    let admission: AdmissionQueue
    let metrics: BodhiMetrics

    static let policyHeader = HTTPField.Name("RateLimit-Policy")!
    static let stateHeader = HTTPField.Name("RateLimit")!

    /// Probes and the liveness check are never limited: a load balancer must always get through.
    static let exempt = RouteTable.paths(limitedAs: nil)
    static let inferenceRoutes = RouteTable.paths(limitedAs: .inference)
    static let authRoutes = RouteTable.paths(limitedAs: .auth)

    static func routeClass(of path: String) -> RouteClass {
        if inferenceRoutes.contains(path) { return .inference }
        if authRoutes.contains(path) { return .auth }
        return .management
    }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard let path = context.endpointPath, !Self.exempt.contains(path) else { return try await next(request, context) }
        let routeClass = Self.routeClass(of: path)
        let (decision, subject) = decide(for: context.principal, address: context.clientAddress, routeClass: routeClass)
        switch decision {
        case .refused(let quotas, let retryAfter):
            metrics.recordRateLimited(routeClass: routeClass, policy: quotas[0].name)
            let error = BodhiError(
                .rateLimited, status: 429,
                "Rate limit exceeded (\(quotas[0].name): \(quotas[0].limit) per \(quotas[0].windowSeconds) s). Retry after \(retryAfter) s.",
                retryAfterSeconds: retryAfter)
            var response = ErrorRenderingMiddleware.render(error, path: request.uri.path)
            Self.stamp(&response.headers, quotas)
            return response
        case .unlimited, .allowed:
            var response: Response
            if let principal = context.principal, routeClass == .inference {
                let caller = Self.caller(principal, subject: subject, connection: context.connection)
                response = try await InferenceCaller.$current.withValue(caller) { try await next(request, context) }
            } else {
                response = try await next(request, context)
            }
            if case .allowed(let quotas) = decision { Self.stamp(&response.headers, quotas) }
            return response
        }
    }

    /// The limiter's decision on a request of `routeClass` from `principal` (nil: not signed in)
    /// at `address`, and the subject it counted against.
    func decide(for principal: Principal?, address: String, routeClass: RouteClass) -> (RateLimiter.Decision, RateLimiter.Subject?) {
        let subject = principal.map { principal in
            limiter.subject(
                userID: principal.user.id, username: principal.user.username, role: principal.role?.rawValue,
                tokenID: principal.tokenID)
        }
        let decision = limiter.check(
            subject: subject, address: address, routeClass: routeClass,
            pressure: routeClass == .inference ? admission.pressure : 0)
        return (decision, subject)
    }

    /// Who an admitted inference request is, for the admission queue's round robin and the token limit.
    static func caller(_ principal: Principal, subject: RateLimiter.Subject?, connection: ClientConnection) -> InferenceCaller {
        InferenceCaller(
            fairnessKey: "user:" + principal.user.id, limitKey: subject?.key ?? "",
            priority: subject?.unlimited == true, connection: connection)
    }

    /// `RateLimit-Policy: "inference";q=600;w=60` and `RateLimit: "inference";r=599;t=1`, one
    /// item per policy the request counted against, appended into one buffer per header (no
    /// arrays of parts to join): this runs on every limited request.
    static func stamp(_ headers: inout HTTPFields, _ quotas: [RateLimiter.Quota]) {
        guard !quotas.isEmpty else { return }
        var policy = "", state = ""
        policy.reserveCapacity(32 * quotas.count)
        state.reserveCapacity(32 * quotas.count)
        for quota in quotas {
            appendItem(to: &policy, quota.name, ("q", quota.limit), ("w", quota.windowSeconds))
            appendItem(to: &state, quota.name, ("r", quota.remaining), ("t", quota.resetSeconds))
        }
        headers[policyHeader] = policy
        headers[stateHeader] = state
    }

    /// `, "name";a=1;b=2` (without the comma for the first item).
    private static func appendItem(to text: inout String, _ name: String, _ first: (String, Int), _ second: (String, Int)) {
        if !text.isEmpty { text.append(", ") }
        text.append("\"\(name)\";\(first.0)=\(first.1);\(second.0)=\(second.1)")
    }
}
