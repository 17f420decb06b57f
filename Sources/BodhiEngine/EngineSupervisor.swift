import AsyncHTTPClient
import BodhiCore
import BodhiModels
import Foundation
import Logging
import Synchronization

public struct EngineConfiguration: Sendable {
    public var executable: String
    public var extraArguments: [String]
    public var parallel: Int
    public var keepAlive: KeepAlive
    public var maxLoadedModels: Int
    /// How much memory the loaded models may take together, by their estimates.
    public var memoryBudget: MemoryBudget
    public var logsDirectory: String
    /// How long a model may take to become ready before its load counts as failed.
    public var loadTimeout: Duration
    /// Consecutive crashes after which a model is no longer restarted on its own.
    public var maxConsecutiveCrashes = defaultMaxConsecutiveCrashes
    public static let defaultMaxConsecutiveCrashes = 5
    /// The wait before restarting after a second crash in a row; it doubles with each further one.
    public var restartBackoff: Duration = .milliseconds(500)

    public init(settings: Settings) {
        executable = settings.llamaServer
        extraArguments = settings.llamaArgs
        parallel = settings.parallel
        keepAlive = settings.keepAlive
        maxLoadedModels = settings.maxLoadedModels
        memoryBudget = settings.memoryBudget
        logsDirectory = settings.logsDirectory
        loadTimeout = settings.loadTimeout
    }
}

/// Where a ready engine listens, and the key it requires.
public struct EngineEndpoint: Sendable {
    public let host: String
    public let port: Int
    public let apiKey: String
    public let pid: pid_t
    /// The tokens one request's prompt and reply share (llama-server's context per slot); nil when
    /// the engine did not say.
    public let contextPerSlot: Int?
    /// The `Host` and `Authorization` values of every request to it, written once, not per request.
    let hostHeader: String
    let authorization: String

    public init(host: String, port: Int, apiKey: String, pid: pid_t, contextPerSlot: Int? = nil) {
        self.host = host
        self.port = port
        self.apiKey = apiKey
        self.pid = pid
        self.contextPerSlot = contextPerSlot
        hostHeader = "\(host):\(port)"
        authorization = "Bearer \(apiKey)"
    }

    public var baseURL: String { "http://\(host):\(port)" }
}

/// What `bodhi ps` and `GET /bodhi/v1/engines` show about a loaded model.
public struct EngineStatus: Sendable, Codable, Equatable {
    public let model: String
    public let state: String
    public let pid: Int32?
    public let port: Int?
    public let slots: Int
    public let inFlight: Int
    public let memoryBytes: Int64?
    /// What Bodhi expects it to take (weights, KV cache, prompt cache), which the memory budget counts.
    public let estimateBytes: Int64?
    public let idleSeconds: Double
    public let restarts: Int
    public let args: [String]
    /// How long the engine took to become ready; nil while it loads.
    public var loadSeconds: Double?

    enum CodingKeys: String, CodingKey {
        case model, state, pid, port, slots, args, restarts
        case loadSeconds = "load_seconds"
        case inFlight = "in_flight"
        case memoryBytes = "memory_bytes", estimateBytes = "estimate_bytes"
        case idleSeconds = "idle_seconds"
    }
}

/// Permission to send requests to one engine. Releasing it (explicitly, or when the last
/// reference goes away) tells the supervisor the request is over, which drives keep-alive.
public final class EngineLease: Sendable {
    public let endpoint: EngineEndpoint
    public let modelID: String
    /// Which of the model's engines (a restart is another).
    let generation: Int
    private let once: ReleaseOnce

    init(endpoint: EngineEndpoint, modelID: String, generation: Int, supervisor: EngineSupervisor) {
        self.endpoint = endpoint
        self.modelID = modelID
        self.generation = generation
        once = ReleaseOnce { supervisor.release(modelID: modelID, generation: generation) }
    }

    public func release() {
        once.release()
    }

    deinit {
        once.release()
    }
}

