import BodhiCore
import BodhiModels
import Foundation
import Synchronization

/// A router target's circuit breaker, as metrics show it.
public enum BreakerState: String, Sendable {
    case closed
    /// Cooling down: requests skip the target.
    case open
    /// Cooled down: one request probes it; the others still skip it.
    case halfOpen = "half_open"

    /// For the gauge: 0 closed, 1 half-open, 2 open.
    public var level: Int {
        switch self {
        case .closed: 0
        case .halfOpen: 1
        case .open: 2
        }
    }
}

/// The routers' view of their targets' health, under one lock: a circuit breaker per target
/// (closed → open after `failuresToOpen` failures in a row, or at once for the time a
/// `Retry-After` asks → half-open after the cooldown, one probe → closed on its success), and a
/// retry budget per target (requests sent to it because another target failed stay within
/// `retryRatio` of what it got in the minute, beyond a small allowance), so that a dying target
/// does not send the others twice its traffic. The clock is injected, for tests.
public final class RouterBreakers: Sendable {
    private struct Breaker {
        var failures = 0
        var openUntil: ContinuousClock.Instant?
        var probing = false
    }

    private struct Budget {
        var windowStart: ContinuousClock.Instant
        var requests = 0
        var retries = 0
    }

    private struct State {
        var breakers: [String: Breaker] = [:]
        var budgets: [String: Budget] = [:]
    }

    public static let failuresToOpen = 5
    public static let retryRatio = 0.2
    /// Retries a target takes in a minute whatever its traffic, so that a quiet one can still
    /// stand in for a failed one.
    public static let minimumRetriesPerMinute = 3
    static let window: Duration = .seconds(60)

    private let state = Mutex(State())
    private let now: @Sendable () -> ContinuousClock.Instant

    public init(now: @escaping @Sendable () -> ContinuousClock.Instant = { ContinuousClock.now }) {
        self.now = now
    }

    /// Whether `target` may be sent a request now: its breaker is closed, or it is half-open
    /// and this request is its one probe.
    public func admit(_ target: String) -> Bool {
        let now = now()
        return state.withLock { state in
            var breaker = state.breakers[target] ?? Breaker()
            defer { state.breakers[target] = breaker }
            guard let openUntil = breaker.openUntil else { return true }
            if now < openUntil || breaker.probing { return false }
            breaker.probing = true
            return true
        }
    }

    /// When `target`'s breaker closes again (nil: it is closed, or its probe may go now).
    public func reopensIn(_ target: String) -> Duration? {
        let now = now()
        return state.withLock { state in
            guard let openUntil = state.breakers[target]?.openUntil, now < openUntil else { return nil }
            return openUntil - now
        }
    }

    public func state(of target: String) -> BreakerState {
        let now = now()
        return state.withLock { state in Self.state(of: state.breakers[target], now: now) }
    }

    private static func state(of breaker: Breaker?, now: ContinuousClock.Instant) -> BreakerState {
        guard let openUntil = breaker?.openUntil else { return .closed }
        return now < openUntil ? .open : .halfOpen
    }

    /// Whether a request another target failed may be sent on to `target`, within its budget.
    /// Counts it if so.
    public func mayRetry(to target: String) -> Bool {
        let now = now()
        return state.withLock { state in
            var budget = Self.current(state.budgets[target], now: now)
            let allowed = Double(budget.retries + 1) <= max(Double(Self.minimumRetriesPerMinute), Self.retryRatio * Double(budget.requests + 1))
            if allowed {
                budget.retries += 1
                budget.requests += 1
            }
            state.budgets[target] = budget
            return allowed
        }
    }

    /// Counts a first attempt at `target` (retries are counted by `mayRetry`).
    public func counted(_ target: String) {
        let now = now()
        state.withLock { state in
            var budget = Self.current(state.budgets[target], now: now)
            budget.requests += 1
            state.budgets[target] = budget
        }
    }

    /// A request to `target` ended without telling whether it is well (its client went away): a
    /// half-open target may be probed again.
    public func concludedNothing(_ target: String) {
        state.withLock { state in state.breakers[target]?.probing = false }
    }

    /// `target` answered: its breaker closes. Returns the state it left, if it changed.
    @discardableResult
    public func succeeded(_ target: String) -> BreakerState? {
        let now = now()
        let before = state.withLock { state in
            defer { state.breakers[target] = Breaker() }
            return Self.state(of: state.breakers[target], now: now)
        }
        return before == .closed ? nil : before
    }

    /// `target` failed before answering. Its breaker opens after enough failures in a row, when
    /// its probe failed, or at once for `retryAfter`; for the longer of that and `cooldown`.
    /// Returns `.open` when it (re)opened.
    @discardableResult
    public func failed(_ target: String, cooldown: Duration, retryAfter: Duration? = nil) -> BreakerState? {
        let now = now()
        return state.withLock { state in
            var breaker = state.breakers[target] ?? Breaker()
            defer { state.breakers[target] = breaker }
            breaker.failures += 1
            if breaker.probing || breaker.failures >= Self.failuresToOpen || retryAfter != nil {
                breaker.openUntil = now + max(cooldown, retryAfter ?? .zero)
                breaker.probing = false
                return .open
            }
            return nil
        }
    }

    private static func current(_ budget: Budget?, now: ContinuousClock.Instant) -> Budget {
        guard let budget, now - budget.windowStart < window else { return Budget(windowStart: now) }
        return budget
    }

    /// The order a router tries its targets in for a caller: as listed (fallback), or the
    /// caller's target by weight first, then the others with weight as listed (weighted).
    /// `stickyKey` picks the same target for the same caller each time.
    public static func order(of router: ModelRouter, stickyKey: String) -> [String] {
        guard router.strategy == .weighted, let weights = router.weights else { return router.targets }
        let total = weights.reduce(0, +)
        guard total > 0 else { return router.targets }
        var point = Int(stableHash(router.name + "\u{0}" + stickyKey) % UInt64(total))
        var chosen = 0
        for (index, weight) in weights.enumerated() {
            if point < weight {
                chosen = index
                break
            }
            point -= weight
        }
        let others = router.targets.indices.filter { $0 != chosen && weights[$0] > 0 }.map { router.targets[$0] }
        return [router.targets[chosen]] + others
    }

    /// FNV-1a, then a mixing step: the same on every run and every machine (Swift's `Hasher` is
    /// seeded per process, which would move callers between targets at each restart).
    static func stableHash(_ text: String) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in text.utf8 {
            hash ^= UInt64(byte)
            hash &*= 0x0000_0100_0000_01b3
        }
        hash ^= hash >> 33
        hash &*= 0xff51_afd7_ed55_8ccd
        hash ^= hash >> 33
        return hash
    }
}

/// Which target of a router answered a request, for the `Bodhi-Served-By` header. The HTTP layer
/// sets one per request; the routing fills it.
public final class ServedBy: Sendable {
    private let target = Mutex<String?>(nil)

    public init() {}

    public var value: String? { target.withLock { $0 } }

    func record(_ name: String) { target.withLock { $0 = name } }

    @TaskLocal public static var current: ServedBy?
}
