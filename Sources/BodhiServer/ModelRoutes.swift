import BodhiCore
import BodhiModels
import Foundation
import Hummingbird

/// Bodhi's model catalogue under `/bodhi/v1/models`: header facts, sizes, memory estimates.
struct ModelRoutes {
    let services: BodhiServices

    func register(on router: Router<BodhiRequestContext>) {
        router.get("/bodhi/v1/models") { request, _ in
            let query = try ModelQuery(parameters: request.queryValues)
            return try Response.json(query.apply(to: await services.models.describeAll(plan: services.enginePlan)))
        }
        router.get("/bodhi/v1/models/**") { request, _ in
            try Response.json(await services.models.describe(request.decodedPath(after: Self.prefix), plan: services.enginePlan))
        }
        router.delete("/bodhi/v1/models/**") { request, _ in
            let force = request.queryValues["force"].map { $0 == "true" || $0 == "1" } ?? false
            let deleted = try await services.models.delete(request.decodedPath(after: Self.prefix), force: force)
            return try Response.json(Deleted(id: deleted.id))
        }
    }

    /// OpenAI's shape for a deleted model.
    struct Deleted: Encodable {
        let id: String
        let object = "model"
        let deleted = true
    }

    static let prefix = "/bodhi/v1/models/"
}
