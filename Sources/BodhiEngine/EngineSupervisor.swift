import AsyncHTTPClient
import BodhiCore
import BodhiModels
import Foundation
import Logging
import NIOCore
import Synchronization

public struct EngineConfiguration: Sendable {
    public var executable: String
    public var extraArguments: [String]
    public var parallel: Int
    public var keepAlive: KeepAlive
    public var maxLoadedModels: Int
    public var logsDirectory: String
    /// How long a model may take to become ready before its load counts as failed.
    public var loadTimeout: Duration = .seconds(600)
    /// Consecutive crashes after which a model is no longer restarted on its own.
    public var maxConsecutiveCrashes = 5

    public init(settings: Settings) {
        executable = settings.llamaServer
        extraArguments = settings.llamaArgs
        parallel = settings.parallel
        keepAlive = settings.keepAlive
        maxLoadedModels = settings.maxLoadedModels
        logsDirectory = settings.logsDirectory
    }
}

/// Where a ready engine listens, and the key it requires.
public struct EngineEndpoint: Sendable {
    public let host: String
    public let port: Int
    public let apiKey: String
    public let pid: pid_t
    /// The `Host` and `Authorization` values of every request to it, written once, not per request.
    let hostHeader: String
    let authorization: String

    public init(host: String, port: Int, apiKey: String, pid: pid_t) {
        self.host = host
        self.port = port
        self.apiKey = apiKey
        self.pid = pid
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
    public let idleSeconds: Double
    public let restarts: Int
    public let args: [String]
    /// How long the engine took to become ready; nil while it loads.
    public var loadSeconds: Double?

    enum CodingKeys: String, CodingKey {
        case model, state, pid, port, slots, args, restarts
        case loadSeconds = "load_seconds"
        case inFlight = "in_flight"
        case memoryBytes = "memory_bytes"
        case idleSeconds = "idle_seconds"
    }
}

/// Permission to send requests to one engine. Releasing it (explicitly, or when the last
/// reference goes away) tells the supervisor the request is over, which drives keep-alive.
public final class EngineLease: Sendable {
    public let endpoint: EngineEndpoint
    public let modelID: String
    private let once: ReleaseOnce

    init(endpoint: EngineEndpoint, modelID: String, generation: Int, supervisor: EngineSupervisor) {
        self.endpoint = endpoint
        self.modelID = modelID
        once = ReleaseOnce { supervisor.release(modelID: modelID, generation: generation) }
    }

    public func release() {
        once.release()
    }

