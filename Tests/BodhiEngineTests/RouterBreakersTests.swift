import BodhiModels
import Synchronization
import Testing
@testable import BodhiEngine

/// The routers' breakers and budgets, on a clock the test moves.
@Suite(.timeLimit(.minutes(1))) struct RouterBreakersTests {
    final class Clock: Sendable {
        private let instant = Mutex(ContinuousClock.now)
        var now: ContinuousClock.Instant { instant.withLock { $0 } }
        func advance(_ duration: Duration) { instant.withLock { $0 += duration } }
    }

    @Test func aBreakerOpensAfterFiveFailuresInARowAndASuccessResetsTheCount() {
        let clock = Clock()
        let breakers = RouterBreakers(now: { clock.now })
        for _ in 0..<4 { breakers.failed("a", cooldown: .seconds(30)) }
        breakers.succeeded("a")
        for _ in 0..<4 { #expect(breakers.failed("a", cooldown: .seconds(30)) == nil) }
        #expect(breakers.admit("a") && breakers.state(of: "a") == .closed)
        #expect(breakers.failed("a", cooldown: .seconds(30)) == .open)
        #expect(!breakers.admit("a") && breakers.state(of: "a") == .open)
        #expect(breakers.reopensIn("a") == .seconds(30))
    }

    @Test func afterTheCooldownOneProbeGoesAndItsOutcomeDecides() {
        let clock = Clock()
        let breakers = RouterBreakers(now: { clock.now })
        for _ in 0..<5 { breakers.failed("a", cooldown: .seconds(10)) }
        clock.advance(.seconds(10))
        #expect(breakers.state(of: "a") == .halfOpen)
        #expect(breakers.admit("a"))
        #expect(!breakers.admit("a"), "a second request went to a half-open target")
        // The probe failed: open again, for a whole cooldown.
        #expect(breakers.failed("a", cooldown: .seconds(10)) == .open)
        clock.advance(.seconds(9))
        #expect(!breakers.admit("a"))
        clock.advance(.seconds(1))
        #expect(breakers.admit("a"))
        #expect(breakers.succeeded("a") == .halfOpen)
        #expect(breakers.state(of: "a") == .closed && breakers.admit("a") && breakers.admit("a"))
    }

    @Test func aProbeThatConcludesNothingLetsTheNextOneGo() {
        let clock = Clock()
        let breakers = RouterBreakers(now: { clock.now })
        for _ in 0..<5 { breakers.failed("a", cooldown: .seconds(1)) }
        clock.advance(.seconds(1))
        #expect(breakers.admit("a") && !breakers.admit("a"))
        breakers.concludedNothing("a")
        #expect(breakers.admit("a"), "a half-open target was never probed again")
    }

    @Test func aRetryAfterOpensTheBreakerAtOnceForItsLengthWhenLonger() {
        let clock = Clock()
        let breakers = RouterBreakers(now: { clock.now })
        #expect(breakers.failed("a", cooldown: .seconds(5), retryAfter: .seconds(60)) == .open)
        clock.advance(.seconds(59))
        #expect(!breakers.admit("a"))
        breakers.failed("b", cooldown: .seconds(30), retryAfter: .seconds(1))
        clock.advance(.seconds(29))
        #expect(!breakers.admit("b"))
    }

    @Test func retriesStayWithinAFifthOfATargetsRequestsBeyondASmallAllowance() {
        let clock = Clock()
        let breakers = RouterBreakers(now: { clock.now })
        for _ in 0..<RouterBreakers.minimumRetriesPerMinute { #expect(breakers.mayRetry(to: "b")) }
        #expect(!breakers.mayRetry(to: "b"))
        // With traffic of its own, a fifth of it may be retries.
        for _ in 0..<30 { breakers.counted("b") }
        #expect(breakers.mayRetry(to: "b") && breakers.mayRetry(to: "b") && breakers.mayRetry(to: "b") && breakers.mayRetry(to: "b"))
        #expect(!breakers.mayRetry(to: "b"), "8 retries in 38 requests")
        // A new minute, a new budget.
        clock.advance(.seconds(60))
        #expect(breakers.mayRetry(to: "b"))
    }

    @Test func weightsSplitCallersWithinFivePointsAndEachCallerKeepsATarget() {
        let router = ModelRouter(name: "ab", targets: ["a", "b", "c"], strategy: .weighted, weights: [3, 1, 0])
        var firsts: [String: Int] = [:]
        for index in 0..<1000 {
            let order = RouterBreakers.order(of: router, stickyKey: "user-\(index)")
            firsts[order[0], default: 0] += 1
            #expect(!order.contains("c"), "a target of weight 0 was tried")
            #expect(order == RouterBreakers.order(of: router, stickyKey: "user-\(index)"))
        }
        #expect((700...800).contains(firsts["a"] ?? 0), "\(firsts)")
        #expect(firsts["a", default: 0] + firsts["b", default: 0] == 1000)
        let fallback = ModelRouter(name: "f", targets: ["x", "y"])
        #expect(RouterBreakers.order(of: fallback, stickyKey: "anyone") == ["x", "y"])
    }
}
