import BodhiCore
import BodhiModels
import Foundation
import NIOPosix
import Synchronization

/// What an engine is expected to take in memory, known before it starts: the model's weights, a KV
/// cache for every slot's context, and the host prompt cache (llama-server's `--cache-ram`), which
/// Bodhi sizes itself, since llama-server's own default (8 GiB per engine) would let a few loaded
/// models grow far past any budget.
public struct EngineMemory: Sendable, Equatable {
    public let weightsBytes: Int64
    public let kvCacheBytes: Int64
    public let promptCacheBytes: Int64
    /// The `--cache-ram` arguments Bodhi adds; empty when the user's arguments set it.
    public let promptCacheArguments: [String]

    public init(weightsBytes: Int64, kvCacheBytes: Int64, promptCacheBytes: Int64, promptCacheArguments: [String] = []) {
        self.weightsBytes = weightsBytes
        self.kvCacheBytes = kvCacheBytes
        self.promptCacheBytes = promptCacheBytes
        self.promptCacheArguments = promptCacheArguments
    }

    public var totalBytes: Int64 { weightsBytes + kvCacheBytes + promptCacheBytes }

    /// `1.6 GB (weights 98.4 MB, KV cache 755.0 MB, prompt cache 755.0 MB)`.
    public var explained: String {
        "\(ByteSize.format(totalBytes)) (weights \(ByteSize.format(weightsBytes)), KV cache \(ByteSize.format(kvCacheBytes)), "
            + "prompt cache \(ByteSize.format(promptCacheBytes)))"
    }

    /// The prompt cache Bodhi gives an engine: as much again as its KV cache (room to keep about one
    /// full set of slots' prompts for later turns), from 64 MiB to 2 GiB.
    static func promptCacheBytes(kvCacheBytes: Int64) -> Int64 {
        min(max(kvCacheBytes, 64 << 20), 2 << 30)
    }

    /// The size a `--cache-ram N` / `-cram N` among `arguments` sets (MiB; -1, no limit, counted as
    /// llama-server's default), or nil when none does.
    static func promptCacheBytes(setBy arguments: [String]) -> Int64? {
        guard let mib = EnginePlan.value(of: ["--cache-ram", "-cram"], in: arguments).flatMap({ Int64($0) }) else { return nil }
        return mib < 0 ? 8192 << 20 : mib << 20
    }
}

/// Estimates what an engine will take before it starts. Injected into the supervisor beside its
/// launcher, so that its memory decisions are tested with made-up models.
public protocol EngineMemoryEstimator: Sendable {
    /// Nil when it cannot be told (a file whose header cannot be read): such an engine counts
    /// its weights only.
    func estimate(_ model: EngineTarget, slots: Int, arguments: [String]) async -> EngineMemory?
    /// The context the model was trained for (its GGUF's `context_length`); nil when unknown.
    func trainedContext(_ model: EngineTarget) async -> Int?
    /// What the model's GGUF says it can do (`GGUFModelInfo.capabilities`); nil when unknown.
    func capabilities(_ model: EngineTarget) async -> [String]?
}

extension EngineMemoryEstimator {
    public func trainedContext(_ model: EngineTarget) async -> Int? { nil }
    public func capabilities(_ model: EngineTarget) async -> [String]? { nil }
}

/// Estimates from the GGUF header (read once per file, on the thread pool): the same figures as
/// `GET /bodhi/v1/models/{id}`'s `memory_estimate`, plus the prompt cache.
public final class GGUFMemoryEstimator: EngineMemoryEstimator {
    private struct Key: Hashable {
        let path: String
        let size: Int64
        let modified: Date
    }

    private let headers = Mutex<[Key: GGUFModelInfo]>([:])

    public init() {}

    /// The file's header facts, read once.
    private func info(_ entry: ModelEntry) async -> GGUFModelInfo? {
        let key = Key(path: entry.path, size: entry.sizeBytes, modified: entry.modified)
        if let known = headers.withLock({ $0[key] }) { return known }
        let info = try? await NIOThreadPool.singleton.runIfActive { try GGUFModelInfo(GGUFReader.read(path: entry.path)) }
        if let info { headers.withLock { $0[key] = info } }
        return info
    }

    public func trainedContext(_ model: EngineTarget) async -> Int? {
        await info(model.entry)?.contextLength
    }

    public func capabilities(_ model: EngineTarget) async -> [String]? {
        await info(model.entry)?.capabilities
    }

    public func estimate(_ model: EngineTarget, slots: Int, arguments: [String]) async -> EngineMemory? {
        let entry = model.entry
        guard let info = await info(entry), let base = MemoryEstimate(model: entry, info: info, plan: EnginePlan(slots: slots, engineArguments: arguments))
        else { return nil }
        if let chosen = EngineMemory.promptCacheBytes(setBy: arguments) {
            return EngineMemory(weightsBytes: base.weightsBytes, kvCacheBytes: base.kvCacheBytes, promptCacheBytes: chosen)
        }
        let promptCache = EngineMemory.promptCacheBytes(kvCacheBytes: base.kvCacheBytes)
        return EngineMemory(
            weightsBytes: base.weightsBytes, kvCacheBytes: base.kvCacheBytes, promptCacheBytes: promptCache,
            promptCacheArguments: ["--cache-ram", String(promptCache >> 20)])
    }
}
