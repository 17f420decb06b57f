import BodhiCore
import BodhiModels
import Foundation
import Hummingbird

/// Router models under `/bodhi/v1/routers`: list, show, set (create or replace), delete.
struct RouterRoutes {
    let services: BodhiServices

    /// The body of a set; the name comes from the path. The cooldown as `cooldown` ("30s") or
    /// `cooldown_seconds`.
    struct SetBody: Decodable {
        let targets: [String]
        let strategy: RoutingStrategy?
        let weights: [Int]?
        let cooldown: String?
        let cooldownSeconds: Int?

        enum CodingKeys: String, CodingKey {
            case targets, strategy, weights, cooldown
            case cooldownSeconds = "cooldown_seconds"
        }

        func router(named name: String) throws -> ModelRouter {
            var seconds = cooldownSeconds ?? ModelRouter.defaultCooldownSeconds
            if let cooldown {
                guard let duration = Duration(parsing: cooldown), duration.components.seconds >= 1 else {
                    throw BodhiError.invalidRequest("cooldown must be a duration such as 30s or 2m (got '\(cooldown)').", param: "cooldown")
                }
                seconds = Int(duration.components.seconds)
            }
            return ModelRouter(name: name, targets: targets, strategy: strategy ?? .fallback, weights: weights, cooldownSeconds: seconds)
        }
    }

    func register(on router: Router<BodhiRequestContext>) {
        let base = "/bodhi/v1/routers"
        let aliases = services.aliases
        router.get(RouterPath(base)) { _, _ in
            try Response.json(DataList(data: await aliases.routers()))
        }
        router.get(RouterPath(base + "/:name")) { _, context in
            try Response.json(await aliases.router(named: context.parameters.decoded("name")))
        }
        router.put(RouterPath(base + "/:name")) { request, context in
            let name = try context.parameters.decoded("name")
            let body = try await request.decodeJSON(SetBody.self, limit: 64 * 1024)
            return try Response.json(await aliases.setRouter(body.router(named: name)))
        }
        router.delete(RouterPath(base + "/:name")) { _, context in
            let name = try context.parameters.decoded("name")
            try await aliases.deleteRouter(name)
            return try Response.json(DeletedName(name: name))
        }
    }
}
