import AsyncHTTPClient
import BodhiCore
import BodhiModels
import Crypto
import Foundation
import Logging
import NIOCore
import NIOPosix

/// Downloads one file into the cache's `blobs/` as `huggingface_hub` does — into
/// `blobs/{etag}.incomplete`, resuming with `Range` from whatever is already there — and
/// makes it a blob only once its size and SHA-256 match what the Hub promised.
struct BlobDownloader: Sendable {
    let hub: HubClient
    let cache: HuggingFaceCache
    let logger: Logger
    /// Waits between attempts after a network failure; the last failure is reported.
    var retryDelays: [Duration] = [.seconds(1), .seconds(2), .seconds(4), .seconds(8), .seconds(16)]

    /// Bytes batched before a disk write; large enough that the hop to the I/O thread is noise.
    static let batchBytes = 4 * 1024 * 1024
    /// How often progress is reported while bytes arrive.
    static let progressInterval: Duration = .milliseconds(100)

    /// Ensures `file` is a verified blob. `progress` hears the bytes on disk so far.
    func fetch(repo: String, commit: String, file: PullFile, progress: @escaping @Sendable (Int64) async -> Void) async throws {
        let blob = cache.blobPath(repo: repo, etag: file.sha256)
        if Self.fileSize(blob) == file.size {
            await progress(file.size)
            return
        }
        let metadata = try await withRetries(what: file.path) {
            try await hub.fileMetadata(repo: repo, revision: commit, path: file.path)
        }
        if let etag = metadata.etag, Self.isSHA256(etag), etag.lowercased() != file.sha256 {
            throw BodhiError(.hubError, status: 502,
                             "The Hub lists \(file.path) in \(repo) with SHA-256 \(file.sha256) but serves \(etag); try the pull again.")
        }
        if let size = metadata.size, size != file.size {
            throw BodhiError(.hubError, status: 502,
                             "The Hub lists \(file.path) in \(repo) with \(file.size) bytes but serves \(size); try the pull again.")
        }
        let partial = blob + ".incomplete"
        try FileManager.default.createDirectory(
            atPath: (blob as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try Self.ensureSpace(for: file.size - (Self.fileSize(partial) ?? 0), at: partial, file: file)

        try await withRetries(what: file.path) {
            try await attempt(url: metadata.location, repo: repo, file: file, partial: partial, progress: progress)
        }
        guard rename(partial, blob) == 0 else {
            throw BodhiError.internalError("Could not move \(partial) into place: \(String(cString: strerror(errno)))")
        }
    }

    /// One request: resume from the partial file, append the body, verify at the end.
    private func attempt(
        url: String, repo: String, file: PullFile, partial: String, progress: @escaping @Sendable (Int64) async -> Void
    ) async throws {
        var offset = Self.fileSize(partial) ?? 0
        if offset > file.size { offset = 0 }
        let response = try await hub.download(url: url, offset: offset, repo: repo, path: file.path)
        let code = response.status.code
        if code == 416 || (code == 206 && Self.rangeStart(response.headers.first(name: "content-range")) != offset) {
            // The server cannot continue where we are: start over.
            _ = try? await response.body.collect(upTo: 1024 * 1024)
            truncate(partial, 0)
            throw HubTransportError(message: "The server could not resume \(file.path) at byte \(offset); starting over.")
        }
        if code == 200 { offset = 0 }

        let blobFile = try await BlobFile.open(path: partial, keepingFirst: offset)
        var closed = false
        defer { if !closed { blobFile.close() } }
        await progress(offset)
        // Chunks are kept as they arrived and written with one writev: no copy into a batch.
        var batch: [ByteBuffer] = []
        var batchBytes = 0
        var written = offset
        var received = offset
        var lastReport = ContinuousClock.now
        var pendingWrite: Task<Void, any Error>?
        do {
            for try await chunk in response.body {
                received += Int64(chunk.readableBytes)
                batch.append(chunk)
                batchBytes += chunk.readableBytes
                let now = ContinuousClock.now
                if now - lastReport >= Self.progressInterval {
                    lastReport = now
                    await progress(min(received, file.size))
                }
                if batchBytes >= Self.batchBytes {
                    try await pendingWrite?.value
                    written += Int64(batchBytes)
                    if written > file.size {
                        throw BodhiError(.hubError, status: 502,
                                         "\(repo) sent more than the \(file.size) bytes of \(file.path); the partial file was removed, pull again.")
                    }
                    let full = batch
                    batch = []
                    batchBytes = 0
                    // The write of this batch overlaps the receipt of the next.
                    pendingWrite = Task { try await blobFile.append(full) }
                }
            }
            try await pendingWrite?.value
            if !batch.isEmpty {
                let last = batch
                try await blobFile.append(last)
            }
        } catch let error as BodhiError {
            try? await pendingWrite?.value
            blobFile.close()
            closed = true
            unlink(partial)
            throw error
        } catch {
            // What arrived is good: keep it, so that the next attempt (or a retry after a
            // cancel) resumes after it.
            try? await pendingWrite?.value
            let rest = batch
            // In a task of its own: the thread pool refuses work from a cancelled task.
            try? await Task { try await blobFile.append(rest) }.value
            if error is CancellationError || Task.isCancelled { throw CancellationError() }
            throw HubTransportError(message: "The download of \(file.path) broke off: \(error)")
        }
        closed = true
        let (size, digest) = try await NIOThreadPool.singleton.runIfActive { try blobFile.finish() }
        await progress(min(size, file.size))
        if size < file.size {
            throw HubTransportError(message: "The download of \(file.path) ended after \(size) of \(file.size) bytes.")
        }
        if size > file.size || (Self.isSHA256(file.sha256) && digest != file.sha256) {
            unlink(partial)
            throw BodhiError(.hubError, status: 502,
                             "\(file.path) from \(repo) failed verification: expected \(file.size) bytes with SHA-256 \(file.sha256), got \(size) bytes with SHA-256 \(digest). The partial file was removed; pull again.")
        }
    }

    /// Runs `body`, retrying network failures with backoff; other errors end it at once.
    private func withRetries<T: Sendable>(what: String, _ body: () async throws -> T) async throws -> T {
        var attempt = 0
        while true {
            do {
                return try await body()
            } catch let error as HubTransportError {
                guard attempt < retryDelays.count else {
                    throw BodhiError(.hubError, status: 502, "\(error.message) (gave up after \(attempt + 1) attempts)")
                }
                logger.warning("pull: \(error.message); retrying \(what) in \(retryDelays[attempt])")
                try await Task.sleep(for: retryDelays[attempt])
                attempt += 1
            }
        }
    }

    private static func ensureSpace(for bytes: Int64, at path: String, file: PullFile) throws {
        guard let free = SystemResources.freeDiskBytes(at: (path as NSString).deletingLastPathComponent) else { return }
        if bytes > free {
            throw BodhiError(.insufficientStorage, status: 507,
                             "Not enough disk space for \(file.path): it needs \(bytes) more bytes, and \(free) are free in \((path as NSString).deletingLastPathComponent).")
        }
    }

    static func fileSize(_ path: String) -> Int64? {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        return Int64(info.st_size)
    }

    static func isSHA256(_ text: String) -> Bool {
        text.count == 64 && text.allSatisfy(\.isHexDigit)
    }

    /// `bytes 100-199/200` → 100.
    static func rangeStart(_ header: String?) -> Int64? {
        guard let header, let match = header.firstMatch(of: /bytes\s+(\d+)-/) else { return nil }
        return Int64(match.1)
    }
}

/// An open partial blob and the running SHA-256 of its content.
///
/// `@unchecked Sendable`: its state is only touched by thread-pool jobs, and the downloader awaits
/// each `append` before it starts the next; within one `append` the write touches only the file
/// state and the hash only `digest`, so no state is ever touched from two threads at once.
final class BlobFile: @unchecked Sendable {
    private var descriptor: Int32
    private let digest = RunningDigest()
    private var size: Int64 = 0
    private let path: String

    private init(descriptor: Int32, path: String) {
        self.descriptor = descriptor
        self.path = path
    }

    /// Opens `path`, keeps its first `offset` bytes (hashing them) and drops the rest.
    static func open(path: String, keepingFirst offset: Int64) async throws -> BlobFile {
        try await NIOThreadPool.singleton.runIfActive {
            let descriptor = Glibc.open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
            guard descriptor >= 0 else {
                throw BodhiError.internalError("Could not open \(path): \(String(cString: strerror(errno)))")
            }
            let file = BlobFile(descriptor: descriptor, path: path)
            guard ftruncate(descriptor, off_t(offset)) == 0 else {
                file.close()
                throw BodhiError.internalError("Could not truncate \(path): \(String(cString: strerror(errno)))")
            }
            var buffer = [UInt8](repeating: 0, count: 4 * 1024 * 1024)
            var remaining = offset
            while remaining > 0 {
                let count = buffer.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, min($0.count, Int(remaining))) }
                guard count > 0 else { break }
                buffer.withUnsafeBytes { file.digest.update(UnsafeRawBufferPointer(rebasing: $0[..<count])) }
                remaining -= Int64(count)
            }
            file.size = offset - remaining
            lseek(descriptor, off_t(file.size), SEEK_SET)
            return file
        }
    }

