import AsyncHTTPClient
import BodhiCore
import BodhiModels
import Foundation
import Logging

/// Runs pulls: resolves what to download, downloads a bounded number of pulls at a time,
/// shares a file between pulls that need it at once, reports progress to subscribers and
/// persists status, so that a restarted Bodhi resumes what was unfinished.
public actor PullManager {
    private let hub: HubClient
    private let cache: HuggingFaceCache
    private let downloader: BlobDownloader
    private let repository: (any PullRepository)?
    private let maxConcurrent: Int
    private let logger: Logger
    /// Called when a pull completes: new files are in the cache.
    private let onModelAdded: @Sendable (String) async -> Void

    private var pulls: [String: PullRecord] = [:]
    private var queue: [String] = []
    private var running: [String: Task<Void, Never>] = [:]
    private var cancelRequested: Set<String> = []
    private var shuttingDown = false

    /// One download per blob, whichever pulls wait for it.
    private struct FileDownload {
        let task: Task<Void, Never>
        var waiters: [String: CheckedContinuation<Void, any Error>]
        /// Nobody waits any more; the task is stopping (and keeping what it has on disk).
        var stopping = false
    }
    private var downloads: [String: FileDownload] = [:]
    /// Bytes on disk per blob, for progress.
    private var fileBytes: [String: Int64] = [:]
    /// Bytes received from the Hub since start, for metrics.
    public private(set) var downloadedBytes: Int64 = 0

    private var subscribers: [String: [UUID: AsyncStream<PullRecord>.Continuation]] = [:]
    private var lastBroadcast: [String: ContinuousClock.Instant] = [:]
    private var lastPersisted: [String: ContinuousClock.Instant] = [:]

    public init(
        hub: HubClient, cache: HuggingFaceCache, repository: (any PullRepository)?, maxConcurrent: Int,
        logger: Logger, retryDelays: [Duration]? = nil, onModelAdded: @escaping @Sendable (String) async -> Void = { _ in }
    ) {
        self.hub = hub
        self.cache = cache
        var downloader = BlobDownloader(hub: hub, cache: cache, logger: logger)
        if let retryDelays { downloader.retryDelays = retryDelays }
        self.downloader = downloader
        self.repository = repository
        self.maxConcurrent = maxConcurrent
        self.logger = logger
        self.onModelAdded = onModelAdded
    }

    /// Starts pulling `reference` at `revision` (default `main`). The Hub is asked first, so a
    /// wrong name, a missing quantization or a gated repository is an error right here. The
    /// same model already being pulled is not pulled twice: its pull is returned.
    public func start(reference text: String, revision: String? = nil) async throws -> PullRecord {
        let reference = try PullReference(parsing: text)
        let revision = revision.flatMap { $0.isEmpty ? nil : $0 } ?? "main"
        let snapshot = try await hub.snapshotRetrying(repo: reference.repo, revision: revision)
        let candidate = try reference.choose(from: snapshot.files)
        var files: [PullFile] = []
        for file in candidate.files {
            if let size = file.size, let sha = file.sha256 {
                files.append(PullFile(path: file.path, size: size, sha256: sha))
            } else {
                // Not in LFS: the listing lacks a hash, the file's metadata has its ETag.
                let metadata = try await hub.fileMetadata(repo: reference.repo, revision: snapshot.commit, path: file.path)
                guard let etag = metadata.etag, let size = metadata.size ?? file.size else {
                    throw BodhiError(.hubError, status: 502, "The Hub gave no size or ETag for \(file.path) in \(reference.repo).")
                }
                files.append(PullFile(path: file.path, size: size, sha256: etag))
            }
        }
        if let existing = pulls.values.first(where: {
            !$0.state.isFinished && $0.repo == reference.repo && $0.commit == snapshot.commit && $0.files == files
        }) {
            return existing
        }
        let record = PullRecord(
            id: "pull-" + UUID.random().lowercaseString.prefix(12), reference: reference.description, repo: reference.repo,
            revision: revision, commit: snapshot.commit, model: "\(reference.repo):\(candidate.label)", files: files)
        pulls[record.id] = record
        await persist(record)
        enqueue(record.id)
        return pulls[record.id] ?? record
    }

    /// Restarts the pulls a previous run left unfinished; their partial files are resumed.
    public func resumeUnfinished() async {
        guard let repository else { return }
        do {
            for var record in try await repository.unfinishedPulls() where pulls[record.id] == nil {
                logger.info("pull: resuming \(record.reference) (\(record.id))")
                record.state = .queued
                pulls[record.id] = record
                enqueue(record.id)
            }
        } catch {
            logger.error("pull: could not read unfinished pulls: \(error)")
        }
    }

    public func pull(id: String) async throws -> PullRecord {
        if let record = pulls[id] { return record }
        if let record = try await repository?.pull(id: id) { return record }
        throw BodhiError.notFound("There is no pull '\(id)'. List pulls with GET /bodhi/v1/models/pull.")
    }

    /// Recent pulls, newest first: this run's, then what the database remembers.
    public func list(limit: Int = 100) async throws -> [PullRecord] {
        var byID = Dictionary(uniqueKeysWithValues: (try await repository?.pulls(limit: limit) ?? []).map { ($0.id, $0) })
        for (id, record) in pulls { byID[id] = record }
        return Array(byID.values.sorted { $0.createdAt > $1.createdAt }.prefix(limit))
    }

    /// Stops a pull; its partial files stay, so a retry continues where it stopped.
    public func cancel(id: String) async throws -> PullRecord {
        let record = try await pull(id: id)
        guard !record.state.isFinished else { return record }
        if let index = queue.firstIndex(of: id) {
            queue.remove(at: index)
            await finish(id, state: .cancelled, error: nil)
        } else if let task = running[id] {
            cancelRequested.insert(id)
            task.cancel()
            await task.value
            await waitForStoppingDownloads(of: record.files)
        }
        return pulls[id] ?? record
    }

    /// Starts a failed or cancelled pull again.
    public func retry(id: String) async throws -> PullRecord {
        var record = try await pull(id: id)
        guard record.state == .failed || record.state == .cancelled else {
            throw BodhiError.conflict("Pull '\(id)' is \(record.state.rawValue); only a failed or cancelled pull can be retried.")
        }
        record.state = .queued
        record.error = nil
        record.updatedAt = Date()
        pulls[id] = record
        await persist(record)
        enqueue(id)
        return pulls[id] ?? record
    }

    /// The pull's current state, then every change until it finishes.
    public func events(id: String) async throws -> AsyncStream<PullRecord> {
        let record = try await pull(id: id)
        let (stream, continuation) = AsyncStream<PullRecord>.makeStream(bufferingPolicy: .bufferingNewest(64))
        continuation.yield(record)
        if record.state.isFinished {
            continuation.finish()
            return stream
        }
        let token = UUID.random()
        subscribers[id, default: [:]][token] = continuation
        continuation.onTermination = { _ in Task { await self.unsubscribe(id, token) } }
        return stream
    }

    /// Stops downloading without marking pulls cancelled: the next start resumes them.
    public func shutdown() async {
        shuttingDown = true
        queue.removeAll()
        let tasks = Array(running.values)
        for task in tasks { task.cancel() }
        for task in tasks { await task.value }
        for download in downloads.values { await download.task.value }
    }

    /// Downloads being stopped write out what they received; wait for that to finish.
    private func waitForStoppingDownloads(of files: [PullFile]) async {
        for file in files {
            if let download = downloads[file.sha256], download.stopping { await download.task.value }
        }
    }

    // MARK: - Running

    private func enqueue(_ id: String) {
        guard !queue.contains(id), running[id] == nil else { return }
        queue.append(id)
        pump()
    }

    private func pump() {
        while !shuttingDown, running.count < maxConcurrent, !queue.isEmpty {
            let id = queue.removeFirst()
            running[id] = Task { await self.execute(id) }
        }
    }

    private func execute(_ id: String) async {
        guard var record = pulls[id] else { return }
        record.state = .downloading
        record.updatedAt = Date()
        pulls[id] = record
        publish(id, force: true)
        await persist(record)
        do {
            for file in record.files {
                try await fetch(file, repo: record.repo, commit: record.commit, for: id)
            }
            for file in record.files {
                try cache.linkSnapshot(repo: record.repo, commit: record.commit, path: file.path, etag: file.sha256)
            }
            try cache.writeRef(repo: record.repo, revision: record.revision, commit: record.commit)
            await finish(id, state: .completed, error: nil)
            logger.info("pull: \(record.reference) is complete as \(record.model)")
            await onModelAdded(record.model)
        } catch {
            if cancelRequested.contains(id) {
                await finish(id, state: .cancelled, error: nil)
            } else if shuttingDown {
                updateProgress(id)
                if let record = pulls[id] { await persist(record) }
            } else {
                let message = (error as? BodhiError)?.message ?? "\(error)"
                logger.error("pull: \(record.reference) failed: \(message)")
                await finish(id, state: .failed, error: message)
            }
        }
        cancelRequested.remove(id)
        running[id] = nil
        pump()
    }

    private func finish(_ id: String, state: PullState, error: String?) async {
        guard var record = pulls[id] else { return }
        record.state = state
        record.error = error
        if state == .completed { record.completedBytes = record.totalBytes }
        record.updatedAt = Date()
        pulls[id] = record
        if state == .completed { fileBytes = fileBytes.filter { sha, _ in !record.files.contains { $0.sha256 == sha } } }
        publish(id, force: true)
        await persist(record)
        for continuation in subscribers.removeValue(forKey: id)?.values ?? [:].values { continuation.finish() }
    }

    /// Waits for `file`, downloading it unless another pull already is.
    private func fetch(_ file: PullFile, repo: String, commit: String, for id: String) async throws {
        let key = file.sha256
        // A download that is stopping still writes to the partial file; let it finish first.
        while let download = downloads[key], download.stopping { await download.task.value }
        if downloads[key] == nil {
            let downloader = self.downloader
            let task = Task {
                let result: Result<Void, any Error>
                do {
                    try await downloader.fetch(repo: repo, commit: commit, file: file) { bytes in
                        await self.fileProgressed(key, bytes: bytes)
                    }
                    result = .success(())
                } catch {
                    result = .failure(error)
                }
                self.downloadFinished(key, result)
            }
            downloads[key] = FileDownload(task: task, waiters: [:])
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                downloads[key]?.waiters[id] = continuation
            }
        } onCancel: {
            Task { await self.stopWaiting(key, id) }
        }
    }

    private func fileProgressed(_ key: String, bytes: Int64) {
        // A download's first report is where it starts (a resumed partial file, or a blob on disk already).
        downloadedBytes += max(0, bytes - (fileBytes[key] ?? bytes))
        fileBytes[key] = bytes
        for (id, record) in pulls where record.state == .downloading && record.files.contains(where: { $0.sha256 == key }) {
            updateProgress(id)
            publish(id, force: false)
            let now = ContinuousClock.now
            if let last = lastPersisted[id], now - last < .seconds(2) { continue }
            lastPersisted[id] = now
            let snapshot = pulls[id]
            Task { if let snapshot { await self.persist(snapshot) } }
        }
    }

    private func updateProgress(_ id: String) {
        guard var record = pulls[id] else { return }
        record.completedBytes = record.files.reduce(0) { $0 + min($1.size, fileBytes[$1.sha256] ?? 0) }
        record.updatedAt = Date()
        pulls[id] = record
    }

    private func downloadFinished(_ key: String, _ result: Result<Void, any Error>) {
        guard let download = downloads.removeValue(forKey: key) else { return }
        for continuation in download.waiters.values { continuation.resume(with: result) }
    }

    /// A cancelled pull stops waiting at once; the download itself stops when nobody waits.
    private func stopWaiting(_ key: String, _ id: String) {
        guard var download = downloads[key], let continuation = download.waiters.removeValue(forKey: id) else { return }
        continuation.resume(throwing: CancellationError())
        if download.waiters.isEmpty {
            download.stopping = true
            download.task.cancel()
        }
        downloads[key] = download
    }

    // MARK: - Reporting

    private func publish(_ id: String, force: Bool) {
        guard let record = pulls[id], let listeners = subscribers[id], !listeners.isEmpty else { return }
        let now = ContinuousClock.now
        if !force, let last = lastBroadcast[id], now - last < .milliseconds(100) { return }
        lastBroadcast[id] = now
        for continuation in listeners.values { continuation.yield(record) }
    }

    private func unsubscribe(_ id: String, _ token: UUID) {
        subscribers[id]?[token] = nil
    }

    private func persist(_ record: PullRecord) async {
        do {
            try await repository?.save(record)
        } catch {
            logger.error("pull: could not save the status of \(record.id): \(error)")
        }
    }
}

extension HubClient {
    /// The model info, with the network's hiccups retried a few times.
    func snapshotRetrying(repo: String, revision: String) async throws -> RepoSnapshot {
        var delay = Duration.milliseconds(500)
        for _ in 0..<3 {
            do { return try await snapshot(repo: repo, revision: revision) } catch is HubTransportError {
                try await Task.sleep(for: delay)
                delay *= 2
            }
        }
        do { return try await snapshot(repo: repo, revision: revision) } catch let error as HubTransportError {
            throw BodhiError(.hubError, status: 502, error.message)
        }
    }
}

extension PullManager {
    /// A pull manager for the Hub and cache `settings` name.
    public static func forSettings(
        _ settings: Settings, http: HTTPClient, repository: (any PullRepository)?, logger: Logger,
        onModelAdded: @escaping @Sendable (String) async -> Void = { _ in }
    ) -> PullManager {
        PullManager(
            hub: HubClient(endpoint: settings.hfEndpoint, token: settings.hfToken, http: http),
            cache: HuggingFaceCache(hubDirectory: settings.hubDirectory), repository: repository,
            maxConcurrent: settings.maxPulls, logger: logger, onModelAdded: onModelAdded)
    }
}
