import AsyncHTTPClient
import BodhiCore
import BodhiEngine
import BodhiModels
import Foundation
import Logging
import Synchronization

/// What `/bodhi/v1/backends` and `bodhi backends ls` show of a backend: never its key.
public struct BackendStatus: Codable, Sendable, Equatable {
    public let name: String
    public let url: String
    public let format: BackendFormat
    public let prefix: String
    public let hasAPIKey: Bool
    /// Its models as clients name them (`prefix/id`).
    public let models: [String]
    /// When its model list was last read.
    public let refreshedAt: Date?
    /// Why the last reading of its model list failed, if it did.
    public let error: String?
    public let createdAt: Date
    public let updatedAt: Date

    enum CodingKeys: String, CodingKey {
        case name, url, format, prefix, models, error
        case hasAPIKey = "has_api_key"
        case refreshedAt = "refreshed_at"
        case createdAt = "created_at"
        case updatedAt = "updated_at"
    }
}

/// The backends Bodhi serves models of, besides its own engines: kept in the database (keys
/// sealed), their model lists read at start, when listed after a while, and when a request names
/// a model of theirs not seen yet. A lock rather than an actor: names are looked up on every
/// request, without a suspension.
public final class BackendRegistry: RemoteModelDirectory, RemoteBackends {
    private struct Entry {
        var config: BackendConfig
        var backend: any RemoteBackend
        var models: [RemoteModel] = []
        var refreshedAt: Date?
        /// When its list was last asked for, successfully or not (for the debounce).
        var attemptedAt: ContinuousClock.Instant?
        var error: String?
    }

    private struct State {
        var entries: [String: Entry] = [:]
        /// Backend name by prefix.
        var byPrefix: [String: String] = [:]
        /// Every model by `prefix/id`.
        var byName: [String: RemoteModel] = [:]

        mutating func reindex() {
            byPrefix = Dictionary(entries.values.map { ($0.config.prefix, $0.config.name) }, uniquingKeysWith: { a, _ in a })
            byName = Dictionary(entries.values.flatMap(\.models).map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        }
    }

    private let state = Mutex(State())
    private let syncing = Mutex<Task<Void, Never>?>(nil)
    private let repository: (any BackendRepository)?
    private let sealer: (any SecretSealing)?
    private let http: HTTPClient
    private let logger: Logger

    /// A name with a backend's prefix but unknown is looked up again at most this often.
    static let unknownNameRefresh: Duration = .seconds(5)
    /// Listing the models reads a backend's list again when it is older than this.
    static let listRefresh: Duration = .seconds(300)

    public init(repository: (any BackendRepository)?, sealer: (any SecretSealing)?, http: HTTPClient, logger: Logger) {
        self.repository = repository
        self.sealer = sealer
        self.http = http
        self.logger = logger
    }

    /// Reads the backends from the database, then their model lists (in the background unless
    /// `waitForModels`: a backend that is down does not hold Bodhi's start).
    public func load(waitForModels: Bool = false) async throws {
        let changed = try await sync()
        if waitForModels {
            for name in changed { await refresh(name) }
        } else {
            for name in changed { Task { await self.refresh(name) } }
        }
    }

    /// Takes what the database says now: backends another process added (`bodhi backends add`
    /// while Bodhi runs, another gateway on the same database), changed or removed. Returns the
    /// names added or changed, whose model lists are still to be read.
    @discardableResult
    public func sync() async throws -> [String] {
        guard let repository else { return [] }
        let configs = try await repository.allBackends()
        let known = state.withLock { state in state.entries.mapValues(\.config) }
        var built: [String: any RemoteBackend] = [:]
        for config in configs where known[config.name].map({ !$0.sameSettings(as: config) }) ?? true {
            do {
                built[config.name] = try makeBackend(config, apiKey: try config.sealedKey.map(openKey))
            } catch {
                logger.error("backend skipped: its key cannot be opened", metadata: ["backend": "\(config.name)", "error": "\(error)"])
            }
        }
        let wanted = Set(configs.map(\.name))
        state.withLock { state in
            for name in state.entries.keys where !wanted.contains(name) { state.entries[name] = nil }
            for (name, backend) in built { state.entries[name] = Entry(config: backend.config, backend: backend) }
            state.reindex()
        }
        return Array(built.keys)
    }

