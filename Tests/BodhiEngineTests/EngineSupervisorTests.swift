import BodhiCore
@testable import BodhiEngine
@testable import BodhiModels
import Foundation
import Logging
import Synchronization
import Testing

/// An engine that is no process: it "serves" at a made-up port, and dies, is reaped and stops
/// when the test says so.
final class FakeEngine: RunningEngine {
    let endpoint: EngineEndpoint
    let arguments: [String]
    let residentMemoryBytes: Int64? = 1_000
    private let state = Mutex<(exit: ChildProcess.ExitStatus?, reaped: Bool, terminated: Bool, waiters: [CheckedContinuation<ChildProcess.ExitStatus, Never>])>(
        (nil, false, false, []))

    init(port: Int, arguments: [String]) {
        endpoint = EngineEndpoint(host: "127.0.0.1", port: port, apiKey: "key", pid: Int32(port))
        self.arguments = arguments
    }

    var terminated: Bool { state.withLock { $0.terminated } }

    /// The process ends, but nobody has reaped it yet: only `exitStatus(within:)` can tell.
    func die() {
        state.withLock { $0.exit = $0.exit ?? ChildProcess.ExitStatus(raw: 9) }
    }

    /// It is reaped: `waitForExit` returns.
    func reap() {
        let waiters = state.withLock { state in
            state.exit = state.exit ?? ChildProcess.ExitStatus(raw: 9)
            state.reaped = true
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume(returning: ChildProcess.ExitStatus(raw: 9)) }
    }

    /// A crash as the supervisor sees one: the process dies and is reaped.
    func crash() {
        die()
        reap()
    }

    func waitForExit() async -> ChildProcess.ExitStatus {
        await withCheckedContinuation { continuation in
            let done = state.withLock { state -> ChildProcess.ExitStatus? in
                if state.reaped { return state.exit }
                state.waiters.append(continuation)
                return nil
            }
            if let done { continuation.resume(returning: done) }
        }
    }

    func exitStatus(within limit: Duration) async -> ChildProcess.ExitStatus? {
        state.withLock { $0.exit }
    }

    func terminate() async {
        state.withLock { $0.terminated = true }
        reap()
    }
}

/// Starts `FakeEngine`s at once, or fails or hangs as a test arranges per model; counts launches.
final class FakeLauncher: EngineLauncher {
    enum Behaviour: Sendable {
        case serve
        case fail(String)
        /// Never ready: waits until cancelled.
        case hang
    }

    private let state = Mutex<(behaviour: [String: Behaviour], launched: [(model: String, engine: FakeEngine)], nextPort: Int)>(([:], [], 40_000))

    func set(_ behaviour: Behaviour, for model: String) {
        state.withLock { $0.behaviour[model] = behaviour }
    }

    /// The engines launched so far, for `model`, oldest first.
    func engines(of model: String) -> [FakeEngine] {
        state.withLock { $0.launched.filter { $0.model == model }.map(\.engine) }
    }

    func launches(of model: String) -> Int { engines(of: model).count }

    func plan(_ model: EngineTarget, slots: Int, extraArguments: [String]) throws -> EngineLaunchPlan {
        let port = state.withLock { state in
            state.nextPort += 1
            return state.nextPort
        }
        return EngineLaunchPlan(port: port, apiKey: "key", arguments: ["--model", model.path, "--parallel", String(slots)] + extraArguments)
    }

    func launch(_ plan: EngineLaunchPlan, for model: EngineTarget) async throws -> any RunningEngine {
        switch state.withLock({ $0.behaviour[model.id] ?? .serve }) {
        case .serve:
            let engine = FakeEngine(port: plan.port, arguments: plan.arguments)
            state.withLock { $0.launched.append((model.id, engine)) }
            return engine
        case .fail(let reason):
            state.withLock { $0.launched.append((model.id, FakeEngine(port: plan.port, arguments: plan.arguments))) }
            throw BodhiError.engineLoadFailed(model: model.id, reason: reason)
        case .hang:
            state.withLock { $0.launched.append((model.id, FakeEngine(port: plan.port, arguments: plan.arguments))) }
            while true { try await Task.sleep(for: .seconds(1)) }
        }
    }
}

