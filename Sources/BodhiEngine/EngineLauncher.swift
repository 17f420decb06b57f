import AsyncHTTPClient
import BodhiCore
import Foundation
import NIOCore
import NIOPosix

/// An engine process as the supervisor sees it: where it serves, how to stop it, when it ends.
public protocol RunningEngine: Sendable {
    var endpoint: EngineEndpoint { get }
    /// Its command line, secrets redacted, for `bodhi ps`.
    var arguments: [String] { get }
    /// Returns once the engine has exited (and its process is gone).
    func waitForExit() async -> ChildProcess.ExitStatus
    /// Its exit, if that comes within `limit`; nil while it still runs.
    func exitStatus(within limit: Duration) async -> ChildProcess.ExitStatus?
    /// Stops it: politely, then not.
    func terminate() async
    /// What it takes in memory now, when that can be told.
    var residentMemoryBytes: Int64? { get }
}

/// How an engine would be started: chosen before it starts, so that `bodhi ps` shows a loading
/// engine's command line.
public struct EngineLaunchPlan: Sendable {
    public let port: Int
    public let apiKey: String
    public let arguments: [String]

    public init(port: Int, apiKey: String, arguments: [String]) {
        self.port = port
        self.apiKey = apiKey
        self.arguments = arguments
    }
}

/// Starts engines. The supervisor decides when and which; a launcher knows how. It is injected, so
/// that the supervisor's decisions (loads, crash restarts, LRU, keep-alive) are tested without an
/// engine, with a launcher that starts nothing (as Ollama's scheduler tests use a mock runner).
public protocol EngineLauncher: Sendable {
    /// The plan for an engine serving `model` with `slots` request slots.
    func plan(_ model: EngineTarget, slots: Int, extraArguments: [String]) throws -> EngineLaunchPlan
    /// Starts the planned engine and returns once it serves requests, or throws why it cannot
    /// (`BodhiError.engineLoadFailed`, in the engine's own words where it gave any). Cancelled,
    /// it stops what it started and throws `CancellationError`.
    func launch(_ plan: EngineLaunchPlan, for model: EngineTarget) async throws -> any RunningEngine
}

/// Starts `llama-server` children: each on a free loopback port with a random key, its output
/// appended to a log per model, ready once its `/health` answers 200.
public struct LlamaServerLauncher: EngineLauncher {
    let executable: String
    let logsDirectory: String
    let http: HTTPClient

    public init(executable: String, logsDirectory: String, http: HTTPClient) {
        self.executable = executable
        self.logsDirectory = logsDirectory
        self.http = http
    }

    public func plan(_ model: EngineTarget, slots: Int, extraArguments: [String]) throws -> EngineLaunchPlan {
        let port: Int
        do { port = try FreePort.find() } catch {
            throw BodhiError.engineUnavailable("No free local port for the engine: \(error)")
        }
        let arguments = EngineArguments.build(
            modelPath: model.path, modelName: model.reportedName, port: port, parallel: slots, extra: extraArguments)
        return EngineLaunchPlan(port: port, apiKey: Self.randomKey(), arguments: arguments)
    }

    public func launch(_ plan: EngineLaunchPlan, for model: EngineTarget) async throws -> any RunningEngine {
        let logPath = logsDirectory + "/" + Self.logFileName(for: model.id)
        let header = "\n=== \(Date()) bodhi starts: \(executable) \(EngineArguments.redacted(plan.arguments).joined(separator: " "))\n"
        // File work goes to the thread pool, never to an event loop.
        let logStart = try await NIOThreadPool.singleton.runIfActive { [logsDirectory] in
            try FileManager.default.createDirectory(atPath: logsDirectory, withIntermediateDirectories: true)
            let start = (try? FileManager.default.attributesOfItem(atPath: logPath)[.size] as? Int) ?? 0
            Self.append(header, to: logPath)
            return start
        }
        let child: ChildProcess
        do {
            child = try ChildProcess(
                executable: executable, arguments: plan.arguments,
                environment: EngineArguments.environment(inheriting: ProcessInfo.processInfo.environment, apiKey: plan.apiKey),
                logPath: logPath)
        } catch {
            throw BodhiError.engineLoadFailed(model: model.id, reason: "\(error)")
        }
        do {
            try await waitUntilHealthy(child, plan: plan, model: model, logPath: logPath, logStart: logStart)
        } catch {
            await child.terminate(grace: .seconds(1))
            throw error
        }
        let context = await contextPerSlot(plan)
        return LlamaServerProcess(
            child: child,
            endpoint: EngineEndpoint(host: "127.0.0.1", port: plan.port, apiKey: plan.apiKey, pid: child.pid, contextPerSlot: context),
            arguments: EngineArguments.redacted(plan.arguments))
    }

    /// The context each slot has, as the engine's `/props` says (`default_generation_settings.n_ctx`).
    private func contextPerSlot(_ plan: EngineLaunchPlan) async -> Int? {
        var request = HTTPClientRequest(url: "http://127.0.0.1:\(plan.port)/props")
        request.headers.add(name: "Authorization", value: "Bearer \(plan.apiKey)")
        guard let response = try? await http.execute(request, timeout: .seconds(5)), response.status == .ok,
              let body = try? await response.body.collect(upTo: 4 << 20),
              let settings = JSONBody.parsed(body)?["default_generation_settings"] as? JSONObject
        else { return nil }
        return settings["n_ctx"] as? Int
    }

    /// Polls `/health` until the engine answers 200. An engine that exits first failed to load:
    /// its log says why. Cancellation (the supervisor's load timeout, an unload) ends the wait.
    private func waitUntilHealthy(
        _ child: ChildProcess, plan: EngineLaunchPlan, model: EngineTarget, logPath: String, logStart: Int
    ) async throws {
        var request = HTTPClientRequest(url: "http://127.0.0.1:\(plan.port)/health")
        request.headers.add(name: "Authorization", value: "Bearer \(plan.apiKey)")
        while true {
            try Task.checkCancellation()
            if let status = child.exitStatusIfExited {
                let reason = try? await NIOThreadPool.singleton.runIfActive { Self.failureReason(logPath: logPath, from: logStart) }
                throw BodhiError.engineLoadFailed(model: model.id, reason: reason ?? "the engine \(status)")
            }
            if let response = try? await http.execute(request, timeout: .seconds(2)) {
                _ = try? await response.body.collect(upTo: 64 * 1024)
                if response.status == .ok { return }
            }
            try await Task.sleep(for: .milliseconds(25))
        }
    }

    static func randomKey() -> String {
        var generator = SystemRandomNumberGenerator()
        return (0..<4).map { _ in
            let digits = String(generator.next() as UInt64, radix: 16)
            return String(repeating: "0", count: 16 - digits.count) + digits
        }.joined()
    }

    static func logFileName(for modelID: String) -> String {
        String(modelID.map { $0.isLetter || $0.isNumber || $0 == "." || $0 == "-" || $0 == "_" ? $0 : "_" }) + ".log"
    }

    private static func append(_ text: String, to path: String) {
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

/// A `llama-server` child that serves.
struct LlamaServerProcess: RunningEngine {
    let child: ChildProcess
    let endpoint: EngineEndpoint
    let arguments: [String]

    func waitForExit() async -> ChildProcess.ExitStatus { await child.waitForExit() }
    func exitStatus(within limit: Duration) async -> ChildProcess.ExitStatus? { await child.exitStatus(within: limit) }
    func terminate() async { await child.terminate() }
    var residentMemoryBytes: Int64? { SystemResources.residentMemory(of: String(child.pid)) }
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