/// Decides which engines run: starts one per model on first use (through its `EngineLauncher`),
/// restarts it with backoff when it dies, unloads it when idle for keep-alive or when another
/// model needs its place (least recently used first, never one with requests in flight), and
/// stops every engine when Bodhi stops. What requests change (leases, in-flight counts, last use)
/// is in the `LeaseTable`, outside the actor; engines are asked about themselves by `EngineProbes`.
public actor EngineSupervisor {
    private struct Running: Sendable {
        let engine: any RunningEngine
        let readyAt: ContinuousClock.Instant
        let loadDuration: Duration
    }

    private enum Phase {
        case loading(Task<Running, any Error>, arguments: [String])
        case ready(Running)
    }

    private struct Engine {
        let model: EngineTarget
        /// Its extra engine arguments (the prompt cache's size among them), kept for restarts.
        let arguments: [String]
        let memory: EngineMemory?
        var phase: Phase
        var generation: Int
        var consecutiveCrashes = 0
        var restarts = 0
        /// A request's own keep-alive (Ollama's `keep_alive`), overriding the setting.
        var keepAlive: KeepAlive?

        /// What the memory budget counts for it: its estimate, or its file's size when the
        /// header could not be read.
        var neededBytes: Int64 { memory?.totalBytes ?? model.entry.sizeBytes }
    }

    private var configuration: EngineConfiguration
    private let launcher: any EngineLauncher
    private let estimator: any EngineMemoryEstimator
    private let probes: EngineProbes
    private let logger: Logger
    private var engines: [String: Engine] = [:]
    /// Every engine started and not yet known to be gone, by port, for the final stop.
    private var processes: [Int: any RunningEngine] = [:]
    private var nextGeneration = 1
    private var shuttingDown = false

    private let leases = LeaseTable()
    /// `shuttingDown`, for `leaseNow`.
    private let stopping = Atomic<Bool>(false)
    /// `configuration.parallel`, readable without waiting for the actor (admission asks per request).
    private let defaultSlots: Atomic<Int>

    public init(
        configuration: EngineConfiguration, launcher: any EngineLauncher, estimator: any EngineMemoryEstimator, probes: EngineProbes,
        logger: Logger
    ) {
        self.configuration = configuration
        defaultSlots = Atomic(configuration.parallel)
        self.launcher = launcher
        self.estimator = estimator
        self.probes = probes
        self.logger = logger
    }

    /// With `llama-server` children, as `configuration` says.
    public init(configuration: EngineConfiguration, http: HTTPClient, logger: Logger) {
        self.init(
            configuration: configuration,
            launcher: LlamaServerLauncher(executable: configuration.executable, logsDirectory: configuration.logsDirectory, http: http),
            estimator: GGUFMemoryEstimator(), probes: EngineProbes(http: http), logger: logger)
    }

    // MARK: Leasing

    /// The requests `model`'s engine serves at once.
    public nonisolated func slots(for model: EngineTarget) -> Int {
        // An embeddings or rerank engine's one slot has a batch as long as its context.
        model.pools ? 1 : model.overrides.parallel ?? defaultSlots.load(ordering: .relaxed)
    }

    /// An engine for `model`, loading it first if needed. Concurrent callers for a model
    /// that is loading all wait for the same load.
    public func acquire(_ model: EngineTarget) async throws -> EngineLease {
        while true {
            if shuttingDown { throw BodhiError.engineUnavailable("Bodhi is shutting down.", retryAfterSeconds: 5) }
            guard let engine = engines[model.id] else {
                try await makeRoomAndLoad(model)
                continue
            }
            switch engine.phase {
            case .ready:
                // Not leased only while Bodhi stops, checked above as it began.
                guard let lease = leaseNow(model) else {
                    throw BodhiError.engineUnavailable("Bodhi is shutting down.", retryAfterSeconds: 5)
                }
                return lease
            case .loading(let task, _):
                _ = try await task.value
                // The engine may have been unloaded or replaced while this caller waited.
                guard let current = engines[model.id], current.generation == engine.generation,
                      case .ready = current.phase, let lease = leaseNow(model) else { continue }
                return lease
            }
        }
    }

    /// A lease on `model`'s engine if it is ready now; nil while it loads, is not loaded, or Bodhi
    /// stops (then `acquire` loads it, or says why not).
    public nonisolated func leaseNow(_ model: EngineTarget) -> EngineLease? {
        guard !stopping.load(ordering: .relaxed), let ready = leases.lease(model.id) else { return nil }
        return EngineLease(endpoint: ready.endpoint, modelID: model.id, generation: ready.generation, supervisor: self)
    }

    nonisolated func release(modelID: String, generation: Int) {
        if leases.release(modelID, generation: generation) { Task { await self.unloadIfIdle(modelID) } }
    }

    private func lastUsed(_ engine: Engine) -> ContinuousClock.Instant {
        leases.entry(engine.model.id)?.lastUsed ?? .now
    }

    private func unloadIfIdle(_ modelID: String) {
        if leases.takeIfIdle(modelID) { unloadEngine(modelID) }
    }

    /// Drops a model's engine from the books (the caller stops its process, if any).
    private func forget(engine modelID: String) {
        engines[modelID] = nil
        leases.remove(modelID)
    }

    /// Each engine's `unloadsWhenIdle`, after its keep-alive or the setting changed.
    private func refreshUnloadsWhenIdle() {
        leases.setUnloadsWhenIdle(engines.mapValues { ($0.keepAlive ?? configuration.keepAlive) == .idle(.zero) })
    }

    // MARK: Loading

    /// Loads `model` once there is room for it: its memory estimate within `BODHI_MEMORY_BUDGET`
    /// with the engines that stay, and a place within `BODHI_MAX_LOADED_MODELS`. Idle engines make
    /// room, least recently used first; busy and loading ones never do, so while they hold the room
    /// this waits (up to `BODHI_LOAD_TIMEOUT`) for them to go idle. A model that could not fit even
    /// alone is refused at once. Returns without loading when another caller started it meanwhile.
    private func makeRoomAndLoad(_ model: EngineTarget) async throws {
        var baseArguments = configuration.extraArguments + model.overrides.arguments
        if model.role == .generation, let projector = model.entry.projector { baseArguments += ["--mmproj", projector] }
        if model.pools {
            // One slot whose batch holds a whole input: llama-server pools an input in one batch.
            let context = String(await embeddingContext(model))
            baseArguments += ["--ctx-size", context, "--batch-size", context, "--ubatch-size", context]
            if model.role == .rerank { baseArguments.append("--reranking") }
        }
        let memory = await estimator.estimate(model, slots: slots(for: model), arguments: baseArguments)
        guard engines[model.id] == nil, !shuttingDown else { return }
        let needed = memory?.totalBytes ?? model.entry.sizeBytes
        if let budget = configuration.memoryBudget.limit, needed > budget {
            throw BodhiError(
                .engineUnavailable, status: 503,
                "The model '\(model.id)' needs about \(memory?.explained ?? ByteSize.format(needed)) to load, more than "
                    + "BODHI_MEMORY_BUDGET (\(configuration.memoryBudget)) allows even with no other model loaded. Raise the budget, "
                    + "or give the model a smaller context (-c) or fewer slots (BODHI_PARALLEL).")
        }
        let deadline = ContinuousClock.now + configuration.loadTimeout
        var waited = false
        while !makeRoom(for: model, needing: needed) {
            guard ContinuousClock.now < deadline else { throw noRoom(for: model, needing: needed) }
            if !waited {
                logger.info("waiting for loaded models to go idle to make room", metadata: ["model": "\(model.id)", "needs": "\(ByteSize.format(needed))"])
                waited = true
            }
            try await Task.sleep(for: .milliseconds(50))
            guard engines[model.id] == nil, !shuttingDown else { return }
        }
        try startLoading(model, arguments: baseArguments + (memory?.promptCacheArguments ?? []), memory: memory)
    }

    /// Unloads idle engines, least recently used first, until `model` fits beside the others;
    /// false, with nothing unloaded, when even unloading every idle one would not make room.
    private func makeRoom(for model: EngineTarget, needing needed: Int64) -> Bool {
        while true {
            let others = engines(besides: model)
            let budget = configuration.memoryBudget.limit ?? .max
            let used = Self.neededBytes(of: others)
            if others.count < configuration.maxLoadedModels, used <= budget - needed { return true }
            let idle = readyByLastUse(others).filter { leases.entry($0.model.id)?.inFlight == 0 }
            let freeable = Self.neededBytes(of: idle)
            guard others.count - idle.count < configuration.maxLoadedModels, used - freeable <= budget - needed,
                  let victim = idle.first(where: { leases.takeIfIdle($0.model.id) })
            else { return false }
            logger.info("unloading least recently used model to make room", metadata: ["model": "\(victim.model.id)"])
            unloadEngine(victim.model.id)
        }
    }

    /// Why `model` found no room in time: what holds it.
    private func noRoom(for model: EngineTarget, needing needed: Int64) -> BodhiError {
        let others = engines(besides: model)
        if others.count >= configuration.maxLoadedModels {
            return BodhiError.engineUnavailable(
                "All \(configuration.maxLoadedModels) loaded models are busy (BODHI_MAX_LOADED_MODELS); retry shortly.", retryAfterSeconds: 2)
        }
        let used = Self.neededBytes(of: others)
        return BodhiError.engineUnavailable(
            "The model '\(model.id)' needs about \(ByteSize.format(needed)); the busy models hold \(ByteSize.format(used)) of "
                + "BODHI_MEMORY_BUDGET (\(configuration.memoryBudget)). Retry shortly.",
            retryAfterSeconds: 2)
    }

    /// The engines other than `model`'s. (A crashed engine being restarted holds its own place; it
    /// does not compete for room.)
    private func engines(besides model: EngineTarget) -> [Engine] {
        engines.values.filter { $0.model.id != model.id }
    }

    /// What the memory budget counts for `engines` together.
    private static func neededBytes(of engines: some Sequence<Engine>) -> Int64 {
        engines.reduce(0) { $0 + $1.neededBytes }
    }

    private func startLoading(_ model: EngineTarget, arguments: [String], memory: EngineMemory?, after delay: Duration = .zero) throws {
        let generation = nextGeneration
        nextGeneration += 1
        let plan = try launcher.plan(model, slots: slots(for: model), extraArguments: arguments)
        let task = Task { try await self.load(model, generation: generation, plan: plan, after: delay) }
        // A restart keeps the crash history that drives its backoff.
        let previous = engines[model.id]
        engines[model.id] = Engine(
            model: model, arguments: arguments, memory: memory,
            phase: .loading(task, arguments: EngineArguments.redacted(plan.arguments)), generation: generation,
            consecutiveCrashes: previous?.consecutiveCrashes ?? 0, restarts: previous?.restarts ?? 0)
        leases.begin(model.id, generation: generation)
        refreshUnloadsWhenIdle()
    }

    /// The ready engines among `candidates`, least recently used first.
    private func readyByLastUse(_ candidates: some Sequence<Engine>) -> [Engine] {
        candidates.filter { engine in
            if case .ready = engine.phase { return true }
            return false
        }.sorted { lastUsed($0) < lastUsed($1) }
    }

    private func load(_ model: EngineTarget, generation: Int, plan: EngineLaunchPlan, after delay: Duration) async throws -> Running {
        do {
            if delay > .zero { try await Task.sleep(for: delay) }
            let began = ContinuousClock.now
            logger.info("loading model", metadata: ["model": "\(model.id)"])
            let engine = try await launchWithinTimeout(plan, model)
            let running = Running(engine: engine, readyAt: .now, loadDuration: .now - began)
            guard engines[model.id]?.generation == generation, !shuttingDown else {
                processes[engine.endpoint.port] = nil
                await engine.terminate()
                throw BodhiError.engineUnavailable("The model '\(model.id)' was unloaded while it was loading; retry.")
            }
            engines[model.id]!.phase = .ready(running)
            leases.ready(model.id, generation: generation, at: engine.endpoint)
            logger.info("model ready", metadata: ["model": "\(model.id)", "pid": "\(engine.endpoint.pid)", "port": "\(engine.endpoint.port)"])
            Task { await self.watch(engine, modelID: model.id, generation: generation) }
            return running
        } catch {
            if engines[model.id]?.generation == generation { forget(engine: model.id) }
            if error is CancellationError {
                throw BodhiError.engineUnavailable("The model '\(model.id)' was unloaded while it was loading; retry.")
            }
            throw error
        }
    }

    /// The launch, given up (and so stopped by the launcher) when it takes longer than
    /// `BODHI_LOAD_TIMEOUT`, or when the load is cancelled.
    private func launchWithinTimeout(_ plan: EngineLaunchPlan, _ model: EngineTarget) async throws -> any RunningEngine {
        let (launcher, timeout) = (launcher, configuration.loadTimeout)
        let launched = try await withThrowingTaskGroup(of: (any RunningEngine)?.self) { group in
            group.addTask { try await launcher.launch(plan, for: model) }
            group.addTask {
                try await Task.sleep(for: timeout)
                return nil
            }
            defer { group.cancelAll() }
            return try await group.next()!
        }
        guard let launched else {
            throw BodhiError.engineLoadFailed(model: model.id, reason: "it was not ready within BODHI_LOAD_TIMEOUT (\(KeepAlive.idle(timeout)))")
        }
        processes[launched.endpoint.port] = launched
        return launched
    }

    // MARK: Crashes and unloading

    private func watch(_ engine: any RunningEngine, modelID: String, generation: Int) async {
        let status = await engine.waitForExit()
        processes[engine.endpoint.port] = nil
        engineExited(modelID: modelID, generation: generation, status: status)
    }

    /// A request to `lease`'s engine failed before any answer (it could not connect, or the
    /// connection closed). If the engine has died, its crash is handled now (a restart begins), so
    /// that `acquire` waits for the new engine instead of handing out the dead one again until the
    /// exit is noticed on its own. Whether the engine has died.
    public func engineFailed(_ lease: EngineLease) async -> Bool {
        guard let engine = engines[lease.modelID], engine.generation == lease.generation else {
            // Replaced already: the exit was noticed, and the engine is being restarted.
            return true
        }
        guard case .ready(let running) = engine.phase else { return false }
        // The exit is reaped on another thread, moments after the engine died.
        guard let status = await running.engine.exitStatus(within: .seconds(2)) else { return false }
        engineExited(modelID: lease.modelID, generation: lease.generation, status: status)
        return true
    }

    /// A ready engine's process ended (once per engine: a later call for the same one does nothing).
    private func engineExited(modelID: String, generation: Int, status: ChildProcess.ExitStatus) {
        guard !shuttingDown, var engine = engines[modelID], engine.generation == generation,
              case .ready(let running) = engine.phase else { return }
        // A crash after a long healthy run starts the backoff over.
        if ContinuousClock.now - running.readyAt > .seconds(60) { engine.consecutiveCrashes = 0 }
        engine.consecutiveCrashes += 1
        engine.restarts += 1
        engines[modelID] = engine
        logger.error("engine stopped unexpectedly", metadata: [
            "model": "\(modelID)", "pid": "\(running.engine.endpoint.pid)", "status": "\(status)", "crashes": "\(engine.consecutiveCrashes)",
        ])
        guard engine.consecutiveCrashes <= configuration.maxConsecutiveCrashes else {
            logger.error("engine keeps crashing; not restarting it until the next request", metadata: ["model": "\(modelID)"])
            forget(engine: modelID)
            return
        }
        do {
            try startLoading(
                engine.model, arguments: engine.arguments, memory: engine.memory,
                after: Self.backoff(afterCrashes: engine.consecutiveCrashes, first: configuration.restartBackoff))
        } catch {
            forget(engine: modelID)
            logger.error("cannot restart engine", metadata: ["model": "\(modelID)", "error": "\(error)"])
        }
    }

    /// No delay for a first crash, then `first` (0.5 s) doubling up to 60 times that (30 s).
    static func backoff(afterCrashes crashes: Int, first: Duration = .milliseconds(500)) -> Duration {
        guard crashes > 1 else { return .zero }
        return min(first * (1 << min(crashes - 2, 6)), first * 60)
    }

    /// Takes changed settings: keep-alive and the loaded-model limit apply at once (an idle
    /// engine past the new keep-alive unloads at the next check), slots and extra arguments
    /// to engines started afterwards.
    public func reconfigure(_ settings: Settings) {
        configuration.keepAlive = settings.keepAlive
        configuration.maxLoadedModels = settings.maxLoadedModels
        configuration.parallel = settings.parallel
        defaultSlots.store(settings.parallel, ordering: .relaxed)
        configuration.extraArguments = settings.llamaArgs
        configuration.loadTimeout = settings.loadTimeout
        configuration.memoryBudget = settings.memoryBudget
        refreshUnloadsWhenIdle()
        unloadIdleEngines()
        // Fewer places than loaded models, or less memory than they take: the least recently used
        // idle ones go.
        let budget = configuration.memoryBudget.limit ?? .max
        for engine in readyByLastUse(engines.values)
        where engines.count > configuration.maxLoadedModels || Self.neededBytes(of: engines.values) > budget {
            unloadIfIdle(engine.model.id)
        }
    }

    /// Each loaded engine's own `/health`: ready engines are asked (2 s at most), loading ones
    /// reported as loading.
    public func probe() async -> [(engine: String, healthy: Bool, detail: String)] {
        var results: [(engine: String, healthy: Bool, detail: String)] = []
        for (id, engine) in engines.sorted(by: { $0.key < $1.key }) {
            guard case .ready(let running) = engine.phase else {
                results.append((id, true, "loading"))
                continue
            }
            let answer = await probes.health(of: running.engine.endpoint)
            results.append((id, answer.healthy, answer.detail))
        }
        return results
    }

    /// Each ready engine's own Prometheus exposition (llama-server's `/metrics`).
    public func engineMetrics() async -> [(model: String, text: String)] {
        var results: [(model: String, text: String)] = []
        for (id, engine) in engines.sorted(by: { $0.key < $1.key }) {
            guard case .ready(let running) = engine.phase, let text = await probes.metrics(of: running.engine.endpoint) else { continue }
            results.append((id, text))
        }
        return results
    }

    /// Stops every engine serving the file at `path`: the model's own and its aliases'.
    public func unload(usingFile path: String) {
        for (id, engine) in engines where engine.model.path == path { unloadEngine(id) }
    }

    /// The longest input (in tokens) `model`'s embeddings or reranking engine takes: the model's
    /// trained context, at most `maxEmbeddingContext`, or what an alias's context size says.
    public func embeddingContext(_ model: EngineTarget) async -> Int {
        if let chosen = model.overrides.contextSize { return chosen }
        return min(await estimator.trainedContext(model) ?? Self.maxEmbeddingContext, Self.maxEmbeddingContext)
    }

    /// Whether `model`'s file declares `capability` (`GGUFModelInfo.capabilities`); nil when its
    /// header cannot be read.
    public func declares(_ capability: String, _ model: EngineTarget) async -> Bool? {
        await estimator.capabilities(model)?.contains(capability)
    }

    /// Embedding inputs beyond this many tokens are cut (or refused) even where a model was
    /// trained for more: an engine's batch holds a whole input, and its buffers grow with it.
    public static let maxEmbeddingContext = 8192

    /// Stops a model's engine and its embeddings and reranking engines now; requests still running
    /// on them fail.
    public func unload(_ modelID: String) {
        for id in EngineTarget.companionIDs(of: modelID) { unloadEngine(id) }
    }

    private func unloadEngine(_ modelID: String) {
        leases.remove(modelID)
        guard let engine = engines.removeValue(forKey: modelID) else { return }
        logger.info("unloading model", metadata: ["model": "\(modelID)"])
        switch engine.phase {
        case .loading(let task, _):
            task.cancel()
        case .ready(let running):
            Task { await running.engine.terminate() }
        }
    }

    /// Unloads models idle for longer than keep-alive; runs until cancelled, then stops
    /// every engine.
    public func run() async {
        while !Task.isCancelled {
            unloadIdleEngines()
            try? await Task.sleep(for: .milliseconds(500))
        }
        await shutdown()
    }

    /// Sets the keep-alive of a loaded engine (until it unloads), as Ollama's `keep_alive` does;
    /// zero unloads it once idle, at once if it is idle now.
    public func setKeepAlive(_ keepAlive: KeepAlive, for engineID: String) {
        for id in EngineTarget.companionIDs(of: engineID) where engines[id] != nil {
            engines[id]!.keepAlive = keepAlive
            refreshUnloadsWhenIdle()
            if case .idle(.zero) = keepAlive { unloadIfIdle(id) }
        }
    }

    /// When an engine unloads for idleness; nil for never.
    public func expiry(of engineID: String) -> ContinuousClock.Instant? {
        guard let engine = engines[engineID], case .idle(let keepAlive) = engine.keepAlive ?? configuration.keepAlive else { return nil }
        return lastUsed(engine) + keepAlive
    }

    func unloadIdleEngines(now: ContinuousClock.Instant = .now) {
        for (id, engine) in engines {
            guard case .idle(let keepAlive) = engine.keepAlive ?? configuration.keepAlive, case .ready = engine.phase,
                  let current = leases.entry(id), current.inFlight == 0, now - current.lastUsed >= keepAlive else { continue }
            unloadIfIdle(id)
        }
    }

    /// Stops every engine: each launch under way is cancelled (its launcher stops what it
    /// started), and every engine that runs gets SIGTERM, then SIGKILL after a grace period.
    public func shutdown() async {
        shuttingDown = true
        stopping.store(true, ordering: .relaxed)
        let loads = engines.values.compactMap { engine -> Task<Running, any Error>? in
            if case .loading(let task, _) = engine.phase { return task }
            return nil
        }
        for load in loads { load.cancel() }
        engines.removeAll()
        leases.removeAll()
        for load in loads { _ = try? await load.value }
        let all = Array(processes.values)
        await withTaskGroup(of: Void.self) { group in
            for engine in all { group.addTask { await engine.terminate() } }
        }
    }

    // MARK: Status

    /// `status()` with the memory budget it is held to, read together.
    public func statusWithBudget() -> (engines: [EngineStatus], budget: MemoryBudget) {
        (status(), configuration.memoryBudget)
    }

    public func status() -> [EngineStatus] {
        let now = ContinuousClock.now
        return engines.values.sorted { $0.model.id < $1.model.id }.map { engine in
            let current = leases.entry(engine.model.id)
            let inFlight = current?.inFlight ?? 0
            let idle = inFlight > 0 ? 0 : Self.seconds(now - (current?.lastUsed ?? now))
            switch engine.phase {
            case .loading(_, let arguments):
                return EngineStatus(
                    model: engine.model.id, state: "loading", pid: nil, port: nil, slots: slots(for: engine.model),
                    inFlight: inFlight, memoryBytes: nil, estimateBytes: engine.memory?.totalBytes, idleSeconds: idle,
                    restarts: engine.restarts, args: arguments)
            case .ready(let running):
                return EngineStatus(
                    model: engine.model.id, state: "ready", pid: running.engine.endpoint.pid, port: running.engine.endpoint.port,
                    slots: slots(for: engine.model), inFlight: inFlight,
                    memoryBytes: running.engine.residentMemoryBytes, estimateBytes: engine.memory?.totalBytes, idleSeconds: idle,
                    restarts: engine.restarts, args: running.engine.arguments,
                    loadSeconds: Self.seconds(running.loadDuration))
            }
        }
    }

    private static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }
}
