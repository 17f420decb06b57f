import BodhiCore
import BodhiModels
import Foundation

/// Routers in the `routers` table; targets and weights are JSON columns.
extension Store: RouterRepository {
    struct RouterRow: Codable, Sendable {
        var name: String
        var targets: String
        var strategy: String
        var weights: String?
        var cooldown_seconds: Int
        var created_at: Int64
        var updated_at: Int64

        init(_ router: ModelRouter) throws {
            name = router.name
            targets = try jsonColumn(router.targets)
            strategy = router.strategy.rawValue
            weights = try router.weights.map { try jsonColumn($0) }
            cooldown_seconds = router.cooldownSeconds
            created_at = millis(router.createdAt)
            updated_at = millis(router.updatedAt)
        }

        func router() throws -> ModelRouter {
            guard let strategy = RoutingStrategy(rawValue: strategy) else {
                throw BodhiError.internalError("The router '\(name)' has an unknown strategy '\(strategy)'.")
            }
            return ModelRouter(
                name: name, targets: try fromJSONColumn(targets, as: [String].self), strategy: strategy,
                weights: try weights.map { try fromJSONColumn($0, as: [Int].self) }, cooldownSeconds: cooldown_seconds,
                createdAt: date(created_at), updatedAt: date(updated_at))
        }
    }

    public func allRouters() async throws -> [ModelRouter] {
        try await allNamed("routers", as: RouterRow.self).map { try $0.router() }
    }

    public func saveRouter(_ router: ModelRouter) async throws {
        let row = try RouterRow(router)
        try await saveNamed(row, into: "routers", replacing: ["targets", "strategy", "weights", "cooldown_seconds", "updated_at"])
    }

    public func deleteRouter(named name: String) async throws {
        try await deleteNamed(name, from: "routers")
    }
}