/// Estimates each model at what a test says (1 KB unless told), with a prompt cache argument.
final class FakeEstimator: EngineMemoryEstimator {
    private let sizes = Mutex<[String: Int64]>([:])

    func set(_ bytes: Int64, for model: String) {
        sizes.withLock { $0[model] = bytes }
    }

    /// What `trainedContext` says of every model.
    var trained: Int? {
        get { trainedContexts.withLock { $0 } }
        set { trainedContexts.withLock { $0 = newValue } }
    }
    private let trainedContexts = Mutex<Int?>(nil)

    func trainedContext(_ model: EngineTarget) async -> Int? { trained }

    func estimate(_ model: EngineTarget, slots: Int, arguments: [String]) async -> EngineMemory? {
        let bytes = sizes.withLock { $0[model.id] } ?? 1_000
        return EngineMemory(weightsBytes: bytes / 2, kvCacheBytes: bytes / 4, promptCacheBytes: bytes - bytes / 2 - bytes / 4,
                            promptCacheArguments: ["--cache-ram", "1"])
    }
}

/// The supervisor's decisions — loads, crash restarts, LRU, keep-alive, load failures — with a
/// fake launcher: no engine runs, so these are fast and exact.
@Suite(.timeLimit(.minutes(1)))
struct EngineSupervisorTests {
    static func model(_ name: String) -> EngineTarget {
        EngineTarget(model: ModelEntry(
            id: "test/\(name)-GGUF:Q4_0", repo: "test/\(name)-GGUF", quantization: "Q4_0", revision: "abc", fileName: "\(name).gguf",
            path: "/models/\(name).gguf", parts: ["/models/\(name).gguf"], sizeBytes: 1, modified: Date()))
    }

    static func supervisor(
        _ launcher: FakeLauncher, estimator: FakeEstimator = FakeEstimator(), maxLoaded: Int = 3, budget: MemoryBudget = .off,
        keepAlive: KeepAlive = .idle(.seconds(300)), loadTimeout: Duration = .seconds(60)
    ) throws -> EngineSupervisor {
        var settings = try Settings.resolve(environment: ["HOME": NSHomeDirectory()])
        settings.maxLoadedModels = maxLoaded
        settings.memoryBudget = budget
        settings.keepAlive = keepAlive
        settings.loadTimeout = loadTimeout
        settings.parallel = 2
        var configuration = EngineConfiguration(settings: settings)
        // The backoff's own figures are `backoff(afterCrashes:)`'s test; here restarts come quickly.
        configuration.restartBackoff = .milliseconds(1)
        return EngineSupervisor(
            configuration: configuration, launcher: launcher, estimator: estimator, probes: EngineProbes(http: .shared),
            logger: Logger(label: "test"))
    }

    /// Waits (10 s at most) until `condition` holds of the supervisor's status.
    static func until(_ supervisor: EngineSupervisor, _ what: String, _ condition: ([EngineStatus]) -> Bool) async throws {
        for _ in 0..<2000 {
            if condition(await supervisor.status()) { return }
            try await Task.sleep(for: .milliseconds(5))
        }
        Issue.record("never saw \(what): \(await supervisor.status())")
    }

    /// Whether `engine` is stopped within 10 s (an unload stops it from a task of its own, after
    /// the books say it is gone).
    static func stopped(_ engine: FakeEngine) async throws -> Bool {
        for _ in 0..<2000 where !engine.terminated { try await Task.sleep(for: .milliseconds(5)) }
        return engine.terminated
    }

