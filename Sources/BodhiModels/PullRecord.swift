import Foundation

/// One file a pull downloads, as the Hub lists it.
public struct PullFile: Codable, Sendable, Equatable {
    /// Path inside the repository.
    public let path: String
    public let size: Int64
    /// The LFS oid: the file's SHA-256, which also names its blob in the cache.
    public let sha256: String

    public init(path: String, size: Int64, sha256: String) {
        self.path = path
        self.size = size
        self.sha256 = sha256
    }
}

/// A pull's lifecycle. `queued` and `downloading` are unfinished: a restarted Bodhi resumes them.
public enum PullState: String, Codable, Sendable {
    case queued, downloading, completed, failed, cancelled

    public var isFinished: Bool { self == .completed || self == .failed || self == .cancelled }
}

/// A pull as it is persisted and reported.
public struct PullRecord: Codable, Sendable, Equatable {
    public let id: String
    /// What the user asked for, e.g. `owner/repo:Q4_K_M`.
    public let reference: String
    public let repo: String
    /// The revision asked for (`main` by default) and the commit it resolved to.
    public let revision: String
    public let commit: String
    /// The name the model is served under once pulled.
    public let model: String
    public let files: [PullFile]
    public var state: PullState
    public var error: String?
    public let totalBytes: Int64
    public var completedBytes: Int64
    public let createdAt: Date
    public var updatedAt: Date

    public init(
        id: String, reference: String, repo: String, revision: String, commit: String, model: String,
        files: [PullFile], state: PullState = .queued, error: String? = nil, completedBytes: Int64 = 0,
        createdAt: Date = Date(), updatedAt: Date = Date()
    ) {
        self.id = id
        self.reference = reference
        self.repo = repo
        self.revision = revision
        self.commit = commit
        self.model = model
        self.files = files
        self.state = state
        self.error = error
        totalBytes = files.reduce(0) { $0 + $1.size }
        self.completedBytes = completedBytes
        self.createdAt = createdAt
        self.updatedAt = updatedAt
    }

    enum CodingKeys: String, CodingKey {
        case id, reference, repo, revision, commit, model, files, state, error
        case totalBytes = "total_bytes"
        case completedBytes = "completed_bytes"
        case createdAt = "created_at"
        case updatedAt = "updated_at"
    }
}

/// Where pulls are persisted, so that status survives a restart and unfinished pulls resume.
public protocol PullRepository: Sendable {
    func save(_ pull: PullRecord) async throws
    func pull(id: String) async throws -> PullRecord?
    /// Newest first.
    func pulls(limit: Int) async throws -> [PullRecord]
    func unfinishedPulls() async throws -> [PullRecord]
}
