import BodhiCore
import BodhiEngine
import BodhiHub
import BodhiModels
import Foundation
import NIOCore

extension OllamaService {
    /// `/api/create`: a new name for an existing model (or alias) with its own system prompt
    /// and parameters, or a model from uploaded GGUF blobs. Either way the result is a Bodhi
    /// alias, listed by `/api/tags` and `/v1/models`.
    public func create(_ body: ByteBuffer) async throws -> TranslatedReply {
        let request = try JSONBody.object(from: body)
        let name = try OllamaJSON.modelName(request)
        for unsupported in ["quantize", "adapters"] where request[unsupported] != nil {
            throw BodhiError.invalidRequest("\(unsupported) is not supported by Bodhi")
        }
        if let template = request["template"] as? String, !template.isEmpty {
            throw BodhiError.invalidRequest("custom templates are not supported: Bodhi uses the model's own chat template")
        }
        let aliasName = name.hasSuffix(":latest") ? String(name.dropLast(":latest".count)) : name
        var statuses: [JSONObject] = []
        let base: ServedModel
        if let files = request["files"] as? [String: Any], !files.isEmpty {
            var installs: [(name: String, hex: String)] = []
            for (file, digest) in files.sorted(by: { $0.key < $1.key }) {
                let hex = try BlobUploads.hex(ofDigest: digest as? String ?? "")
                installs.append((file, hex))
                statuses.append(["status": "using existing layer sha256:\(hex)"])
            }
            let repo = try uploads.install(files: installs, as: aliasName, cache: catalog.cache)
            await catalog.refresh()
            let entries = await catalog.list().filter { $0.repo == repo }
            let firstFile = installs.first?.name
            guard let entry = entries.first(where: { $0.fileName == firstFile }) ?? entries.first else {
                throw BodhiError.invalidRequest("the uploaded files are not a complete GGUF model")
            }
            base = ServedModel(name: entry.id, entry: entry, alias: nil)
        } else if let from = request["from"] as? String, !from.isEmpty {
            base = try await resolve(from, allowed: nil)
            statuses.append(["status": "using existing layer sha256:\(Self.digest(of: try ModelService.file(of: base)))"])
        } else {
            throw BodhiError.invalidRequest("neither 'from' nor 'files' was specified")
        }

        var alias = base.alias ?? Alias(name: aliasName, model: base.modelName)
        alias.name = aliasName
        alias.model = base.modelName
        if let system = request["system"] as? String { alias.defaults.system = system.isEmpty ? nil : system }
        if let parameters = request["parameters"] {
            guard let parameters = parameters as? JSONObject else { throw BodhiError.invalidRequest("parameters must be an object") }
            try Self.apply(parameters, to: &alias)
        }
        if (try? await aliases.alias(named: aliasName)) != nil {
            _ = try await aliases.update(alias)
            await models.aliasChanged(aliasName)
        } else {
            _ = try await aliases.create(alias)
        }
        statuses += [["status": "writing manifest"], ["status": "success"]]
        if try JSONBody.flag(request, "stream") ?? true {
            let lines = statuses.map { JSONBody.buffer($0, newline: true) }
            return .stream(ChunkStream { emit in
                for line in lines { try? await emit(line) }
            })
        }
        return .json(JSONBody.buffer(["status": "success"]))
    }

    /// Ollama's model parameters onto an alias: sampling defaults, and `num_ctx` as the
    /// alias's engine context.
    static func apply(_ parameters: JSONObject, to alias: inout Alias) throws {
        func number(_ key: String) -> Double? {
            switch parameters[key] {
            case let value as NSNumber: return value.doubleValue
            case let value as String: return Double(value)
            default: return nil
            }
        }
        if let value = number("temperature") { alias.defaults.temperature = value }
        if let value = number("top_p") { alias.defaults.topP = value }
        if let value = number("top_k") { alias.defaults.topK = Int(value) }
        if let value = number("min_p") { alias.defaults.minP = value }
        if let value = number("seed") { alias.defaults.seed = Int(value) }
        if let value = number("num_predict") { alias.defaults.maxTokens = value > 0 ? Int(value) : nil }
        if let value = number("repeat_penalty") { alias.defaults.repeatPenalty = value }
        if let value = number("presence_penalty") { alias.defaults.presencePenalty = value }
        if let value = number("frequency_penalty") { alias.defaults.frequencyPenalty = value }
        if let value = number("num_ctx") { alias.engine.contextSize = Int(value) }
        switch parameters["stop"] {
        case let stops as [String]: alias.defaults.stop = stops
        case let stop as String: alias.defaults.stop = [stop]
        default: break
        }
        try alias.validate()
    }

    // MARK: Blobs

    public func hasBlob(_ digest: String) throws -> Bool {
        uploads.exists(try BlobUploads.hex(ofDigest: digest))
    }

    public func storeBlob<Body: AsyncSequence>(_ digest: String, body: Body) async throws where Body.Element == ByteBuffer {
        try await uploads.store(body, hex: try BlobUploads.hex(ofDigest: digest))
    }
}