    /// Writes and hashes `chunks`, the two at once on the thread pool (each alone is about as
    /// slow as the network on loopback).
    func append(_ chunks: [ByteBuffer]) async throws {
        async let written: Void = NIOThreadPool.singleton.runIfActive { try self.write(chunks) }
        async let hashed: Void = NIOThreadPool.singleton.runIfActive { self.digest.update(chunks) }
        _ = try await (written, hashed)
    }

    private func write(_ chunks: [ByteBuffer]) throws {
        var remaining = chunks[...]
        while !remaining.isEmpty {
            let count = try writeSome(remaining.prefix(Self.maxIOVectors))
            size += Int64(count)
            // Drop what was written: whole chunks, then the front of a partly written one.
            var left = count
            while left > 0, let first = remaining.first {
                if first.readableBytes <= left {
                    left -= first.readableBytes
                    remaining.removeFirst()
                } else {
                    var rest = first
                    rest.moveReaderIndex(forwardBy: left)
                    remaining[remaining.startIndex] = rest
                    left = 0
                }
            }
        }
    }

    private static let maxIOVectors = 128

    /// One `writev` of `chunks`; returns the bytes written.
    private func writeSome(_ chunks: ArraySlice<ByteBuffer>) throws -> Int {
        while true {
            let count = Self.withPointers(chunks) { pointers in
                let vectors = pointers.map { iovec(iov_base: UnsafeMutableRawPointer(mutating: $0.baseAddress), iov_len: $0.count) }
                return writev(descriptor, vectors, Int32(vectors.count))
            }
            if count >= 0 { return count }
            if errno == EINTR { continue }
            if errno == ENOSPC || errno == EDQUOT {
                throw BodhiError(.insufficientStorage, status: 507,
                                 "The disk is full: writing \(path) failed after \(size) bytes. The partial file was removed; free some space and pull again.")
            }
            throw BodhiError.internalError("Could not write \(path): \(String(cString: strerror(errno)))")
        }
    }

