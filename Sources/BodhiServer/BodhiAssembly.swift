import AsyncHTTPClient
import BodhiBackends
import BodhiChats
import BodhiCore
import BodhiEngine
import BodhiHub
import BodhiIdentity
import BodhiModels
import Logging

/// Where Bodhi keeps its data, as the services need it: the store, seen through its repositories.
public typealias BodhiRepositories = AliasRepository & RouterRepository & BackendRepository & PullRepository
    & IdentityRepository & ChatRepository & ResponseRepository

/// Bodhi, assembled: every service built and wired in one place, from the settings and what the
/// caller owns and closes (the store, the HTTP clients). `bodhi serve` assembles it here, and so do
/// the tests; what they differ in are the arguments.
public struct BodhiAssembly: Sendable {
    public let services: BodhiServices
    /// What the caller runs and stops beside the HTTP listeners.
    public let supervisor: EngineSupervisor
    public let backends: BackendRegistry
    public let pulls: PullManager
    public let engines: EngineClient
    public let streams: StreamCutoff

    /// - Parameters:
    ///   - engineHTTP: for the engines' health and metrics (inference goes through `EngineClient`).
    ///   - backendHTTP: for remote servers and cloud APIs (`BackendRegistry.makeHTTPClient`).
    ///   - hubHTTP: for the Hugging Face Hub.
    ///   - readinessEngineBinary: the engine binary `/health/ready` checks (default: the settings').
    public static func assemble(
        settings: Settings, store: any BodhiRepositories, databasePing: @escaping @Sendable () async throws -> Void,
        secrets: any SecretSealing, engineHTTP: HTTPClient, backendHTTP: HTTPClient, hubHTTP: HTTPClient, logger: Logger,
        flags: [SettingKey: (flag: String, value: String)] = [:], environment: [String: String],
        bcryptCost: UInt8 = 12, maxRequestBodyBytes: Int = 32 * 1024 * 1024, readinessEngineBinary: String? = nil
    ) async throws -> BodhiAssembly {
        let catalog = ModelCatalog(hubDirectory: settings.hubDirectory)
        let backends = BackendRegistry(repository: store, sealer: secrets, http: backendHTTP, logger: logger)
        let aliases = AliasRegistry(repository: store, catalog: catalog, remote: backends, routers: store)
        try await backends.load()
        try await aliases.load()
        let supervisor = EngineSupervisor(configuration: EngineConfiguration(settings: settings), http: engineHTTP, logger: logger)
        let engines = EngineClient()
        let pulls = PullManager.forSettings(settings, http: hubHTTP, repository: store, logger: logger) { _ in
            await catalog.refresh()
        }
        let streams = StreamCutoff()
        let gateway = Gateway(settings: settings)
        let services = BodhiServices(
            catalog: catalog, aliases: aliases, backends: backends, supervisor: supervisor,
            inference: InferenceService(
                models: aliases, supervisor: supervisor, engines: engines, logger: logger, admission: gateway.admission,
                observers: gateway.observers, streams: streams, remotes: backends, maxOutputTokens: settings.maxOutputTokens),
            pulls: pulls, identity: IdentityService(repository: store, bcryptCost: bcryptCost), chats: ChatService(repository: store),
            storedResponses: store,
            settings: SettingsEditor(settings: settings, flags: flags, environment: environment) { changed in
                await supervisor.reconfigure(changed)
                gateway.apply(changed)
            },
            readiness: Readiness(
                databasePing: databasePing, hubDirectory: settings.hubDirectory,
                engineBinary: readinessEngineBinary ?? settings.llamaServer, supervisor: supervisor),
            enginePlan: EnginePlan(slots: settings.parallel, engineArguments: settings.llamaArgs),
            gateway: gateway, maxRequestBodyBytes: maxRequestBodyBytes, docsAssetsDirectory: settings.docsAssetsDirectory,
            corsOrigins: settings.corsOrigins)
        return BodhiAssembly(
            services: services, supervisor: supervisor, backends: backends, pulls: pulls, engines: engines, streams: streams)
    }
}