    @Test func concurrentRequestsForAModelShareOneLoad() async throws {
        let launcher = FakeLauncher()
        let supervisor = try Self.supervisor(launcher)
        let model = Self.model("a")
        let leases = try await withThrowingTaskGroup(of: EngineLease.self) { group in
            for _ in 0..<5 { group.addTask { try await supervisor.acquire(model) } }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(launcher.launches(of: model.id) == 1)
        #expect(Set(leases.map(\.endpoint.port)).count == 1)
        #expect(await supervisor.status().first?.inFlight == 5)
        leases.forEach { $0.release() }
        #expect(await supervisor.status().first?.inFlight == 0)
    }

    @Test func aCrashedEngineIsRestartedAndRequestsGoToTheNewOne() async throws {
        let launcher = FakeLauncher()
        let supervisor = try Self.supervisor(launcher)
        let model = Self.model("a")
        try await supervisor.acquire(model).release()
        launcher.engines(of: model.id)[0].crash()
        try await Self.until(supervisor, "the restart") { $0.first?.restarts == 1 && $0.first?.state == "ready" }
        let lease = try await supervisor.acquire(model)
        #expect(lease.endpoint.port == launcher.engines(of: model.id)[1].endpoint.port)
        #expect(launcher.launches(of: model.id) == 2)
    }

    @Test func anEngineThatKeepsCrashingIsLeftDownUntilTheNextRequest() async throws {
        let launcher = FakeLauncher()
        let supervisor = try Self.supervisor(launcher)
        let model = Self.model("a")
        try await supervisor.acquire(model).release()
        for crash in 1...EngineConfiguration.defaultMaxConsecutiveCrashes {
            launcher.engines(of: model.id)[crash - 1].crash()
            try await Self.until(supervisor, "restart \(crash)") { $0.first?.restarts == crash && $0.first?.state == "ready" }
        }
        launcher.engines(of: model.id).last!.crash()
        try await Self.until(supervisor, "the engine left down") { $0.isEmpty }
        #expect(launcher.launches(of: model.id) == EngineConfiguration.defaultMaxConsecutiveCrashes + 1)
        // The next request loads it again.
        try await supervisor.acquire(model).release()
        #expect(launcher.launches(of: model.id) == EngineConfiguration.defaultMaxConsecutiveCrashes + 2)
    }

    @Test func anEngineFoundDeadBeforeItsExitIsNoticedRestartsAtOnce() async throws {
        let launcher = FakeLauncher()
        let supervisor = try Self.supervisor(launcher)
        let model = Self.model("a")
        let lease = try await supervisor.acquire(model)
        lease.release()
        // Dead, but not reaped: until told, the supervisor would hand it out again.
        launcher.engines(of: model.id)[0].die()
        #expect(supervisor.leaseNow(model)?.endpoint.port == lease.endpoint.port)
        #expect(await supervisor.engineFailed(lease))
        #expect(supervisor.leaseNow(model) == nil)
        let next = try await supervisor.acquire(model)
        #expect(next.endpoint.port != lease.endpoint.port)
        #expect(await supervisor.status().first?.restarts == 1)
        // The late reap of the dead one changes nothing.
        launcher.engines(of: model.id)[0].reap()
        try await Task.sleep(for: .milliseconds(50))
        #expect(await supervisor.status().first?.restarts == 1)
    }

    @Test func aLiveEngineThatRefusedAConnectionIsKept() async throws {
        let launcher = FakeLauncher()
        let supervisor = try Self.supervisor(launcher)
        let model = Self.model("a")
        let lease = try await supervisor.acquire(model)
        #expect(await supervisor.engineFailed(lease) == false)
        #expect(await supervisor.status().first?.restarts == 0)
        #expect(supervisor.leaseNow(model)?.endpoint.port == lease.endpoint.port)
    }

    @Test func theLeastRecentlyUsedIdleModelMakesRoomAndABusyOneIsNeverEvicted() async throws {
        let launcher = FakeLauncher()
        let supervisor = try Self.supervisor(launcher, maxLoaded: 2)
        let (a, b, c) = (Self.model("a"), Self.model("b"), Self.model("c"))
        try await supervisor.acquire(a).release()
        let busyB = try await supervisor.acquire(b)
        // Room for c: a is idle and least recently used.
        try await supervisor.acquire(c).release()
        #expect(await supervisor.status().map(\.model) == [b.id, c.id])
        #expect(try await Self.stopped(launcher.engines(of: a.id)[0]))
        // Now b is busy and c idle: a comes back in c's place, never b's.
        try await supervisor.acquire(a).release()
        #expect(await supervisor.status().map(\.model) == [a.id, b.id])
        // Both busy: c waits for one of them to go idle, and takes its place.
        let busyA = try await supervisor.acquire(a)
        let waiting = Task { try await supervisor.acquire(c) }
        try await Task.sleep(for: .milliseconds(200))
        #expect(await supervisor.status().map(\.model) == [a.id, b.id])
        #expect(!launcher.engines(of: a.id)[1].terminated && !launcher.engines(of: b.id)[0].terminated)
        busyA.release()
        (try await waiting.value).release()
        #expect(await supervisor.status().map(\.model) == [b.id, c.id])
        busyB.release()
    }

    @Test func withABudgetForOneModelTheSecondWaitsForTheFirstToGoIdle() async throws {
        let (launcher, estimator) = (FakeLauncher(), FakeEstimator())
        let supervisor = try Self.supervisor(launcher, estimator: estimator, budget: .bytes(1_000))
        let (a, b) = (Self.model("a"), Self.model("b"))
        estimator.set(600, for: a.id)
        estimator.set(600, for: b.id)
        let streaming = try await supervisor.acquire(a)
        let waiting = Task { try await supervisor.acquire(b) }
        try await Task.sleep(for: .milliseconds(200))
        // a is mid-stream: it stays, and b waits rather than fail.
        #expect(await supervisor.status().map(\.model) == [a.id])
        #expect(!launcher.engines(of: a.id)[0].terminated)
        streaming.release()
        let lease = try await waiting.value
        #expect(await supervisor.status().map(\.model) == [b.id])
        #expect(await supervisor.status().first?.estimateBytes == 600)
        #expect(try await Self.stopped(launcher.engines(of: a.id)[0]))
        lease.release()
    }

    @Test func modelsThatFitTogetherStayLoadedTogether() async throws {
        let (launcher, estimator) = (FakeLauncher(), FakeEstimator())
        let supervisor = try Self.supervisor(launcher, estimator: estimator, budget: .bytes(1_000))
        let (a, b, c) = (Self.model("a"), Self.model("b"), Self.model("c"))
        estimator.set(400, for: a.id)
        estimator.set(500, for: b.id)
        estimator.set(300, for: c.id)
        try await supervisor.acquire(a).release()
        try await supervisor.acquire(b).release()
        #expect(await supervisor.status().map(\.model) == [a.id, b.id])
        // 300 more: the least recently used (a) goes, b stays.
        try await supervisor.acquire(c).release()
        #expect(await supervisor.status().map(\.model) == [b.id, c.id])
    }

    @Test func aModelThatCannotFitEvenAloneIsRefusedWithItsEstimateAndTheBudget() async throws {
        let (launcher, estimator) = (FakeLauncher(), FakeEstimator())
        let supervisor = try Self.supervisor(launcher, estimator: estimator, budget: .bytes(1_000_000))
        let big = Self.model("big")
        estimator.set(3_000_000, for: big.id)
        do {
            _ = try await supervisor.acquire(big)
            Issue.record("a model larger than the budget loaded")
        } catch let error as BodhiError {
            #expect(error.status == 503)
            #expect(error.message.contains("3.0 MB") && error.message.contains("BODHI_MEMORY_BUDGET (1.0 MB)"))
        }
        #expect(launcher.launches(of: big.id) == 0)
    }

    @Test func aModelWaitingForRoomPastTheLoadTimeoutIsToldToRetry() async throws {
        let (launcher, estimator) = (FakeLauncher(), FakeEstimator())
        let supervisor = try Self.supervisor(launcher, estimator: estimator, budget: .bytes(1_000), loadTimeout: .milliseconds(200))
        let (a, b) = (Self.model("a"), Self.model("b"))
        estimator.set(600, for: a.id)
        estimator.set(600, for: b.id)
        let busy = try await supervisor.acquire(a)
        do {
            _ = try await supervisor.acquire(b)
            Issue.record("a model loaded beside a busy one past the budget")
        } catch let error as BodhiError {
            #expect(error.status == 503 && error.retryAfterSeconds != nil)
            #expect(error.message.contains("BODHI_MEMORY_BUDGET"))
        }
        busy.release()
    }

    @Test func theEngineGetsThePromptCacheItsEstimateCounts() async throws {
        let launcher = FakeLauncher()
        let supervisor = try Self.supervisor(launcher)
        let model = Self.model("a")
        try await supervisor.acquire(model).release()
        let arguments = launcher.engines(of: model.id)[0].arguments
        #expect(arguments.suffix(2) == ["--cache-ram", "1"])
        // A restart keeps it.
        launcher.engines(of: model.id)[0].crash()
        try await Self.until(supervisor, "the restart") { $0.first?.restarts == 1 && $0.first?.state == "ready" }
        #expect(launcher.engines(of: model.id)[1].arguments.suffix(2) == ["--cache-ram", "1"])
    }

    @Test func aModelsEmbeddingsAndRerankEnginesHaveOneSlotABatchAsLongAsItsContextAndGoWithTheModel() async throws {
        let launcher = FakeLauncher()
        let estimator = FakeEstimator()
        estimator.trained = 2048
        let supervisor = try Self.supervisor(launcher, estimator: estimator)
        let model = Self.model("a")
        let embeddings = model.companion(.embeddings)
        let rerank = embeddings.companion(.rerank)
        #expect(embeddings.id == model.id + "#embeddings" && embeddings.reportedName == model.id && embeddings.companion(.embeddings) == embeddings)
        #expect(rerank.id == model.id + "#rerank" && rerank.reportedName == model.id && rerank.companion(.generation) == model)
        #expect(supervisor.slots(for: embeddings) == 1 && supervisor.slots(for: rerank) == 1 && supervisor.slots(for: model) == 2)
        try await supervisor.acquire(model).release()
        try await supervisor.acquire(embeddings).release()
        try await supervisor.acquire(rerank).release()
        for pooled in [embeddings, rerank] {
            let arguments = launcher.engines(of: pooled.id)[0].arguments
            #expect(arguments.contains("--parallel") && arguments[arguments.firstIndex(of: "--parallel")! + 1] == "1")
            for flag in ["--ctx-size", "--batch-size", "--ubatch-size"] {
                #expect(arguments[arguments.firstIndex(of: flag)! + 1] == "2048")
            }
            // Only the rerank engine scores; `--reranking` after the fixed `--pooling mean` wins.
            #expect(arguments.contains("--reranking") == (pooled == rerank))
        }
        #expect(!launcher.engines(of: model.id)[0].arguments.contains("--reranking"))
        // Never more than the cap, whatever the model was trained for.
        estimator.trained = 131_072
        #expect(await supervisor.embeddingContext(Self.model("b").companion(.embeddings)) == EngineSupervisor.maxEmbeddingContext)
        // Unloading the model stops all three.
        await supervisor.unload(model.id)
        #expect(try await Self.stopped(launcher.engines(of: embeddings.id)[0]))
        #expect(try await Self.stopped(launcher.engines(of: rerank.id)[0]))
        #expect(await supervisor.status().isEmpty)
    }

    @Test func idleEnginesUnloadAfterKeepAliveAndBusyOnesStay() async throws {
        let launcher = FakeLauncher()
        let supervisor = try Self.supervisor(launcher, keepAlive: .idle(.seconds(60)))
        let (a, b) = (Self.model("a"), Self.model("b"))
        try await supervisor.acquire(a).release()
        let busy = try await supervisor.acquire(b)
        await supervisor.unloadIdleEngines(now: .now + .seconds(30))
        #expect(await supervisor.status().count == 2)
        await supervisor.unloadIdleEngines(now: .now + .seconds(61))
        #expect(await supervisor.status().map(\.model) == [b.id])
        busy.release()
        await supervisor.unloadIdleEngines(now: .now + .seconds(61))
        #expect(await supervisor.status().isEmpty)
    }

    @Test func keepAliveZeroUnloadsWhenTheLastRequestEnds() async throws {
        let launcher = FakeLauncher()
        let supervisor = try Self.supervisor(launcher, keepAlive: .idle(.zero))
        let model = Self.model("a")
        let first = try await supervisor.acquire(model)
        let second = try await supervisor.acquire(model)
        first.release()
        #expect(await supervisor.status().count == 1)
        second.release()
        try await Self.until(supervisor, "the unload") { $0.isEmpty }
        #expect(try await Self.stopped(launcher.engines(of: model.id)[0]))
    }

    @Test func aFailedLoadTellsEveryWaiterAndTheNextRequestTriesAgain() async throws {
        let launcher = FakeLauncher()
        let supervisor = try Self.supervisor(launcher)
        let model = Self.model("a")
        launcher.set(.fail("no such file"), for: model.id)
        let outcomes = await withTaskGroup(of: String.self) { group in
            for _ in 0..<3 {
                group.addTask {
                    do {
                        try await supervisor.acquire(model).release()
                        return "loaded"
                    } catch {
                        return "\(error)"
                    }
                }
            }
            return await group.reduce(into: []) { $0.append($1) }
        }
        #expect(outcomes.allSatisfy { $0.contains("no such file") })
        #expect(launcher.launches(of: model.id) == 1)
        #expect(await supervisor.status().isEmpty)
        launcher.set(.serve, for: model.id)
        try await supervisor.acquire(model).release()
        #expect(launcher.launches(of: model.id) == 2)
    }

    @Test func aLoadPastTheTimeoutFailsAndIsStopped() async throws {
        let launcher = FakeLauncher()
        let supervisor = try Self.supervisor(launcher, loadTimeout: .milliseconds(200))
        let model = Self.model("a")
        launcher.set(.hang, for: model.id)
        do {
            try await supervisor.acquire(model).release()
            Issue.record("a load that never finished succeeded")
        } catch let error as BodhiError {
            #expect(error.code == .engineLoadFailed)
            #expect(error.message.contains("BODHI_LOAD_TIMEOUT (200ms)"))
        }
        #expect(await supervisor.status().isEmpty)
    }

    @Test func aLoadingEngineShowsItsArgumentsAndUnloadingItCancelsTheLoad() async throws {
        let launcher = FakeLauncher()
        let supervisor = try Self.supervisor(launcher)
        let model = Self.model("a")
        launcher.set(.hang, for: model.id)
        let waiting = Task { try await supervisor.acquire(model) }
        try await Self.until(supervisor, "the load") { $0.first?.state == "loading" }
        #expect(await supervisor.status().first?.args.contains("/models/a.gguf") == true)
        await supervisor.unload(model.id)
        do {
            _ = try await waiting.value
            Issue.record("an unloaded model's load succeeded")
        } catch let error as BodhiError {
            #expect(error.status == 503)
        }
    }

    @Test func shutdownStopsEveryEngineAndRefusesNewRequests() async throws {
        let launcher = FakeLauncher()
        let supervisor = try Self.supervisor(launcher)
        let (a, b) = (Self.model("a"), Self.model("b"))
        try await supervisor.acquire(a).release()
        let busy = try await supervisor.acquire(b)
        await supervisor.shutdown()
        #expect(launcher.engines(of: a.id)[0].terminated && launcher.engines(of: b.id)[0].terminated)
        #expect(supervisor.leaseNow(a) == nil)
        do {
            _ = try await supervisor.acquire(a)
            Issue.record("a request was served after shutdown")
        } catch let error as BodhiError {
            #expect(error.status == 503)
        }
        busy.release()
    }

    @Test func fewerPlacesUnloadTheLeastRecentlyUsedIdleEngines() async throws {
        let launcher = FakeLauncher()
        let supervisor = try Self.supervisor(launcher, maxLoaded: 3)
        let (a, b, c) = (Self.model("a"), Self.model("b"), Self.model("c"))
        try await supervisor.acquire(a).release()
        try await supervisor.acquire(b).release()
        let busy = try await supervisor.acquire(c)
        var settings = try Settings.resolve(environment: ["HOME": NSHomeDirectory()])
        settings.maxLoadedModels = 1
        settings.keepAlive = .idle(.seconds(300))
        await supervisor.reconfigure(settings)
        #expect(await supervisor.status().map(\.model) == [c.id])
        busy.release()
    }
}