    /// Calls `body` with the readable bytes of every buffer, all valid at once (the pointers
    /// are only valid inside the nested `withUnsafeReadableBytes` calls, hence the recursion).
    private static func withPointers<R>(
        _ buffers: ArraySlice<ByteBuffer>, _ body: ([UnsafeRawBufferPointer]) -> R
    ) -> R {
        var collected: [UnsafeRawBufferPointer] = []
        collected.reserveCapacity(buffers.count)
        return withPointers(buffers, collecting: &collected, body)
    }

    private static func withPointers<R>(
        _ buffers: ArraySlice<ByteBuffer>, collecting collected: inout [UnsafeRawBufferPointer],
        _ body: ([UnsafeRawBufferPointer]) -> R
    ) -> R {
        guard let first = buffers.first else { return body(collected) }
        return first.withUnsafeReadableBytes { pointer in
            collected.append(pointer)
            return withPointers(buffers.dropFirst(), collecting: &collected, body)
        }
    }

    /// Flushes to disk and closes; returns the size and the hex SHA-256.
    func finish() throws -> (Int64, String) {
        let synced = fsync(descriptor) == 0
        let reason = String(cString: strerror(errno))
        close()
        if !synced {
            throw BodhiError(.insufficientStorage, status: 507, "Could not flush \(path) to disk: \(reason).")
        }
        return (size, digest.hexDigest())
    }

    func close() {
        if descriptor >= 0 {
            Glibc.close(descriptor)
            descriptor = -1
        }
    }
}

/// A SHA-256 fed in order. `@unchecked Sendable` for the same reason as `BlobFile`, which owns it:
/// one update at a time, each awaited before the next.
final class RunningDigest: @unchecked Sendable {
    private var hasher = SHA256()

    func update(_ bytes: UnsafeRawBufferPointer) {
        hasher.update(bufferPointer: bytes)
    }

    func update(_ chunks: [ByteBuffer]) {
        for chunk in chunks { chunk.withUnsafeReadableBytes { hasher.update(bufferPointer: $0) } }
    }

    func hexDigest() -> String {
        hasher.finalize().lowercaseHex
    }
}
