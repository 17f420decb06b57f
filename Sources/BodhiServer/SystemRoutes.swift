import BodhiEngine
import Hummingbird

/// Liveness and Bodhi's own status endpoints.
struct SystemRoutes {
    let services: BodhiServices

    struct Pong: Encodable {
        let message = "pong"
    }

    struct Engines: Encodable {
        let engines: [EngineStatus]
    }

    func register(on router: Router<BodhiRequestContext>) {
        router.get("/ping") { _, _ in try Response.json(Pong()) }
        router.get("/bodhi/v1/engines") { _, _ in try Response.json(Engines(engines: await services.supervisor.status())) }
    }
}
