import BodhiCore
import BodhiEngine
import Foundation
import Synchronization

/// Token buckets for every caller, client address and route class, plus tokens per minute for
/// inference (charged when a request ends, from its usage). Limits tighten as the admission
/// queue fills. A lock rather than an actor: every request passes here, and a check is a few
/// dictionary operations that must not wait behind a queue of other requests.
public final class RateLimiter: Sendable, InferenceObserver {
    /// Who is asking, as the limiter sees it.
    public struct Subject: Sendable {
        /// `token:ID` or `user:ID`: whose buckets count the request.
        public let key: String
        public let plan: RateLimitPlan
        public var unlimited: Bool { plan.unlimited }

        public init(key: String, plan: RateLimitPlan) {
            self.key = key
            self.plan = plan
        }
    }

    /// One policy the request was counted against, for the `RateLimit-Policy` and `RateLimit` headers.
    public struct Quota: Sendable, Equatable {
        public let name: String
        public let limit: Int
        public let windowSeconds: Int
        public let remaining: Int
        /// Seconds until the bucket is full again.
        public let resetSeconds: Int
    }

    public enum Decision: Sendable, Equatable {
        case unlimited
        case allowed([Quota])
        /// `quotas` holds the exhausted policy first.
        case refused(quotas: [Quota], retryAfterSeconds: Int)
    }

    private struct Bucket {
        var level: Double
        var updated: Double
        /// The rule it was filled under, for charging tokens after the request.
        var rule: RateLimitRule
    }

    private struct State {
        var settings: RateLimitSettings
        var buckets: [String: Bucket] = [:]
        var lastSweep: Double = 0
    }

    private let state: Mutex<State>
    private let clock: @Sendable () -> Double

    public init(settings: RateLimitSettings, clock: @escaping @Sendable () -> Double = RateLimiter.monotonicSeconds) {
        state = Mutex(State(settings: settings))
        self.clock = clock
    }

    public static func monotonicSeconds() -> Double {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
    }

    public func reconfigure(_ settings: RateLimitSettings) {
        state.withLock { $0.settings = settings }
    }

    public var settings: RateLimitSettings { state.withLock { $0.settings } }

    /// The subject for a signed-in caller. A token with a plan of its own in settings has buckets
    /// of its own; every other token and session of a user with the same effective role (a
    /// token's scope caps it) shares the user's buckets under that role's plan, so that minting
    /// tokens does not multiply a user's limits. Unlimited when the unlimited list names the user
    /// (`alice` or `user:alice`) or the token (`token:ID`).
    public func subject(userID: String, username: String, role: String?, tokenID: String?) -> Subject {
        let settings = settings
        let userKey = "user:\(userID):\(role ?? "user")"
        if settings.unlimited.contains(username) || settings.unlimited.contains("user:" + username)
            || tokenID.map({ settings.unlimited.contains("token:" + $0) }) == true {
            return Subject(key: tokenID.map { "token:" + $0 } ?? userKey, plan: .unlimitedPlan)
        }
        if let tokenID, let plan = settings.tokens[tokenID] { return Subject(key: "token:" + tokenID, plan: plan) }
        return Subject(key: userKey, plan: settings.roles[role ?? "user"] ?? settings.roles["user"] ?? RateLimitPlan())
    }