    /// Reads the database again every `interval` until `stop()`, so that changes made elsewhere
    /// reach this process.
    public func startSyncing(every interval: Duration = .seconds(10)) {
        let task = Task { [weak self] in
            while !Task.isCancelled {
                try? await Task.sleep(for: interval)
                guard let self else { return }
                if let changed = try? await self.sync() {
                    for name in changed { await self.refresh(name) }
                }
            }
        }
        syncing.withLock { $0?.cancel(); $0 = task }
    }

    public func stop() {
        syncing.withLock { $0?.cancel(); $0 = nil }
    }

    // MARK: Managing

    /// Adds a backend after checking it answers with its model list (and so that its key works);
    /// what failed is the error's message.
    public func add(_ config: BackendConfig, apiKey: String?) async throws -> BackendStatus {
        var config = config
        try config.validate()
        let key = apiKey.map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }.flatMap { $0.isEmpty ? nil : $0 }
        try state.withLock { state in
            if state.entries[config.name] != nil {
                throw BodhiError.conflict("There is a backend '\(config.name)' already; remove it first (`bodhi backends rm \(config.name)`).")
            }
            if let owner = state.byPrefix[config.prefix] {
                throw BodhiError.conflict("The prefix '\(config.prefix)' is the backend '\(owner)''s; choose another with --prefix.")
            }
        }
        let backend = try makeBackend(config, apiKey: key)
        let listed: [ListedModel]
        do {
            listed = try await backend.listModels()
        } catch let error as BodhiError {
            throw BodhiError(.invalidRequest, status: 400, "Bodhi could not add the backend '\(config.name)': \(error.message)", param: "url")
        }
        guard !listed.isEmpty else {
            throw BodhiError.invalidRequest("Bodhi could not add the backend '\(config.name)': it lists no models at \(config.url).", param: "url")
        }
        config.sealedKey = try key.map(sealKey)
        config.createdAt = Date()
        config.updatedAt = config.createdAt
        try await repository?.saveBackend(config)
        let models = Self.models(listed, of: config)
        return state.withLock { state in
            state.entries[config.name] = Entry(
                config: config, backend: backend, models: models, refreshedAt: Date(), attemptedAt: .now, error: nil)
            state.reindex()
            return Self.status(state.entries[config.name]!)
        }
    }

    @discardableResult
    public func remove(_ name: String) async throws -> BackendStatus {
        let entry = try state.withLock { state in try Self.entry(name, in: state) }
        try await repository?.deleteBackend(named: name)
        state.withLock { state in
            state.entries[name] = nil
            state.reindex()
        }
        return Self.status(entry)
    }

    public func list() -> [BackendStatus] {
        state.withLock { state in state.entries.values.map(Self.status) }.sorted { $0.name < $1.name }
    }

    public func status(of name: String) throws -> BackendStatus {
        try state.withLock { state in Self.status(try Self.entry(name, in: state)) }
    }

    /// Reads the backend's model list now: its status after, with the error when it failed.
    public func test(_ name: String) async throws -> BackendStatus {
        _ = try status(of: name)
        await refresh(name)
        return try status(of: name)
    }

    // MARK: Names

    public func remoteModelNow(named name: String) -> RemoteModel? {
        state.withLock { $0.byName[name] }
    }

    public func remoteModel(named name: String) async -> RemoteModel? {
        if let model = remoteModelNow(named: name) { return model }
        guard let stale = staleBackend(for: name) else { return nil }
        await refresh(stale)
        return remoteModelNow(named: name)
    }

    public func servesNoModelNow(named name: String) -> Bool {
        remoteModelNow(named: name) == nil && staleBackend(for: name) == nil
    }

