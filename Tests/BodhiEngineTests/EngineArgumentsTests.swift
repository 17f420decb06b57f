@testable import BodhiEngine
import BodhiModels
import Foundation
import Testing

@Suite(.timeLimit(.minutes(2))) struct EngineArgumentsTests {
    let arguments = EngineArguments.build(
        modelPath: "/models/a.gguf", modelName: "org/a-GGUF:Q4_0", port: 4242, parallel: 3,
        extra: ["--ctx-size", "2048"])

    func value(after flag: String) -> String? {
        arguments.firstIndex(of: flag).map { arguments[$0 + 1] }
    }

    @Test func childIsIsolatedOnLoopbackWithAKeyNoOtherUserCanRead() {
        #expect(value(after: "--host") == "127.0.0.1")
        #expect(value(after: "--port") == "4242")
        // A command line is world-readable (`ps`); the environment is not.
        #expect(!arguments.contains("--api-key"))
        let environment = EngineArguments.environment(inheriting: ["PATH": "/bin", "LLAMA_API_KEY": "inherited"], apiKey: "secret")
        #expect(environment["LLAMA_API_KEY"] == "secret")
        #expect(environment["PATH"] == "/bin")
    }

    @Test func servesChatAndEmbeddingsWithMetricsAndBodhisName() {
        #expect(value(after: "--model") == "/models/a.gguf")
        #expect(value(after: "--alias") == "org/a-GGUF:Q4_0")
        #expect(value(after: "--parallel") == "3")
        #expect(value(after: "--pooling") == "mean")
        for flag in ["--jinja", "--embeddings", "--metrics"] { #expect(arguments.contains(flag)) }
        #expect(Array(arguments.suffix(2)) == ["--ctx-size", "2048"])
    }

    @Test func redactionHidesThePortOnly() {
        let redacted = EngineArguments.redacted(arguments)
        #expect(!redacted.contains("4242"))
        #expect(redacted.count == arguments.count)
        #expect(redacted.contains("/models/a.gguf"))
    }

    @Test func backoffStartsAtOnceThenDoublesUpToACap() {
        #expect(EngineSupervisor.backoff(afterCrashes: 1) == .zero)
        #expect(EngineSupervisor.backoff(afterCrashes: 2) == .milliseconds(500))
        #expect(EngineSupervisor.backoff(afterCrashes: 3) == .seconds(1))
        #expect(EngineSupervisor.backoff(afterCrashes: 20) == .seconds(30))
    }

    @Test func thePromptCacheIsSizedByTheKVCacheUnlessTheUserSetsIt() {
        #expect(EngineMemory.promptCacheBytes(kvCacheBytes: 755 << 20) == 755 << 20)
        #expect(EngineMemory.promptCacheBytes(kvCacheBytes: 1 << 20) == 64 << 20)
        #expect(EngineMemory.promptCacheBytes(kvCacheBytes: 40 << 30) == 2 << 30)
        #expect(EngineMemory.promptCacheBytes(setBy: ["-c", "4096", "--cache-ram", "300"]) == 300 << 20)
        #expect(EngineMemory.promptCacheBytes(setBy: ["-cram", "0"]) == 0)
        #expect(EngineMemory.promptCacheBytes(setBy: ["--cache-ram=-1"]) == 8192 << 20)
        #expect(EngineMemory.promptCacheBytes(setBy: ["--ctx-size", "4096"]) == nil)
    }

    @Test func theEstimateOfTheRealModelCountsWeightsKVAndPromptCache() async throws {
        let model = EngineTarget(model: try RealEngine.defaultModel)
        let memory = try #require(await GGUFMemoryEstimator().estimate(model, slots: 4, arguments: []))
        #expect(memory.weightsBytes == model.entry.sizeBytes)
        #expect(memory.kvCacheBytes > 0 && memory.promptCacheBytes == EngineMemory.promptCacheBytes(kvCacheBytes: memory.kvCacheBytes))
        #expect(memory.promptCacheArguments == ["--cache-ram", String(memory.promptCacheBytes >> 20)])
        // The user's own size is kept, and nothing added.
        let own = try #require(await GGUFMemoryEstimator().estimate(model, slots: 4, arguments: ["--cache-ram", "10"]))
        #expect(own.promptCacheBytes == 10 << 20 && own.promptCacheArguments.isEmpty)
    }

    @Test func failureReasonQuotesTheEnginesErrorsFromThisStartOnly() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("engine-\(UUID().uuidString).log").path
        let earlier = "old run: error that must not show\n"
        let text = earlier + "loading\nllama_model_load: error loading model: invalid magic\nmain: exiting due to model loading error\n"
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        let reason = try #require(LlamaServerLauncher.failureReason(logPath: path, from: earlier.utf8.count))
        #expect(reason.contains("invalid magic"))
        #expect(!reason.contains("old run"))
    }

    @Test func logFileNamesAreSafe() {
        #expect(LlamaServerLauncher.logFileName(for: "org/a-GGUF:Q4_0") == "org_a-GGUF_Q4_0.log")
    }
}

@Suite(.timeLimit(.minutes(2))) struct AliasFlagAllowListTests {
    /// The flags aliases may set must exist in the engine Bodhi builds, or engines fail to load.
    @Test(.enabled(if: RealEngine.available, "needs BODHI_TEST_ENGINE (make test sets it)"))
    func everyAllowedFlagIsKnownToTheRealEngine() throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try #require(RealEngine.executable))
        process.arguments = ["--help"]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let help = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        let known = Set(help.split(whereSeparator: { " ,\n=[".contains($0) }).map(String.init).filter { $0.hasPrefix("-") })
        let unknown = EngineOverrides.allowedFlags.keys.filter { !known.contains($0) }.sorted()
        #expect(unknown.isEmpty, "llama-server does not know \(unknown)")
    }
}
