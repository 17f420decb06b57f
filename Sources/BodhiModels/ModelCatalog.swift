import BodhiCore
import Foundation
import NIOPosix
import Synchronization

/// The models Bodhi can serve, kept fresh from the Hugging Face cache: listing rescans when the
/// cache's folders changed, and a name that is not known (yet) triggers a rescan before it is
/// reported missing, so files that appear while Bodhi runs are served without a restart.
///
/// The disk is read on NIO's thread pool, never on the actor (whose executor is an event loop).
/// A rescan happens only when the cache's folders changed since the last one (their times, a few
/// `stat` calls), and callers that need one while another runs wait for that one; for a moment
/// after such a look a name it did not find is missing without another (`isMissingNow`): a client
/// asking for unknown names in a loop costs a few `stat` calls a second, not a scan each.
public actor ModelCatalog {
    public nonisolated let cache: HuggingFaceCache
    private var byID: [String: ModelEntry] = [:]
    /// When each entry's file was last seen on disk; a recent sighting spares the hot path a stat.
    private var seenAt: [String: ContinuousClock.Instant] = [:]
    private static let recheckAfter: Duration = .seconds(1)
    /// Names resolved within that second, by the name asked for, with when their file was seen:
    /// `resolveNow` answers them without waiting for the actor, as `resolve` would without a stat.
    private let recentlyResolved = Mutex<[String: (entry: ModelEntry, seen: ContinuousClock.Instant)]>([:])
    /// When the disk was last looked at (the folders' times checked, or a scan), and the models
    /// then: `isMissingNow` answers from it for a moment.
    private let lastLook = Mutex<(at: ContinuousClock.Instant, byID: [String: ModelEntry])?>(nil)
    /// The cache's folder times at the last scan; listing rescans only when they moved.
    private var scannedFingerprint: [String: Int64]?
    /// Headers read so far, by path; an entry is reused while the file's size and date hold.
    private var headers: [String: CachedHeader] = [:]
    /// The scan under way, which every caller that needs one waits for.
    private var scanning: Task<Void, Never>?

    private struct CachedHeader {
        let size: Int64
        let modified: Date
        let result: Result<GGUFModelInfo, GGUFError>
    }

    /// How long after a look at the disk a name it did not find is missing without another.
    private let missingFor: Duration

    public init(hubDirectory: String, missingFor: Duration = .milliseconds(500)) {
        cache = HuggingFaceCache(hubDirectory: hubDirectory)
        self.missingFor = missingFor
    }

    /// All models, sorted by name.
    public func list() async -> [ModelEntry] {
        await rescanIfChanged()
        return byID.values.sorted { $0.id < $1.id }
    }

    /// The model a client names. Besides the exact `owner/repo:QUANT`, the quantization is
    /// matched without regard to case, and `owner/repo` alone names a repository's only model.
    public func resolve(_ name: String) async throws -> ModelEntry {
        if let entry = lookup(name), await stillThere(entry) {
            if let seen = seenAt[entry.id] { recentlyResolved.withLock { $0[name] = (entry, seen) } }
            return entry
        }
        await rescanIfChanged()
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

    /// Whether `name` is missing, known without looking at the disk: the cache was looked at within
    /// `missingFor` and had no model by that name. False when that needs a look (`resolve` then
    /// says). A file that lands in the cache just then is served once that time is over.
    public nonisolated func isMissingNow(_ name: String) -> Bool {
        lastLook.withLock { look in
            guard let look, ContinuousClock.now - look.at < missingFor else { return false }
            return Self.lookup(name, in: look.byID) == nil
        }
    }

    private func stillThere(_ entry: ModelEntry) async -> Bool {
        let now = ContinuousClock.now
        if let seen = seenAt[entry.id], now - seen < Self.recheckAfter { return true }
        guard await offLoop({ FileManager.default.fileExists(atPath: entry.path) }) else { return false }
        seenAt[entry.id] = now
        return true
    }

    /// Deletes a model's files from the cache (see `HuggingFaceCache.delete`).
    @discardableResult
    public func delete(_ name: String) async throws -> ModelEntry {
        let entry = try await resolve(name)
        let deleted = await offLoop { [cache] in Result { try cache.delete(entry) } }
        if case .failure(let error) = deleted {
            throw BodhiError.internalError("Could not delete the files of '\(entry.id)': \(error)")
        }
        await rescan()
        return entry
    }

    /// A model with its header facts and the memory it would take under `plan`.
    public func describe(_ name: String, plan: EnginePlan) async throws -> ModelDescription {
        await describe(try await resolve(name), plan: plan)
    }

    /// Every model, described.
    public func describeAll(plan: EnginePlan) async -> [ModelDescription] {
        let entries = await list()
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
            result = await readHeader(at: entry.path)
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

    /// Reads on the thread pool: a large vocabulary takes a while to walk.
    private func readHeader(at path: String) async -> Result<GGUFModelInfo, GGUFError> {
        await offLoop {
            Result { try GGUFModelInfo(GGUFReader.read(path: path)) }.mapError { $0 as? GGUFError ?? GGUFError(message: "\($0)") }
        }
    }

    /// `work` (disk reads) on NIO's thread pool, never on the actor's event loop; on the caller's
    /// thread only when the pool has stopped (Bodhi is going away).
    private nonisolated func offLoop<T: Sendable>(_ work: @escaping @Sendable () -> T) async -> T {
        (try? await NIOThreadPool.singleton.runIfActive(work)) ?? work()
    }

    private func lookup(_ name: String) -> ModelEntry? {
        Self.lookup(name, in: byID)
    }

    private static func lookup(_ name: String, in byID: [String: ModelEntry]) -> ModelEntry? {
        if let entry = byID[name] { return entry }
        let folded = name.lowercased()
        if let entry = byID.values.first(where: { $0.id.lowercased() == folded }) { return entry }
        let inRepo = byID.values.filter { $0.repo.lowercased() == folded }
        return inRepo.count == 1 ? inRepo[0] : nil
    }

    /// Reads the cache again, e.g. after a pull added files.
    public func refresh() async {
        await rescan(fresh: true)
    }

    /// Rescans when the cache's folders changed since the last scan (or waits for the scan under
    /// way); otherwise what the last scan found stands.
    private func rescanIfChanged() async {
        if let running = scanning { return await running.value }
        let looked = ContinuousClock.now
        let fingerprint = await offLoop { [cache] in cache.fingerprint() }
        if fingerprint != scannedFingerprint {
            await rescan()
        } else {
            noteLook(at: looked)
        }
    }

    private func noteLook(at instant: ContinuousClock.Instant) {
        lastLook.withLock { $0 = (instant, byID) }
    }

    /// Reads the cache (on the thread pool), or waits for the scan under way. `fresh`: one that
    /// starts after this call, so that it sees what changed just before (a pull's new files).
    private func rescan(fresh: Bool = false) async {
        if let running = scanning {
            await running.value
            if !fresh { return }
        }
        let scan = Task {
            let looked = ContinuousClock.now
            // The folders' times are taken first: what changes during the scan shows next time.
            let (fingerprint, entries) = await offLoop { [cache] in (cache.fingerprint(), cache.scan()) }
            recentlyResolved.withLock { $0.removeAll() }
            byID = Dictionary(entries.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
            let now = ContinuousClock.now
            seenAt = byID.mapValues { _ in now }
            scannedFingerprint = fingerprint
            noteLook(at: looked)
        }
        scanning = scan
        await scan.value
        if scanning == scan { scanning = nil }
    }
}