    deinit {
        once.release()
    }
}

/// Runs one `llama-server` per loaded model: starts it on first use, waits until it is
/// healthy, restarts it with backoff when it dies, unloads it when idle for keep-alive or
/// when another model needs its place (least recently used first), and stops every child
/// when Bodhi stops.
public actor EngineSupervisor {
    private struct Running: Sendable {
        let child: ChildProcess
        /// Made once per engine and handed to every lease.
        let endpoint: EngineEndpoint
        let arguments: [String]
        let readyAt: ContinuousClock.Instant
        let loadDuration: Duration
    }

    private enum Phase {
        case loading(Task<Running, any Error>, arguments: [String])
        case ready(Running)
    }

    private struct Engine {
        let model: EngineTarget
        var phase: Phase
        var generation: Int
        var consecutiveCrashes = 0
        var restarts = 0
        /// A request's own keep-alive (Ollama's `keep_alive`), overriding the setting.
        var keepAlive: KeepAlive?
    }

    private var configuration: EngineConfiguration
    private let http: HTTPClient
    private let logger: Logger
    private var engines: [String: Engine] = [:]
    private var children: [pid_t: ChildProcess] = [:]
    private var nextGeneration = 1
    private var shuttingDown = false

    /// What requests change of an engine, under a lock rather than in the actor, so that a request
    /// for a ready engine takes its lease without waiting for the actor (`leaseNow`). An engine
    /// has an entry exactly while it has one in `engines`, of the same generation.
    private struct Usage {
        let generation: Int
        /// Set once the engine is ready.
        var endpoint: EngineEndpoint?
        var inFlight = 0
        var lastUsed: ContinuousClock.Instant
        /// Its keep-alive is zero: it unloads as soon as its last request ends.
        var unloadsWhenIdle = false
    }

    private let usage = Mutex<[String: Usage]>([:])
    /// `shuttingDown`, for `leaseNow`.
    private let stopping = Atomic<Bool>(false)
    /// `configuration.parallel`, readable without waiting for the actor (admission asks per request).
    private let defaultSlots: Atomic<Int>

    public init(configuration: EngineConfiguration, http: HTTPClient, logger: Logger) {
        self.configuration = configuration
        defaultSlots = Atomic(configuration.parallel)
        self.http = http
        self.logger = logger
    }

    // MARK: Leasing

    /// The requests `model`'s engine serves at once.
    public nonisolated func slots(for model: EngineTarget) -> Int {
        model.overrides.parallel ?? defaultSlots.load(ordering: .relaxed)
    }

    /// An engine for `model`, loading it first if needed. Concurrent callers for a model
    /// that is loading all wait for the same load.
    public func acquire(_ model: EngineTarget) async throws -> EngineLease {
        while true {
            if shuttingDown { throw BodhiError.engineUnavailable("Bodhi is shutting down.", retryAfterSeconds: 5) }
            if engines[model.id] == nil { try startLoading(model) }
            guard let engine = engines[model.id] else { continue }
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
        guard !stopping.load(ordering: .relaxed) else { return nil }
        let ready = usage.withLock { usage -> (endpoint: EngineEndpoint, generation: Int)? in
            guard let endpoint = usage[model.id]?.endpoint else { return nil }
            usage[model.id]!.inFlight += 1
            usage[model.id]!.lastUsed = .now
            return (endpoint, usage[model.id]!.generation)
        }
        return ready.map { EngineLease(endpoint: $0.endpoint, modelID: model.id, generation: $0.generation, supervisor: self) }
    }

    nonisolated func release(modelID: String, generation: Int) {
        let unloads = usage.withLock { usage -> Bool in
            guard var entry = usage[modelID], entry.generation == generation else { return false }
            entry.inFlight = max(0, entry.inFlight - 1)
            entry.lastUsed = .now
            usage[modelID] = entry
            return entry.inFlight == 0 && entry.unloadsWhenIdle
        }
        if unloads { Task { await self.unloadIfIdle(modelID) } }
    }

    private nonisolated func entry(of modelID: String) -> Usage? {
        usage.withLock { $0[modelID] }
    }

    private func lastUsed(_ engine: Engine) -> ContinuousClock.Instant {
        entry(of: engine.model.id)?.lastUsed ?? .now
    }

    /// Claims an engine with no request running for unloading: from here no request leases it.
    private func takeIfIdle(_ modelID: String) -> Bool {
        usage.withLock { usage in
            guard let entry = usage[modelID], entry.inFlight == 0 else { return false }
            usage[modelID] = nil
            return true
        }
    }

    private func unloadIfIdle(_ modelID: String) {
        if takeIfIdle(modelID) { unload(modelID) }
    }

    /// Drops a model's engine from the books (the caller stops its process, if any).
    private func forget(engine modelID: String) {
        engines[modelID] = nil
        usage.withLock { $0[modelID] = nil }
    }

    /// Each engine's `unloadsWhenIdle`, after its keep-alive or the setting changed.
    private func refreshUnloadsWhenIdle() {
        usage.withLock { usage in
            for (id, engine) in engines where usage[id] != nil {
                usage[id]!.unloadsWhenIdle = (engine.keepAlive ?? configuration.keepAlive) == .idle(.zero)
            }
        }
    }

    // MARK: Loading

    private func startLoading(_ model: EngineTarget, after delay: Duration = .zero) throws {
        // A crashed engine being restarted still holds its own entry; it does not compete for room.
        let others = engines.values.filter { $0.model.id != model.id }
        if others.count >= configuration.maxLoadedModels {
            guard let leastRecent = readyByLastUse(others).first(where: { takeIfIdle($0.model.id) }) else {
                throw BodhiError.engineUnavailable(
                    "All \(configuration.maxLoadedModels) loaded models are busy (BODHI_MAX_LOADED_MODELS); retry shortly.",
                    retryAfterSeconds: 2)
            }
            logger.info("unloading least recently used model to make room", metadata: ["model": "\(leastRecent.model.id)"])
            unload(leastRecent.model.id)
        }
        let generation = nextGeneration
        nextGeneration += 1
        let port: Int
        do { port = try FreePort.find() } catch {
            throw BodhiError.engineUnavailable("No free local port for the engine: \(error)")
        }
        let apiKey = Self.randomKey()
        let arguments = EngineArguments.build(
            modelPath: model.path, modelName: model.id, port: port,
            parallel: slots(for: model),
            extra: configuration.extraArguments + model.overrides.arguments)
        let task = Task { try await self.load(model, generation: generation, port: port, apiKey: apiKey, arguments: arguments, after: delay) }
        // A restart keeps the crash history that drives its backoff.
        let previous = engines[model.id]
        engines[model.id] = Engine(
            model: model, phase: .loading(task, arguments: arguments), generation: generation,
            consecutiveCrashes: previous?.consecutiveCrashes ?? 0, restarts: previous?.restarts ?? 0)
        usage.withLock { usage in
            usage[model.id] = Usage(generation: generation, lastUsed: usage[model.id]?.lastUsed ?? .now)
        }
        refreshUnloadsWhenIdle()
    }

    /// The ready engines among `candidates`, least recently used first.
    private func readyByLastUse(_ candidates: some Sequence<Engine>) -> [Engine] {
        candidates.filter { engine in
            if case .ready = engine.phase { return true }
            return false
        }.sorted { lastUsed($0) < lastUsed($1) }
    }

    private func load(
        _ model: EngineTarget, generation: Int, port: Int, apiKey: String, arguments: [String], after delay: Duration
    ) async throws -> Running {
        do {
            if delay > .zero { try await Task.sleep(for: delay) }
            let running = try await spawnAndWait(model, port: port, apiKey: apiKey, arguments: arguments)
            guard engines[model.id]?.generation == generation, !shuttingDown else {
                await running.child.terminate()
                throw BodhiError.engineUnavailable("The model '\(model.id)' was unloaded while it was loading; retry.")
            }
            engines[model.id]!.phase = .ready(running)
            usage.withLock { $0[model.id]?.endpoint = running.endpoint }
            logger.info("model ready", metadata: ["model": "\(model.id)", "pid": "\(running.child.pid)", "port": "\(port)"])
            Task { await self.watch(running.child, modelID: model.id, generation: generation) }
            return running
        } catch {
            if engines[model.id]?.generation == generation { forget(engine: model.id) }
            if error is CancellationError {
                throw BodhiError.engineUnavailable("The model '\(model.id)' was unloaded while it was loading; retry.")
            }
            throw error
        }
    }

    private func spawnAndWait(_ model: EngineTarget, port: Int, apiKey: String, arguments: [String]) async throws -> Running {
        let started = ContinuousClock.now
        try FileManager.default.createDirectory(atPath: configuration.logsDirectory, withIntermediateDirectories: true)
        let logPath = configuration.logsDirectory + "/" + Self.logFileName(for: model.id)
        let logStart = (try? FileManager.default.attributesOfItem(atPath: logPath)[.size] as? Int) ?? 0
        let header = "\n=== \(Date()) bodhi starts: \(configuration.executable) \(EngineArguments.redacted(arguments).joined(separator: " "))\n"
        appendToLog(logPath, header)

        let child: ChildProcess
        do {
            child = try ChildProcess(
                executable: configuration.executable, arguments: arguments,
                environment: EngineArguments.environment(inheriting: ProcessInfo.processInfo.environment, apiKey: apiKey),
                logPath: logPath)
        } catch {
            throw BodhiError.engineLoadFailed(model: model.id, reason: "\(error)")
        }
        children[child.pid] = child
        Task {
            _ = await child.waitForExit()
            self.forget(child.pid)
        }
        logger.info("loading model", metadata: ["model": "\(model.id)", "pid": "\(child.pid)", "log": "\(logPath)"])
        do {
            try await waitUntilHealthy(child, port: port, apiKey: apiKey, model: model, logPath: logPath, logStart: logStart)
        } catch {
            await child.terminate(grace: .seconds(1))
            throw error
        }
        let ready = ContinuousClock.now
        return Running(
            child: child, endpoint: EngineEndpoint(host: "127.0.0.1", port: port, apiKey: apiKey, pid: child.pid),
            arguments: arguments, readyAt: ready, loadDuration: ready - started)
    }

    private func forget(_ pid: pid_t) {
        children[pid] = nil
    }

    /// Polls `/health` until the engine answers 200. An engine that exits first failed to
    /// load: its log says why.
    private func waitUntilHealthy(
        _ child: ChildProcess, port: Int, apiKey: String, model: EngineTarget, logPath: String, logStart: Int
    ) async throws {
        let deadline = ContinuousClock.now + configuration.loadTimeout
        var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)/health")
        request.headers.add(name: "Authorization", value: "Bearer \(apiKey)")
        while ContinuousClock.now < deadline {
            try Task.checkCancellation()
            if let status = child.exitStatusIfExited {
                let reason = Self.failureReason(logPath: logPath, from: logStart) ?? "the engine \(status)"
                throw BodhiError.engineLoadFailed(model: model.id, reason: reason)
            }
            if let response = try? await http.execute(request, timeout: .seconds(2)) {
                _ = try? await response.body.collect(upTo: 64 * 1024)
                if response.status == .ok { return }
            }
            try await Task.sleep(for: .milliseconds(25))
        }
        throw BodhiError.engineLoadFailed(model: model.id, reason: "it was not ready after \(configuration.loadTimeout)")
    }

    // MARK: Crashes and unloading

    private func watch(_ child: ChildProcess, modelID: String, generation: Int) async {
        let status = await child.waitForExit()
        guard !shuttingDown, var engine = engines[modelID], engine.generation == generation,
              case .ready(let running) = engine.phase else { return }
        // A crash after a long healthy run starts the backoff over.
        if ContinuousClock.now - running.readyAt > .seconds(60) { engine.consecutiveCrashes = 0 }
        engine.consecutiveCrashes += 1
        engine.restarts += 1
        engines[modelID] = engine
        logger.error("engine stopped unexpectedly", metadata: [
            "model": "\(modelID)", "pid": "\(child.pid)", "status": "\(status)", "crashes": "\(engine.consecutiveCrashes)",
        ])
        guard engine.consecutiveCrashes <= configuration.maxConsecutiveCrashes else {
            logger.error("engine keeps crashing; not restarting it until the next request", metadata: ["model": "\(modelID)"])
            forget(engine: modelID)
            return
        }
        do {
            try startLoading(engine.model, after: Self.backoff(afterCrashes: engine.consecutiveCrashes))
        } catch {
            forget(engine: modelID)
            logger.error("cannot restart engine", metadata: ["model": "\(modelID)", "error": "\(error)"])
        }
    }

    /// No delay for a first crash, then 0.5 s doubling up to 30 s.
    static func backoff(afterCrashes crashes: Int) -> Duration {
        guard crashes > 1 else { return .zero }
        let milliseconds = 500 * (1 << min(crashes - 2, 6))
        return .milliseconds(min(milliseconds, 30_000))
    }

    /// Stops a model's engine now; requests still running on it fail.
    /// Takes changed settings: keep-alive and the loaded-model limit apply at once (an idle
    /// engine past the new keep-alive unloads at the next check), slots and extra arguments
    /// to engines started afterwards.
    public func reconfigure(_ settings: Settings) {
        configuration.keepAlive = settings.keepAlive
        configuration.maxLoadedModels = settings.maxLoadedModels
        configuration.parallel = settings.parallel
        defaultSlots.store(settings.parallel, ordering: .relaxed)
        configuration.extraArguments = settings.llamaArgs
        refreshUnloadsWhenIdle()
        unloadIdleEngines()
        // Fewer places than loaded models: the least recently used idle ones go.
        for engine in readyByLastUse(engines.values) where engines.count > configuration.maxLoadedModels {
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
            var request = HTTPClientRequest(url: running.endpoint.baseURL + "/health")
            request.headers.add(name: "Authorization", value: running.endpoint.authorization)
            do {
                let response = try await http.execute(request, timeout: .seconds(2))
                _ = try? await response.body.collect(upTo: 64 * 1024)
                results.append((id, response.status == .ok, response.status == .ok ? "ok" : "answered \(response.status.code)"))
            } catch {
                results.append((id, false, "no answer: \(error)"))
            }
        }
        return results
    }

    /// Each ready engine's own Prometheus exposition (llama-server's `/metrics`).
    public func engineMetrics() async -> [(model: String, text: String)] {
        var results: [(model: String, text: String)] = []
        for (id, engine) in engines.sorted(by: { $0.key < $1.key }) {
            guard case .ready(let running) = engine.phase else { continue }
            var request = HTTPClientRequest(url: running.endpoint.baseURL + "/metrics")
            request.headers.add(name: "Authorization", value: running.endpoint.authorization)
            guard let response = try? await http.execute(request, timeout: .seconds(2)), response.status == .ok,
                  let body = try? await response.body.collect(upTo: 1 << 20) else { continue }
            results.append((id, String(buffer: body)))
        }
        return results
    }

    /// Stops every engine serving the file at `path`: the model's own and its aliases'.
    public func unload(usingFile path: String) {
        for (id, engine) in engines where engine.model.path == path { unload(id) }
    }

    public func unload(_ modelID: String) {
        usage.withLock { $0[modelID] = nil }
        guard let engine = engines.removeValue(forKey: modelID) else { return }
        logger.info("unloading model", metadata: ["model": "\(modelID)"])
        switch engine.phase {
        case .loading(let task, _):
            task.cancel()
        case .ready(let running):
            Task { await running.child.terminate() }
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
        guard engines[engineID] != nil else { return }
        engines[engineID]!.keepAlive = keepAlive
        refreshUnloadsWhenIdle()
        if case .idle(.zero) = keepAlive { unloadIfIdle(engineID) }
    }

    /// When an engine unloads for idleness; nil for never.
    public func expiry(of engineID: String) -> ContinuousClock.Instant? {
        guard let engine = engines[engineID], case .idle(let keepAlive) = engine.keepAlive ?? configuration.keepAlive else { return nil }
        return lastUsed(engine) + keepAlive
    }

    func unloadIdleEngines(now: ContinuousClock.Instant = .now) {
        for (id, engine) in engines {
            guard case .idle(let keepAlive) = engine.keepAlive ?? configuration.keepAlive, case .ready = engine.phase,
                  let current = entry(of: id), current.inFlight == 0, now - current.lastUsed >= keepAlive else { continue }
            unloadIfIdle(id)
        }
    }

    /// Stops every child: SIGTERM, then SIGKILL after a grace period.
    public func shutdown() async {
        shuttingDown = true
        stopping.store(true, ordering: .relaxed)
        for engine in engines.values {
            if case .loading(let task, _) = engine.phase { task.cancel() }
        }
        engines.removeAll()
        usage.withLock { $0.removeAll() }
        let all = Array(children.values)
        await withTaskGroup(of: Void.self) { group in
            for child in all { group.addTask { await child.terminate() } }
        }
    }

    // MARK: Status

    public func status() -> [EngineStatus] {
        let now = ContinuousClock.now
        return engines.values.sorted { $0.model.id < $1.model.id }.map { engine in
            let current = entry(of: engine.model.id)
            let inFlight = current?.inFlight ?? 0
            let idle = inFlight > 0 ? 0 : Self.seconds(now - (current?.lastUsed ?? now))
            switch engine.phase {
            case .loading(_, let arguments):
                return EngineStatus(
                    model: engine.model.id, state: "loading", pid: nil, port: nil, slots: slots(for: engine.model),
                    inFlight: inFlight, memoryBytes: nil, idleSeconds: idle, restarts: engine.restarts,
                    args: EngineArguments.redacted(arguments))
            case .ready(let running):
                return EngineStatus(
                    model: engine.model.id, state: "ready", pid: running.child.pid, port: running.endpoint.port,
                    slots: slots(for: engine.model), inFlight: inFlight,
                    memoryBytes: SystemResources.residentMemory(of: String(running.child.pid)), idleSeconds: idle,
                    restarts: engine.restarts, args: EngineArguments.redacted(running.arguments),
                    loadSeconds: Self.seconds(running.loadDuration))
            }
        }
    }

    // MARK: Helpers

    private static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }

    private static func randomKey() -> String {
        var generator = SystemRandomNumberGenerator()
        return (0..<4).map { _ in String(generator.next() as UInt64, radix: 16).leftPadded(to: 16) }.joined()
    }

    static func logFileName(for modelID: String) -> String {
        String(modelID.map { $0.isLetter || $0.isNumber || $0 == "." || $0 == "-" || $0 == "_" ? $0 : "_" }) + ".log"
    }

    private func appendToLog(_ path: String, _ text: String) {
        if let handle = FileHandle(forWritingAtPath: path) {
            handle.seekToEndOfFile()
            handle.write(Data(text.utf8))
            try? handle.close()
        } else {
            _ = FileManager.default.createFile(atPath: path, contents: Data(text.utf8))
        }
    }

    /// The lines of an engine's log that say why it failed, from what it wrote this time.
    static func failureReason(logPath: String, from offset: Int) -> String? {
        guard let handle = FileHandle(forReadingAtPath: logPath) else { return nil }
        defer { try? handle.close() }
        try? handle.seek(toOffset: UInt64(offset))
        guard let data = try? handle.readToEnd(), let text = String(data: data, encoding: .utf8) else { return nil }
        let lines = text.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        let errors = lines.filter { line in
            let lower = line.lowercased()
            return lower.contains("error") || lower.contains("failed") || lower.contains("invalid")
                || lower.contains("unknown argument") || lower.contains("no such file")
        }
        let chosen = errors.isEmpty ? Array(lines.suffix(3)) : Array(errors.suffix(3))
        return chosen.isEmpty ? nil : chosen.joined(separator: " | ")
    }

}

extension String {
    fileprivate func leftPadded(to length: Int) -> String {
        count >= length ? self : String(repeating: "0", count: length - count) + self
    }
}

/// Finds a free TCP port on loopback by binding port 0.
enum FreePort {
    static func find() throws -> Int {
        let socketDescriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard socketDescriptor >= 0 else { throw ChildProcessError(message: "socket: \(String(cString: strerror(errno)))") }
        defer { close(socketDescriptor) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(socketDescriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0 else { throw ChildProcessError(message: "bind: \(String(cString: strerror(errno)))") }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let named = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(socketDescriptor, $0, &length) }
        }
        guard named == 0 else { throw ChildProcessError(message: "getsockname: \(String(cString: strerror(errno)))") }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}
