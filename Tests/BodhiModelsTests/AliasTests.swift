import BodhiCore
import Foundation
import Testing
@testable import BodhiModels

@Suite(.timeLimit(.minutes(2))) struct AliasTests {
    @Test func engineFlagsComeFromTheAllowListOnly() throws {
        let fine = EngineOverrides(contextSize: 2048, parallel: 2, extraArgs: ["--flash-attn", "on", "--threads=4", "--no-kv-offload"])
        try fine.validate()
        #expect(fine.arguments == ["--ctx-size", "2048", "--flash-attn", "on", "--threads=4", "--no-kv-offload"])
        let refused: [[String]] = [
            ["--host", "0.0.0.0"], ["--port=80"], ["--api-key", "x"], ["--model", "m.gguf"], ["--chat-template-file", "t.jinja"],
            ["--threads"], ["--no-kv-offload=1"], ["--cache-type-k", "/etc/passwd"], ["--threads", "--host"],
        ]
        for arguments in refused {
            #expect(throws: BodhiError.self, "\(arguments)") { try EngineOverrides(extraArgs: arguments).validate() }
        }
        #expect(throws: BodhiError.self) { try EngineOverrides(parallel: 0).validate() }
    }

    @Test func namesAndDefaultsAreChecked() throws {
        for name in ["smol", "coder:fast", "a.b-c_d"] { try Alias.validate(name: name) }
        for name in ["", "owner/repo", "-x", String(repeating: "a", count: 129), "with space"] {
            #expect(throws: BodhiError.self, "\(name)") { try Alias.validate(name: name) }
        }
        #expect(throws: BodhiError.self) { try RequestDefaults(topP: 1.5).validate() }
        #expect(throws: BodhiError.self) { try RequestDefaults(maxTokens: 0).validate() }
    }

    static func catalog() throws -> ModelCatalog {
        let hub = FileManager.default.temporaryDirectory.appendingPathComponent("bodhi-alias-\(UUID().uuidString)").path
        let snapshot = hub + "/models--org--tiny-GGUF/snapshots/abc"
        try FileManager.default.createDirectory(atPath: snapshot, withIntermediateDirectories: true)
        try Data(count: 16).write(to: URL(fileURLWithPath: snapshot + "/tiny.Q4_K_M.gguf"))
        return ModelCatalog(hubDirectory: hub)
    }

    @Test func aliasesResolveToTheirModelAndRefuseWhatDoesNotExist() async throws {
        let registry = AliasRegistry(repository: nil, catalog: try Self.catalog())
        // The model is named loosely and stored by its exact id.
        let created = try await registry.create(Alias(name: "tiny", model: "org/tiny-gguf:q4_k_m", defaults: .init(temperature: 0)))
        #expect(created.model == "org/tiny-GGUF:Q4_K_M")
        let served = try await registry.resolve("tiny")
        #expect(served.entry?.id == "org/tiny-GGUF:Q4_K_M" && served.alias?.defaults.temperature == 0)
        #expect(try await registry.resolve("org/tiny-GGUF:Q4_K_M").alias == nil)

        do {
            _ = try await registry.create(Alias(name: "tiny", model: "org/tiny-GGUF:Q4_K_M"))
            Issue.record("a duplicate alias was created")
        } catch let error as BodhiError { #expect(error.status == 409) }
        do {
            _ = try await registry.create(Alias(name: "ghost", model: "org/none:Q4_0"))
            Issue.record("an alias of a missing model was created")
        } catch let error as BodhiError { #expect(error.status == 400 && error.param == "model") }

        let copy = try await registry.copy("tiny", to: "tiny2")
        #expect(copy.defaults == created.defaults)
        #expect(await registry.aliases(of: "org/tiny-GGUF:Q4_K_M").map(\.name) == ["tiny", "tiny2"])
        try await registry.delete("tiny")
        do {
            _ = try await registry.alias(named: "tiny")
            Issue.record("a deleted alias is still there")
        } catch let error as BodhiError { #expect(error.status == 404) }
    }

    /// Two backends' models, as a `BackendRegistry` would know them.
    struct Directory: RemoteModelDirectory {
        let models: [RemoteModel] = [
            RemoteModel(backend: "lab", id: "smol", name: "lab/smol", ownedBy: "llamacpp", created: Date()),
            RemoteModel(backend: "peer", id: "org/tiny-GGUF:Q4_K_M", name: "peer/org/tiny-GGUF:Q4_K_M", ownedBy: "org", created: Date()),
        ]
        func remoteModelNow(named name: String) -> RemoteModel? { models.first { $0.name == name } }
        func remoteModel(named name: String) async -> RemoteModel? { remoteModelNow(named: name) }
        func servesNoModelNow(named name: String) -> Bool { remoteModelNow(named: name) == nil }
        func remoteModels() -> [RemoteModel] { models }
    }

    @Test func backendsModelsResolveByTheirPrefixAndAliasesServeThem() async throws {
        let registry = AliasRegistry(repository: nil, catalog: try Self.catalog(), remote: Directory())
        // A backend's model, even one whose own id looks like a local model's.
        let remote = try await registry.resolve("peer/org/tiny-GGUF:Q4_K_M")
        #expect(remote.remote?.backend == "peer" && remote.remote?.id == "org/tiny-GGUF:Q4_K_M" && remote.entry == nil)
        #expect(try await registry.resolve("org/tiny-GGUF:Q4_K_M").entry != nil)
        #expect(registry.resolveNow("lab/smol")?.remote?.id == "smol")

        // An alias gives a remote model its defaults; it keeps the name as given.
        let alias = try await registry.create(Alias(name: "brief", model: "lab/smol", defaults: .init(maxTokens: 3)))
        #expect(alias.model == "lab/smol")
        let served = try await registry.resolve("brief")
        #expect(served.remote?.name == "lab/smol" && served.alias?.defaults.maxTokens == 3 && served.modelName == "lab/smol")
        #expect(registry.resolveNow("brief")?.remote?.backend == "lab")

        // A name a backend does not serve is refused, as any unknown model.
        do {
            _ = try await registry.resolve("lab/missing")
            Issue.record("an unknown remote model resolved")
        } catch let error as BodhiError { #expect(error.status == 404) }
        do {
            _ = try await registry.create(Alias(name: "nowhere", model: "lab/missing"))
            Issue.record("an alias to an unknown remote model was made")
        } catch let error as BodhiError { #expect(error.status == 400) }
    }
}
