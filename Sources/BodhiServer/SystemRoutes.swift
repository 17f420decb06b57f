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
        /// `BODHI_MEMORY_BUDGET` in bytes; nil when off.
        let memoryBudgetBytes: Int64?
        /// What the loaded engines are expected to take together, which the budget counts.
        let memoryEstimatedBytes: Int64

        enum CodingKeys: String, CodingKey {
            case engines
            case memoryBudgetBytes = "memory_budget_bytes", memoryEstimatedBytes = "memory_estimated_bytes"
        }
    }

    func register(on router: Router<BodhiRequestContext>) {
        router.get("/ping") { _, _ in try Response.json(Pong()) }
        // Kubernetes: liveness says the process answers; readiness that it can serve.
        router.get("/metrics") { _, _ in
            Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: .init(byteBuffer: ByteBuffer(string: await services.metrics.exposition(supervisor: services.supervisor, admission: services.admission, pulls: services.pulls))))
        }
        router.get("/health/live") { _, _ in try Response.json(["status": "alive"]) }
        router.get("/health/ready") { _, _ in
            let report = await services.readiness.check()
            return try Response.json(report, status: report.ready ? .ok : .serviceUnavailable)
        }
        router.get("/health") { _, _ in
            let report = await services.readiness.check()
            return try Response.json(["status": report.status], status: report.ready ? .ok : .serviceUnavailable)
        }
        router.get("/bodhi/v1/engines") { _, _ in
            let (engines, budget) = await services.supervisor.statusWithBudget()
            return try Response.json(Engines(
                engines: engines, memoryBudgetBytes: budget.limit,
                memoryEstimatedBytes: engines.reduce(0) { $0 + ($1.estimateBytes ?? 0) }))
        }
    }
}