    /// Counts one request of `routeClass` from `address` (and `subject`, when signed in) if every
    /// bucket it touches has room. `pressure` (0...1, how full the admission queue is) makes
    /// inference requests cost more, up to four times at a full queue.
    public func check(subject: Subject?, address: String, routeClass: RouteClass, pressure: Double) -> Decision {
        let now = clock()
        return state.withLock { state -> Decision in
            guard state.settings.enabled, subject?.unlimited != true else { return .unlimited }
            let cost = routeClass == .inference ? 1 / Self.tightening(pressure) : 1
            var touched: [(key: String, name: String, rule: RateLimitRule, cost: Double)] = []
            if let (rule, scope) = state.settings.address.scopedRule(for: routeClass) {
                touched.append(("ip:\(address)|\(scope)", "address-\(scope)", rule, cost))
            }
            if let subject {
                if let (rule, scope) = subject.plan.scopedRule(for: routeClass) {
                    touched.append(("\(subject.key)|\(scope)", scope, rule, cost))
                }
                // Tokens are charged when the request ends; it may start while any are left.
                if routeClass == .inference, let rule = subject.plan.tokens {
                    touched.append(("\(subject.key)|tokens", "tokens", rule, 0))
                }
            }
            var quotas: [Quota] = []
            var refusal: (quota: Quota, retry: Int)?
            let levels = touched.map { Self.refilled(state.buckets[$0.key], rule: $0.rule, now: now) }
            for (item, level) in zip(touched, levels) {
                let needed = max(item.cost, item.cost == 0 ? Double.ulpOfOne : 0)
                if level < needed, refusal == nil {
                    let rate = Double(item.rule.limit) / Double(item.rule.windowSeconds)
                    let quota = Self.quota(item.name, rule: item.rule, level: level)
                    refusal = (quota, max(1, Int(((needed - level) / rate).rounded(.up))))
                }
                quotas.append(Self.quota(item.name, rule: item.rule, level: level - item.cost))
            }
            if let refusal {
                let others = quotas.filter { $0.name != refusal.quota.name }
                return .refused(quotas: [refusal.quota] + others, retryAfterSeconds: refusal.retry)
            }
            for (item, level) in zip(touched, levels) {
                state.buckets[item.key] = Bucket(level: level - item.cost, updated: now, rule: item.rule)
            }
            Self.sweep(&state, now: now)
            return .allowed(quotas)
        }
    }

    /// Charges a finished inference request's tokens to its caller's tokens-per-minute bucket.
    public func inferenceFinished(_ record: InferenceRecord) {
        guard record.totalTokens > 0, !record.caller.priority, !record.caller.limitKey.isEmpty else { return }
        let now = clock()
        state.withLock { state in
            let key = record.caller.limitKey + "|tokens"
            guard let bucket = state.buckets[key] else { return }
            let level = Self.refilled(bucket, rule: bucket.rule, now: now)
            state.buckets[key] = Bucket(level: level - Double(record.totalTokens), updated: now, rule: bucket.rule)
        }
    }

    /// 1 while the queue is at most a quarter full, then down to a quarter at a full queue.
    static func tightening(_ pressure: Double) -> Double {
        guard pressure > 0.25 else { return 1 }
        return max(0.25, 1 - (min(pressure, 1) - 0.25))
    }

    private static func refilled(_ bucket: Bucket?, rule: RateLimitRule, now: Double) -> Double {
        let capacity = Double(rule.limit)
        guard let bucket else { return capacity }
        let rate = capacity / Double(rule.windowSeconds)
        return min(capacity, bucket.level + (now - bucket.updated) * rate)
    }

    private static func quota(_ name: String, rule: RateLimitRule, level: Double) -> Quota {
        let rate = Double(rule.limit) / Double(rule.windowSeconds)
        let missing = Double(rule.limit) - level
        return Quota(
            name: name, limit: rule.limit, windowSeconds: rule.windowSeconds, remaining: max(0, Int(level.rounded(.down))),
            resetSeconds: max(0, Int((missing / rate).rounded(.up))))
    }

    /// Drops buckets that have refilled completely (they hold nothing a new one would not), at
    /// most once a minute, so that many addresses or tokens do not grow the table for ever.
    private static func sweep(_ state: inout State, now: Double) {
        guard now - state.lastSweep > 60 else { return }
        state.lastSweep = now
        let longestWindow = 3600.0
        state.buckets = state.buckets.filter { now - $0.value.updated < longestWindow }
    }
}
