import BodhiBackends
import BodhiChats
import BodhiCore
import BodhiEngine
import BodhiHub
import BodhiIdentity
import BodhiCompatibility
import BodhiModels

/// The services the HTTP layer calls; built once by the composition root.
public struct BodhiServices: Sendable {
    public let catalog: ModelCatalog
    public let aliases: AliasRegistry
    /// Remote servers and cloud APIs.
    public let backends: BackendRegistry
    public let supervisor: EngineSupervisor
    public let inference: InferenceService
    public let models: ModelService
    public let pulls: PullManager
    public let identity: IdentityService
    public let chats: ChatService
    public let settings: SettingsEditor
    public let ollama: OllamaService
    public let anthropic: AnthropicService
    /// OpenAI's Responses API, its stored responses kept per user.
    public let responses: ResponsesService
    /// Google's Gemini API.
    public let gemini: GeminiService
    public let readiness: Readiness
    public let gateway: Gateway
    public var metrics: BodhiMetrics { gateway.metrics }
    public var admission: AdmissionQueue { gateway.admission }
    public var rateLimiter: RateLimiter { gateway.rateLimiter }
    /// Swagger UI's assets for `/docs`; nil for none.
    public let docsAssetsDirectory: String?
    /// How engines run, for memory estimates.
    public let enginePlan: EnginePlan
    /// Requests with larger bodies are refused with 413.
    public let maxRequestBodyBytes: Int
    /// Browser origins that may call the inference APIs.
    public let corsOrigins: CORSOrigins

    public init(
        catalog: ModelCatalog, aliases: AliasRegistry, backends: BackendRegistry, supervisor: EngineSupervisor, inference: InferenceService,
        pulls: PullManager, identity: IdentityService, chats: ChatService, storedResponses: any ResponseRepository, settings: SettingsEditor, readiness: Readiness, enginePlan: EnginePlan,
        gateway: Gateway, maxRequestBodyBytes: Int = 32 * 1024 * 1024, docsAssetsDirectory: String? = nil,
        corsOrigins: CORSOrigins = CORSOrigins(parsing: CORSOrigins.defaultText)!
    ) {
        self.gateway = gateway
        self.docsAssetsDirectory = docsAssetsDirectory
        self.readiness = readiness
        self.identity = identity
        self.chats = chats
        self.settings = settings
        self.catalog = catalog
        self.aliases = aliases
        self.backends = backends
        self.supervisor = supervisor
        self.inference = inference
        models = ModelService(catalog: catalog, aliases: aliases, supervisor: supervisor)
        self.pulls = pulls
        ollama = OllamaService(
            inference: inference, aliases: aliases, catalog: catalog, supervisor: supervisor, models: models, pulls: pulls,
            plan: enginePlan)
        anthropic = AnthropicService(inference: inference)
        responses = ResponsesService(inference: inference, repository: storedResponses)
        gemini = GeminiService(inference: inference)
        self.enginePlan = enginePlan
        self.maxRequestBodyBytes = maxRequestBodyBytes
        self.corsOrigins = corsOrigins
    }
}
