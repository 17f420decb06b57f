import BodhiCore
import Foundation
import Synchronization

/// The models Bodhi can serve, kept fresh from the Hugging Face cache: listing rescans when the
/// cache's folders changed, and a name that is not known (yet) triggers a rescan before it is
/// reported missing, so files that appear while Bodhi runs are served without a restart.
public actor ModelCatalog {
    public nonisolated let cache: HuggingFaceCache
    private var byID: [String: ModelEntry] = [:]
    /// When each entry's file was last seen on disk; a recent sighting spares the hot path a stat.
    private var seenAt: [String: ContinuousClock.Instant] = [:]
    private static let recheckAfter: Duration = .seconds(1)
    /// Names resolved within that second, by the name asked for, with when their file was seen:
    /// `resolveNow` answers them without waiting for the actor, as `resolve` would without a stat.
    private let recentlyResolved = Mutex<[String: (entry: ModelEntry, seen: ContinuousClock.Instant)]>([:])
    /// The cache's folder times at the last scan; listing rescans only when they moved.
    private var scannedFingerprint: [String: Int64]?
    /// Headers read so far, by path; an entry is reused while the file's size and date hold.
    private var headers: [String: CachedHeader] = [:]

    private struct CachedHeader {
        let size: Int64
        let modified: Date
        let result: Result<GGUFModelInfo, GGUFError>
    }

    public init(hubDirectory: String) {
        cache = HuggingFaceCache(hubDirectory: hubDirectory)
    }

    /// All models, sorted by name.
    public func list() -> [ModelEntry] {
        let fingerprint = cache.fingerprint()
        if fingerprint != scannedFingerprint {
            rescan()
            scannedFingerprint = fingerprint
        }
        return byID.values.sorted { $0.id < $1.id }
    }

    /// The model a client names. Besides the exact `owner/repo:QUANT`, the quantization is
    /// matched without regard to case, and `owner/repo` alone names a repository's only model.
    public func resolve(_ name: String) throws -> ModelEntry {
        if let entry = lookup(name), stillThere(entry) {
            if let seen = seenAt[entry.id] { recentlyResolved.withLock { $0[name] = (entry, seen) } }
            return entry
        }
        rescan()
        if let entry = lookup(name) { return entry }
        throw BodhiError.modelNotFound(name)
    }

    /// What `resolve` answers for `name` without looking at the disk: nil when that needs a look
    /// (a name not resolved in the last second), and `resolve` then says.
    public nonisolated func resolveNow(_ name: String) -> ModelEntry? {
        recentlyResolved.withLock { recent in
            guard let hit = recent[name], ContinuousClock.now - hit.seen < Self.recheckAfter else { return nil }
            return hit.entry
        }
    }

    private func stillThere(_ entry: ModelEntry) -> Bool {
        let now = ContinuousClock.now
        if let seen = seenAt[entry.id], now - seen < Self.recheckAfter { return true }
        guard FileManager.default.fileExists(atPath: entry.path) else { return false }
        seenAt[entry.id] = now
        return true
    }

    /// Deletes a model's files from the cache (see `HuggingFaceCache.delete`).
    @discardableResult
    public func delete(_ name: String) throws -> ModelEntry {
        let entry = try resolve(name)
        do {
            try cache.delete(entry)
        } catch {
            throw BodhiError.internalError("Could not delete the files of '\(entry.id)': \(error)")
        }
        rescan()
        return entry
    }

    /// A model with its header facts and the memory it would take under `plan`.
    public func describe(_ name: String, plan: EnginePlan) async throws -> ModelDescription {
        await describe(try resolve(name), plan: plan)
    }

    /// Every model, described.
    public func describeAll(plan: EnginePlan) async -> [ModelDescription] {
        let entries = list()
        let paths = Set(entries.map(\.path))
        headers = headers.filter { paths.contains($0.key) }
        var descriptions: [ModelDescription] = []
        for entry in entries { descriptions.append(await describe(entry, plan: plan)) }
        return descriptions
    }

    private func describe(_ entry: ModelEntry, plan: EnginePlan) async -> ModelDescription {
        let result: Result<GGUFModelInfo, GGUFError>
        if let cached = headers[entry.path], cached.size == entry.sizeBytes, cached.modified == entry.modified {
            result = cached.result
        } else {
            result = await Self.readHeader(at: entry.path)
            headers[entry.path] = CachedHeader(size: entry.sizeBytes, modified: entry.modified, result: result)
        }
        switch result {
        case .success(let info):
            return ModelDescription(
                entry: entry, info: info, headerError: nil, memoryEstimate: MemoryEstimate(model: entry, info: info, plan: plan))
        case .failure(let error):
            return ModelDescription(entry: entry, info: nil, headerError: error.message, memoryEstimate: nil)
        }
    }

    /// Reads on a Dispatch worker: a large vocabulary takes a while to walk, and the actor's
    /// executor is the server's event loop.
    private static func readHeader(at path: String) async -> Result<GGUFModelInfo, GGUFError> {
        await withCheckedContinuation { continuation in
            DispatchQueue.global().async {
                let result = Result { try GGUFModelInfo(GGUFReader.read(path: path)) }
                    .mapError { $0 as? GGUFError ?? GGUFError(message: "\($0)") }
                continuation.resume(returning: result)
            }
        }
    }

    private func lookup(_ name: String) -> ModelEntry? {
        if let entry = byID[name] { return entry }
        let folded = name.lowercased()
        if let entry = byID.values.first(where: { $0.id.lowercased() == folded }) { return entry }
        let inRepo = byID.values.filter { $0.repo.lowercased() == folded }
        return inRepo.count == 1 ? inRepo[0] : nil
    }

    /// Reads the cache again, e.g. after a pull added files.
    public func refresh() {
        rescan()
    }

    private func rescan() {
        recentlyResolved.withLock { $0.removeAll() }
        byID = Dictionary(cache.scan().map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
        let now = ContinuousClock.now
        seenAt = byID.mapValues { _ in now }
    }
}
