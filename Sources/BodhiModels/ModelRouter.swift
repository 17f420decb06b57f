import BodhiCore
import Foundation

/// How a router model picks among its targets.
public enum RoutingStrategy: String, Codable, Sendable, CaseIterable {
    /// In order: the next target when one fails before answering.
    case fallback
    /// Split by weight, the same target for the same user each time.
    case weighted
}

/// A model name whose requests go to other models (local, a backend's, or aliases), in order or
/// by weight. Routers and aliases share one namespace.
public struct ModelRouter: Codable, Sendable, Equatable {
    public var name: String
    public var targets: [String]
    public var strategy: RoutingStrategy
    /// One per target (weighted only).
    public var weights: [Int]?
    /// How long a target that failed is left alone (its breaker open); a `Retry-After` it sends counts instead when longer.
    public var cooldownSeconds: Int
    public var createdAt: Date
    public var updatedAt: Date

    public static let defaultCooldownSeconds = 30

    public init(
        name: String, targets: [String], strategy: RoutingStrategy = .fallback, weights: [Int]? = nil,
        cooldownSeconds: Int = ModelRouter.defaultCooldownSeconds, createdAt: Date = Date(), updatedAt: Date = Date()
    ) {
        self.name = name
        self.targets = targets
        self.strategy = strategy
        self.weights = weights
        self.cooldownSeconds = cooldownSeconds
        self.createdAt = createdAt
        self.updatedAt = updatedAt
    }

    enum CodingKeys: String, CodingKey {
        case name, targets, strategy, weights
        case cooldownSeconds = "cooldown_seconds"
        case createdAt = "created_at"
        case updatedAt = "updated_at"
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        name = try container.decode(String.self, forKey: .name)
        targets = try container.decode([String].self, forKey: .targets)
        strategy = try container.decodeIfPresent(RoutingStrategy.self, forKey: .strategy) ?? .fallback
        weights = try container.decodeIfPresent([Int].self, forKey: .weights)
        cooldownSeconds = try container.decodeIfPresent(Int.self, forKey: .cooldownSeconds) ?? Self.defaultCooldownSeconds
        createdAt = try container.decodeIfPresent(Date.self, forKey: .createdAt) ?? Date()
        updatedAt = try container.decodeIfPresent(Date.self, forKey: .updatedAt) ?? Date()
    }

    public func validate() throws {
        try Alias.validate(name: name)
        guard (1...16).contains(targets.count) else {
            throw BodhiError.invalidRequest("A router has 1 to 16 targets (got \(targets.count)).", param: "targets")
        }
        guard Set(targets).count == targets.count else {
            throw BodhiError.invalidRequest("A router names each target once.", param: "targets")
        }
        if targets.contains(name) { throw BodhiError.invalidRequest("A router cannot be its own target.", param: "targets") }
        switch strategy {
        case .fallback:
            if weights != nil { throw BodhiError.invalidRequest("Weights are for the weighted strategy.", param: "weights") }
        case .weighted:
            guard let weights, weights.count == targets.count else {
                throw BodhiError.invalidRequest("A weighted router needs one weight per target (e.g. --weights 3,1).", param: "weights")
            }
            guard weights.allSatisfy({ $0 >= 0 && $0 <= 1_000_000 }), weights.contains(where: { $0 > 0 }) else {
                throw BodhiError.invalidRequest("Weights are whole numbers from 0, at least one above 0.", param: "weights")
            }
        }
        guard (1...3600).contains(cooldownSeconds) else {
            throw BodhiError.invalidRequest("A router's cooldown is 1 s to 1 h.", param: "cooldown_seconds")
        }
    }
}

/// Where routers are kept.
public protocol RouterRepository: Sendable {
    func allRouters() async throws -> [ModelRouter]
    func saveRouter(_ router: ModelRouter) async throws
    func deleteRouter(named name: String) async throws
}