    /// The backend whose prefix `name` has, when its list was not read in the last few seconds.
    private func staleBackend(for name: String) -> String? {
        guard let slash = name.firstIndex(of: "/") else { return nil }
        let prefix = String(name[..<slash])
        return state.withLock { state in
            guard let backend = state.byPrefix[prefix], let entry = state.entries[backend] else { return nil }
            if let attempted = entry.attemptedAt, ContinuousClock.now - attempted < Self.unknownNameRefresh { return nil }
            return backend
        }
    }

    public func remoteModels() -> [RemoteModel] {
        let (models, stale) = state.withLock { state in
            let stale = state.entries.values.filter { entry in
                entry.attemptedAt.map { ContinuousClock.now - $0 >= Self.listRefresh } ?? false
            }.map(\.config.name)
            return (state.byName.values.sorted { $0.name < $1.name }, stale)
        }
        for name in stale { Task { await self.refresh(name) } }
        return models
    }

    public func backend(named name: String) -> (any InferenceBackend)? {
        state.withLock { $0.entries[name]?.backend }
    }

    // MARK: Inside

    /// Reads one backend's model list; on failure it keeps the models it had, and says why.
    func refresh(_ name: String) async {
        guard let backend = state.withLock({ state -> (any RemoteBackend)? in
            state.entries[name]?.attemptedAt = .now
            return state.entries[name]?.backend
        }) else { return }
        do {
            let models = Self.models(try await backend.listModels(), of: backend.config)
            state.withLock { state in
                state.entries[name]?.models = models
                state.entries[name]?.refreshedAt = Date()
                state.entries[name]?.error = nil
                state.reindex()
            }
        } catch {
            let message = (error as? BodhiError)?.message ?? "\(error)"
            logger.warning("backend's model list could not be read", metadata: ["backend": "\(name)", "error": "\(message)"])
            state.withLock { $0.entries[name]?.error = message }
        }
    }

    private func makeBackend(_ config: BackendConfig, apiKey: String?) throws -> any RemoteBackend {
        let transport = BackendTransport(http: http, backend: config.name)
        switch config.format {
        case .openai: return OpenAICompatibleBackend(config: config, apiKey: apiKey, transport: transport)
        case .anthropic: return AnthropicBackend(config: config, apiKey: apiKey, transport: transport)
        case .gemini: return GeminiBackend(config: config, apiKey: apiKey, transport: transport)
        }
    }

    private func sealKey(_ key: String) throws -> String {
        guard let sealer else { throw BodhiError.internalError("Bodhi has no key to seal secrets with.") }
        return try sealer.seal(key)
    }

    private func openKey(_ sealed: String) throws -> String {
        guard let sealer else { throw BodhiError.internalError("Bodhi has no key to open secrets with.") }
        return try sealer.open(sealed)
    }

    private static func entry(_ name: String, in state: State) throws -> Entry {
        guard let entry = state.entries[name] else {
            throw BodhiError.notFound("There is no backend '\(name)'. List backends with GET /bodhi/v1/backends or `bodhi backends ls`.")
        }
        return entry
    }

    private static func models(_ listed: [ListedModel], of config: BackendConfig) -> [RemoteModel] {
        let now = Date()
        return listed.map { model in
            RemoteModel(
                backend: config.name, id: model.id, name: config.prefix + "/" + model.id,
                ownedBy: model.ownedBy ?? config.name, created: model.created ?? now)
        }
    }

    private static func status(_ entry: Entry) -> BackendStatus {
        BackendStatus(
            name: entry.config.name, url: entry.config.url, format: entry.config.format, prefix: entry.config.prefix,
            hasAPIKey: entry.config.sealedKey != nil, models: entry.models.map(\.name).sorted(), refreshedAt: entry.refreshedAt,
            error: entry.error, createdAt: entry.config.createdAt, updatedAt: entry.config.updatedAt)
    }
}

extension BackendRegistry {
    /// The HTTP client for backends: connections kept a while (a remote server is used again
    /// and again), and a connect timeout that says soon when an address does not answer.
    public static func makeHTTPClient() -> HTTPClient {
        var configuration = HTTPClient.Configuration()
        configuration.connectionPool = .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: 256)
        configuration.timeout = .init(connect: .seconds(10))
        configuration.decompression = .enabled(limit: .ratio(100))
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }
}
