import ArgumentParser
import AsyncHTTPClient
import BodhiCore
import BodhiModels
import BodhiStore
import Foundation
import NIOHTTP1

/// `bodhi router ...`: router models, through the running server, or straight in the database
/// when none runs.
struct RouterCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "router", abstract: "Manage router models: names whose requests go to other models, in order or by weight.",
        subcommands: [List.self, SetRouter.self, Remove.self])

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "ls", abstract: "List routers.")
        @OptionGroup var server: ServerOptions

        func run() async throws {
            let routers = try await withRouters(server) { try await $0.list() }
            var rows = [["NAME", "STRATEGY", "TARGETS", "COOLDOWN"]]
            for router in routers {
                let targets = router.weights.map { weights in
                    zip(router.targets, weights).map { "\($0)×\($1)" }.joined(separator: " ")
                } ?? router.targets.joined(separator: " → ")
                rows.append([router.name, router.strategy.rawValue, targets, "\(router.cooldownSeconds)s"])
            }
            printTable(rows)
        }
    }

    struct SetRouter: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "set", abstract: "Create a router, or replace one.",
            discussion: """
                fallback (the default) tries the targets in order, moving on when one fails before answering;
                weighted splits requests by weight, the same target for the same user each time.
                  bodhi router set chat lab/qwen claude/claude-sonnet-4-5
                  bodhi router set ab smol big --strategy weighted --weights 3,1
                """)
        @OptionGroup var server: ServerOptions
        @Argument(help: "The router's name, e.g. chat.") var name: String
        @Argument(help: "Its targets: models, backends' models or aliases.") var targets: [String]
        @Option(help: "fallback or weighted.") var strategy: RoutingStrategy = .fallback
        @Option(help: "One weight per target, e.g. 3,1 (weighted only).") var weights: String?
        @Option(help: "How long a failing target is skipped, e.g. 30s.") var cooldown: String = "30s"

        func run() async throws {
            guard let duration = Duration(parsing: cooldown), duration.components.seconds >= 1 else {
                throw ValidationFailure(message: "--cooldown must be a duration such as 30s or 2m (got '\(cooldown)').")
            }
            var parsedWeights: [Int]?
            if let weights {
                parsedWeights = try weights.split(separator: ",").map { part in
                    guard let weight = Int(part.trimmingCharacters(in: .whitespaces)) else {
                        throw ValidationFailure(message: "--weights is whole numbers separated by commas, e.g. 3,1 (got '\(weights)').")
                    }
                    return weight
                }
            }
            let router = ModelRouter(
                name: name, targets: targets, strategy: strategy, weights: parsedWeights, cooldownSeconds: Int(duration.components.seconds))
            let saved = try await withRouters(server) { try await $0.set(router) }
            print("\(saved.name) → \(saved.targets.joined(separator: ", ")) (\(saved.strategy.rawValue))")
        }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "rm", abstract: "Delete a router (its targets stay).")
        @OptionGroup var server: ServerOptions
        @Argument var name: String

        func run() async throws {
            try await withRouters(server) { try await $0.delete(name) }
            print("deleted router \(name)")
        }
    }
}

extension RoutingStrategy: ExpressibleByArgument {}

/// What the router commands need, from the server or the database.
protocol RouterManagement: Sendable {
    func list() async throws -> [ModelRouter]
    func set(_ router: ModelRouter) async throws -> ModelRouter
    func delete(_ name: String) async throws
}

/// Runs `body` against the server when it runs, else against the database directly.
private func withRouters<T: Sendable>(_ server: ServerOptions, _ body: (any RouterManagement) async throws -> T) async throws -> T {
    try await withNamedModels(
        server, remote: { try await body(RemoteRouters(client: $0)) }, local: { try await body(LocalRouters(registry: $0)) })
}

struct LocalRouters: RouterManagement {
    let registry: AliasRegistry

    func list() async throws -> [ModelRouter] { await registry.routers() }
    func set(_ router: ModelRouter) async throws -> ModelRouter { try await registry.setRouter(router) }
    func delete(_ name: String) async throws { try await registry.deleteRouter(name) }
}

struct RemoteRouters: RouterManagement {
    let client: BodhiClient

    private var base: String { client.settings.clientBaseURL + "/bodhi/v1/routers" }

    func list() async throws -> [ModelRouter] {
        try await client.call(.GET, base, decoding: DataPage<ModelRouter>.self).data
    }

    func set(_ router: ModelRouter) async throws -> ModelRouter {
        var body: [String: Any] = ["targets": router.targets, "strategy": router.strategy.rawValue, "cooldown_seconds": router.cooldownSeconds]
        if let weights = router.weights { body["weights"] = weights }
        return try await client.call(
            .PUT, base + "/" + BodhiClient.pathSegment(router.name), body: try JSONSerialization.data(withJSONObject: body),
            decoding: ModelRouter.self)
    }

    func delete(_ name: String) async throws {
        _ = try await client.call(.DELETE, base + "/" + BodhiClient.pathSegment(name), decoding: DeletedName.self)
    }
}

