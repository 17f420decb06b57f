import BodhiCore
import BodhiModels
import Foundation

/// What `bodhi pull` accepts: `owner/repo` (its only model, else Q4_K_M as Ollama picks),
/// `owner/repo:QUANT`, or `owner/repo/path/file.gguf`; Ollama's `hf.co/` prefix and a full
/// Hub URL prefix are accepted too.
public struct PullReference: Sendable, Equatable, CustomStringConvertible {
    public enum Selector: Sendable, Equatable {
        case preferred
        case quantization(String)
        case file(String)
    }

    public let repo: String
    public let selector: Selector

    /// The quantization chosen when a repository has several models and none is named.
    public static let preferredQuantization = "Q4_K_M"

    public init(parsing text: String) throws {
        var rest = text.trimmingCharacters(in: .whitespaces)
        for prefix in ["https://huggingface.co/", "http://huggingface.co/", "huggingface.co/", "hf.co/"]
        where rest.lowercased().hasPrefix(prefix) {
            rest = String(rest.dropFirst(prefix.count))
            break
        }
        var tag: String?
        if let colon = rest.lastIndex(of: ":"), !rest[colon...].contains("/") {
            tag = String(rest[rest.index(after: colon)...])
            rest = String(rest[..<colon])
        }
        let segments = rest.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        let usage = "Name a model as owner/repo, owner/repo:QUANT or owner/repo/file.gguf (got '\(text)')."
        guard segments.count >= 2, segments.allSatisfy({ !$0.isEmpty && $0 != "." && $0 != ".." }),
              segments[0...1].allSatisfy({ $0.wholeMatch(of: /[A-Za-z0-9][A-Za-z0-9._-]*/) != nil }) else {
            throw BodhiError.invalidRequest(usage, param: "model")
        }
        repo = segments[0] + "/" + segments[1]
        if segments.count > 2 {
            let path = segments[2...].joined(separator: "/")
            guard tag == nil, path.lowercased().hasSuffix(".gguf") else { throw BodhiError.invalidRequest(usage, param: "model") }
            selector = .file(path)
        } else if let tag, !tag.isEmpty, tag.lowercased() != "latest" {
            selector = .quantization(tag.uppercased())
        } else {
            selector = .preferred
        }
    }

    public var description: String {
        switch selector {
        case .preferred: return repo
        case .quantization(let label): return "\(repo):\(label)"
        case .file(let path): return "\(repo)/\(path)"
        }
    }

    /// One model in a repository listing: a file, or the parts of a split file.
    public struct Candidate: Sendable, Equatable {
        public let label: String
        public let files: [HubClient.RepoFile]
    }

    /// The model this reference names among `files`; a missing or ambiguous choice is an
    /// error that lists what the repository has.
    public func choose(from files: [HubClient.RepoFile]) throws -> Candidate {
        let candidates = Self.candidates(in: files)
        let available = candidates.map { "\($0.label) (\($0.files[0].path))" }.joined(separator: ", ")
        let listing = candidates.isEmpty ? "\(repo) has no GGUF model files." : "\(repo) has: \(available)."
        switch selector {
        case .file(let path):
            guard let match = candidates.first(where: { $0.files.contains { $0.path == path } }) else {
                throw BodhiError.notFound("\(repo) has no file \(path). \(listing)")
            }
            return match
        case .quantization(let label):
            let matches = candidates.filter { $0.label.uppercased() == label }
            if matches.count == 1 { return matches[0] }
            if matches.isEmpty { throw BodhiError.notFound("\(repo) has no \(label) model. \(listing)") }
            throw BodhiError.invalidRequest(
                "\(repo) has several \(label) files: \(matches.map { $0.files[0].path }.joined(separator: ", ")). Pull one by its path, e.g. \(repo)/\(matches[0].files[0].path).",
                param: "model")
        case .preferred:
            if candidates.count == 1 { return candidates[0] }
            let preferred = candidates.filter { $0.label.uppercased() == Self.preferredQuantization }
            if preferred.count == 1 { return preferred[0] }
            if candidates.isEmpty { throw BodhiError.notFound(listing) }
            throw BodhiError.invalidRequest("\(repo) has several models; name one as \(repo):QUANT. \(listing)", param: "model")
        }
    }

    /// GGUF models in a listing, split parts grouped; incomplete splits left out. A vision
    /// projector (`mmproj*.gguf`) is no model of its own: it comes with each model of its folder,
    /// after the model's parts.
    static func candidates(in files: [HubClient.RepoFile]) -> [Candidate] {
        var groups: [String: [(GGUFFileName, HubClient.RepoFile)]] = [:]
        var projectors: [String: [HubClient.RepoFile]] = [:]
        for file in files {
            let fileName = (file.path as NSString).lastPathComponent
            guard let name = GGUFFileName(fileName) else { continue }
            let directory = (file.path as NSString).deletingLastPathComponent
            if name.isAuxiliary {
                projectors[directory, default: []].append(file)
                continue
            }
            groups[directory.isEmpty ? name.stem : directory + "/" + name.stem, default: []].append((name, file))
        }
        return groups.sorted { $0.key < $1.key }.compactMap { stem, members in
            let ordered = members.sorted { ($0.0.split?.part ?? 1) < ($1.0.split?.part ?? 1) }
            let expected = ordered[0].0.split?.count ?? 1
            guard ordered.count == expected, ordered.enumerated().allSatisfy({ $0.offset + 1 == ($0.element.0.split?.part ?? 1) }) else {
                return nil
            }
            let folder = projectors[(ordered[0].1.path as NSString).deletingLastPathComponent] ?? []
            let projector = GGUFFileName.projector(among: folder.map(\.path)).flatMap { path in folder.first { $0.path == path } }
            return Candidate(label: ordered[0].0.quantization ?? stem, files: ordered.map(\.1) + (projector.map { [$0] } ?? []))
        }
    }
}
