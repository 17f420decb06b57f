import BodhiCore
import BodhiModels
import Foundation
import Hummingbird

/// Bodhi's model catalogue under `/bodhi/v1/models`: header facts, sizes, memory estimates.
struct ModelRoutes {
    let services: BodhiServices

    func register(on router: Router<BasicRequestContext>) {
        router.get("/bodhi/v1/models") { request, _ in
            let query = try ModelQuery(parameters: Self.parameters(of: request))
            return try Response.json(query.apply(to: await services.catalog.describeAll(plan: services.enginePlan)))
        }
        // Model ids contain `/`: accept them percent-encoded as one segment or as plain segments.
        router.get("/bodhi/v1/models/**") { request, _ in
            let raw = String(request.uri.path.dropFirst("/bodhi/v1/models/".count))
            return try Response.json(await services.catalog.describe(raw.removingPercentEncoding ?? raw, plan: services.enginePlan))
        }
    }

    static func parameters(of request: Request) -> [String: String] {
        var parameters: [String: String] = [:]
        for (key, value) in request.uri.queryParameters {
            parameters[String(key)] = String(value)
        }
        return parameters
    }
}
