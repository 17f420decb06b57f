import BodhiCore
import BodhiModels
import Foundation
import NIOCore
import NIOPosix

/// Blobs sent to Bodhi (Ollama's `POST /api/blobs/sha256:...`): kept under
/// `$HF_HOME/hub/.bodhi-uploads/{sha256}` once their content matches their name, until
/// `/api/create` lays them into the cache as a model.
public struct BlobUploads: Sendable {
    let directory: String

    public init(hubDirectory: String) {
        directory = hubDirectory + "/.bodhi-uploads"
    }

    /// `sha256:<64 hex>` → the hex, or a 400.
    public static func hex(ofDigest digest: String) throws -> String {
        let hex = digest.hasPrefix("sha256:") ? String(digest.dropFirst(7)).lowercased() : ""
        guard hex.count == 64, hex.allSatisfy(\.isHexDigit) else {
            throw BodhiError.invalidRequest("a digest is sha256:<64 hex digits> (got '\(digest)')")
        }
        return hex
    }

    public func path(of hex: String) -> String { directory + "/" + hex }

    public func exists(_ hex: String) -> Bool {
        FileManager.default.fileExists(atPath: path(of: hex))
    }

    /// Stores `body` as the blob `hex`; refused (and nothing kept) when its SHA-256 differs.
    public func store<Body: AsyncSequence>(_ body: Body, hex: String) async throws where Body.Element == ByteBuffer {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let partial = path(of: hex) + ".\(UUID.random().uuidString).incomplete"
        let file = try await BlobFile.open(path: partial, keepingFirst: 0)
        do {
            var batch: [ByteBuffer] = []
            var size = 0
            for try await chunk in body {
                batch.append(chunk)
                size += chunk.readableBytes
                if size >= BlobDownloader.batchBytes {
                    try await file.append(batch)
                    batch = []
                    size = 0
                }
            }
            if !batch.isEmpty { try await file.append(batch) }
        } catch {
            file.close()
            unlink(partial)
            throw error
        }
        let (_, digest) = try await NIOThreadPool.singleton.runIfActive { try file.finish() }
        guard digest == hex else {
            unlink(partial)
            throw BodhiError.invalidRequest("digest mismatch: the body's SHA-256 is \(digest), not \(hex)")
        }
        guard rename(partial, path(of: hex)) == 0 else {
            unlink(partial)
            throw BodhiError.internalError("Could not keep the blob: \(String(cString: strerror(errno)))")
        }
    }

    /// Lays uploaded blobs into the cache as the local repository `local/{name}` (moved, not
    /// copied), so that the catalog serves them like any pulled model; returns the repo.
    public func install(files: [(name: String, hex: String)], as modelName: String, cache: HuggingFaceCache) throws -> String {
        let repoName = modelName.replacingOccurrences(of: "/", with: "-").replacingOccurrences(of: ":", with: "-")
        let repo = "local/" + repoName
        for file in files {
            guard file.name.lowercased().hasSuffix(".gguf"), !file.name.contains("..") else {
                throw BodhiError.invalidRequest("files must be GGUF files (got '\(file.name)')")
            }
            guard exists(file.hex) || FileManager.default.fileExists(atPath: cache.blobPath(repo: repo, etag: file.hex)) else {
                throw BodhiError.invalidRequest("blob sha256:\(file.hex) was not uploaded; POST it to /api/blobs/sha256:\(file.hex) first")
            }
            let blob = cache.blobPath(repo: repo, etag: file.hex)
            try FileManager.default.createDirectory(atPath: (blob as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            if exists(file.hex), rename(path(of: file.hex), blob) != 0 {
                throw BodhiError.internalError("Could not move the blob into the cache: \(String(cString: strerror(errno)))")
            }
            try cache.linkSnapshot(repo: repo, commit: "local", path: file.name, etag: file.hex)
        }
        try cache.writeRef(repo: repo, revision: "main", commit: "local")
        return repo
    }
}
