import BodhiHTTP
import Foundation
import Hummingbird
import HummingbirdCore
import Logging

/// Builds Bodhi's HTTP application: every route family on one router, errors rendered per
/// API family.
public enum BodhiHTTPServer {
    /// The `Server` header of every response.
    static let serverName = "bodhi"

    public static func responder(services: BodhiServices) -> some HTTPResponder<BodhiRequestContext> {
        HeadAsGetResponder(inner: router(services: services).buildResponder())
    }

    /// Every route, behind error rendering and access control.
    public static func router(services: BodhiServices) -> Router<BodhiRequestContext> {
        let router = Router(context: BodhiRequestContext.self)
        router.add(middleware: FinishingMiddleware(finishing: ResponseFinishing(metrics: services.metrics)))
        // Outside error rendering, so that a page on another origin can read its errors too.
        router.add(middleware: CORSMiddleware(origins: services.corsOrigins))
        router.add(middleware: ErrorRenderingMiddleware(maxRequestBodyBytes: services.maxRequestBodyBytes))
        router.add(middleware: MethodMiddleware())
        router.add(middleware: AccessMiddleware(identity: services.identity))
        router.add(middleware: RequestDecompressionMiddleware(maxRequestBodyBytes: services.maxRequestBodyBytes))
        router.add(middleware: RateLimitMiddleware(limiter: services.rateLimiter, admission: services.admission, metrics: services.metrics))
        SystemRoutes(services: services).register(on: router)
        IdentityRoutes(services: services).register(on: router)
        ChatRoutes(services: services).register(on: router)
        SettingsRoutes(services: services).register(on: router)
        OpenAIRoutes(services: services).register(on: router)
        OllamaRoutes(services: services).register(on: router)
        AnthropicRoutes(services: services).register(on: router)
        ResponsesRoutes(services: services).register(on: router)
        GeminiRoutes(services: services).register(on: router)
        PullRoutes(services: services).register(on: router)
        AliasRoutes(services: services).register(on: router)
        BackendRoutes(services: services).register(on: router)
        RouterRoutes(services: services).register(on: router)
        ModelRoutes(services: services).register(on: router)
        DocsRoutes(assetsDirectory: services.docsAssetsDirectory).register(on: router)
        UIRoutes(assets: UIRoutes.bundled).register(on: router)
        // Last, so that it lists every route, itself included.
        let routes = router.routes.map { (method: $0.method.rawValue, path: "\($0.path)") } + [("GET", "/openapi.json")]
        let document = (try? JSONSerialization.data(
            withJSONObject: OpenAPIDocument.make(routes: routes), options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data()
        router.get("/openapi.json") { _, _ in
            Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(data: document)))
        }
        return router
    }

    public static func application(
        services: BodhiServices, host: String, port: Int, logger: Logger,
        onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }
    ) -> some ApplicationProtocol {
        Application(
            responder: responder(services: services),
            server: HTTPServerBuilder { responder in
                BodhiHTTP1Channel(
                    http1: HTTP1Channel(responder: responder), fastPath: FastInferenceRoute(services: services), idleTimeout: .seconds(75))
            },
            // A deep accept queue: a burst of connections (a thousand clients at once) waits to be
            // accepted instead of having its SYNs dropped and retried a second or more later.
            configuration: .init(address: .hostname(host, port: port), serverName: serverName, backlog: 4096),
            onServerRunning: { channel in await onServerRunning(channel.localAddress?.port ?? port) },
            logger: logger)
    }
}
