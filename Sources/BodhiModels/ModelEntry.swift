import Foundation

/// A model file (or the parts of a split model) found in the Hugging Face cache.
public struct ModelEntry: Sendable, Equatable, Codable {
    /// The name clients use: `owner/repo:QUANT`.
    public let id: String
    /// The Hugging Face repository, `owner/repo`.
    public let repo: String
    public let quantization: String?
    /// The snapshot (commit) the file was found in.
    public let revision: String
    /// The file's path inside the repository, e.g. `SmolLM2-135M-Instruct.Q4_1.gguf`.
    public let fileName: String
    /// The snapshot path of the file to load (the first part of a split model).
    public let path: String
    /// Every part's snapshot path, in order; one element for single-file models.
    public let parts: [String]
    public let sizeBytes: Int64
    public let modified: Date
    /// A vision projector (`mmproj*.gguf`) beside the model in its snapshot, passed to its engine
    /// with `--mmproj` so that it reads images.
    public var projector: String?
    public var projectorBytes: Int64 = 0

    public var owner: String { String(repo.split(separator: "/").first ?? "") }
}
