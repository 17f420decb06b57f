import BodhiCore
import Foundation

/// The wire protocol a backend speaks.
public enum BackendFormat: String, Codable, Sendable, CaseIterable {
    /// OpenAI's Chat Completions (and `/v1/models`): OpenAI itself, another llama-server, vLLM,
    /// another Bodhi, Ollama's `/v1`.
    case openai
    /// Anthropic's Messages API.
    case anthropic
    /// Google's Gemini API (`generateContent`, `streamGenerateContent`).
    case gemini
}

/// A server or cloud API whose models Bodhi serves under `prefix/model`, as stored. The API key
/// is kept sealed (`SecretSealing`); it never leaves Bodhi again.
public struct BackendConfig: Sendable, Equatable {
    public var name: String
    /// The base URL, e.g. `http://10.0.0.2:8080/v1` or `https://api.anthropic.com`.
    public var url: String
    public var format: BackendFormat
    /// What its models' names start with (`prefix/model`); the backend's name unless set.
    public var prefix: String
    /// The API key, sealed; nil when the backend needs none.
    public var sealedKey: String?
    public var createdAt: Date
    public var updatedAt: Date

    public init(
        name: String, url: String, format: BackendFormat, prefix: String? = nil, sealedKey: String? = nil,
        createdAt: Date = Date(), updatedAt: Date = Date()
    ) {
        self.name = name
        self.url = url
        self.format = format
        self.prefix = prefix ?? name
        self.sealedKey = sealedKey
        self.createdAt = createdAt
        self.updatedAt = updatedAt
    }

    /// Whether `other` is this backend with the same settings (its dates aside); a new key is
    /// sealed anew, so a changed key is a change.
    public func sameSettings(as other: BackendConfig) -> Bool {
        (name, url, format, prefix, sealedKey) == (other.name, other.url, other.format, other.prefix, other.sealedKey)
    }

    /// Names and prefixes are short and have no `/`, which separates the prefix from the model.
    public static func validate(name: String, field: String) throws {
        guard name.wholeMatch(of: /[A-Za-z0-9][A-Za-z0-9._-]{0,63}/) != nil else {
            throw BodhiError.invalidRequest(
                "A backend \(field) is 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit (got '\(name)').",
                param: field)
        }
    }

    public func validate() throws {
        try Self.validate(name: name, field: "name")
        try Self.validate(name: prefix, field: "prefix")
        guard let components = URLComponents(string: url), let scheme = components.scheme?.lowercased(),
              scheme == "http" || scheme == "https", let host = components.host, !host.isEmpty,
              components.query == nil, components.fragment == nil
        else {
            throw BodhiError.invalidRequest(
                "A backend's URL is an http:// or https:// address without a query, e.g. http://10.0.0.2:8080/v1 (got '\(url)').",
                param: "url")
        }
    }
}

/// Where backends are kept (the database); the server never sees how.
public protocol BackendRepository: Sendable {
    func allBackends() async throws -> [BackendConfig]
    func saveBackend(_ backend: BackendConfig) async throws
    func deleteBackend(named name: String) async throws
}

/// A model a backend serves, as Bodhi names it: `prefix/id`.
public struct RemoteModel: Sendable, Equatable, Codable {
    /// The backend that serves it.
    public let backend: String
    /// Its id at the backend, as the backend's API names it.
    public let id: String
    /// `prefix/id`: what clients ask for.
    public let name: String
    /// Who owns it, as the backend says (OpenAI's `owned_by`), else the backend's name.
    public let ownedBy: String
    /// When it was made, as the backend says; else when Bodhi first saw it.
    public let created: Date

    public init(backend: String, id: String, name: String, ownedBy: String, created: Date) {
        self.backend = backend
        self.id = id
        self.name = name
        self.ownedBy = ownedBy
        self.created = created
    }

    enum CodingKeys: String, CodingKey {
        case backend, id, name, created
        case ownedBy = "owned_by"
    }
}

/// The models of the backends, for resolving names. `AliasRegistry` asks it for names that are
/// not local files, so that aliases and requests reach remote models the same way.
public protocol RemoteModelDirectory: Sendable {
    /// The remote model `name` names, as known now; nil when no backend serves it.
    func remoteModelNow(named name: String) -> RemoteModel?
    /// The remote model `name` names; when its prefix is a backend's but the model is not (yet)
    /// known, the backend's list is read again first (at most every few seconds). Nil when no
    /// backend serves it.
    func remoteModel(named name: String) async -> RemoteModel?
    /// Whether `remoteModel(named:)` would find nothing for `name` without reading any backend's
    /// list again: no backend serves it, and none that might was read in the last few seconds.
    func servesNoModelNow(named name: String) -> Bool
    /// Every remote model, by name.
    func remoteModels() -> [RemoteModel]
}
