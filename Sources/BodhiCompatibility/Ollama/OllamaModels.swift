import BodhiCore
import BodhiEngine
import BodhiModels
import Foundation
import NIOCore

extension OllamaService {
    // MARK: Embeddings

    /// `/api/embed`: `input` is a string or a list of strings; `truncate` (default true) cuts inputs
    /// longer than the model takes, `dimensions` shortens the vectors.
    public func embed(_ body: ByteBuffer, allowed: [String]?) async throws -> ByteBuffer {
        let request = try JSONBody.object(from: body)
        let name = try OllamaJSON.modelName(request)
        guard let input = request["input"], input is String || input is [Any] else {
            throw BodhiError.invalidRequest("input must be a string or a list of strings")
        }
        let started = ContinuousClock.now
        var options: JSONObject = ["truncate": request["truncate"] as? Bool ?? true]
        if let dimensions = request["dimensions"] { options["dimensions"] = dimensions }
        let (vectors, promptTokens) = try await embeddings(of: input, name: name, allowed: allowed, request: request, options: options)
        let elapsed = ContinuousClock.now - started
        return JSONBody.buffer([
            "model": name, "embeddings": vectors, "load_duration": 0, "prompt_eval_count": promptTokens,
            "total_duration": elapsed.nanoseconds,
        ])
    }

    /// `/api/embeddings`, the older form: one `prompt`, one `embedding`.
    public func legacyEmbeddings(_ body: ByteBuffer, allowed: [String]?) async throws -> ByteBuffer {
        let request = try JSONBody.object(from: body)
        let name = try OllamaJSON.modelName(request)
        let prompt = request["prompt"] as? String ?? ""
        // An empty prompt has an empty embedding, as Ollama answers it, of a model that exists.
        if prompt.isEmpty {
            _ = try await resolve(name, allowed: allowed)
            return JSONBody.buffer(["embedding": [Double]()])
        }
        let (vectors, _) = try await embeddings(of: prompt, name: name, allowed: allowed, request: request, options: ["truncate": true])
        return JSONBody.buffer(["embedding": vectors.first ?? []])
    }

    private func embeddings(
        of input: Any, name: String, allowed: [String]?, request: JSONObject, options: JSONObject
    ) async throws -> ([Any], Int) {
        let served = try await resolve(name, allowed: allowed)
        let keepAlive = try Self.keepAlive(request)
        // Cutting long inputs is this machine's engines' to do; a backend gets OpenAI's fields.
        let fields = served.remote == nil ? options : options.filter { $0.key != "truncate" }
        let body = JSONBody.buffer(fields.merging(["model": served.name, "input": input]) { $1 })
        let result = try await inference.handle(.embeddings, body: body, allowedModels: nil)
        if let keepAlive, let engine = EngineTarget(served) { await supervisor.setKeepAlive(keepAlive, for: engine.id) }
        guard case .complete(let status, _, let bytes) = result else { throw BodhiError.internalError("The engine streamed embeddings.") }
        let object = (try? JSONBody.object(from: bytes)) ?? [:]
        guard status == 200 else { throw BodhiError.engineAnswered(status, object) }
        let data = (object["data"] as? [JSONObject] ?? []).sorted { ($0["index"] as? Int ?? 0) < ($1["index"] as? Int ?? 0) }
        let tokens = (object["usage"] as? JSONObject)?["prompt_tokens"] as? Int ?? 0
        return (data.map { $0["embedding"] ?? [] }, tokens)
    }

    // MARK: Models

    /// `/api/tags`: every model and alias, as `/v1/models` lists them (aliases with a tag).
    public func tags(allowed: [String]?) async -> ByteBuffer {
        let descriptions = await models.describeAll(plan: plan)
        let byID = Dictionary(descriptions.map { ($0.entry.id, $0) }, uniquingKeysWith: { a, _ in a })
        var entries: [JSONObject] = descriptions.map { Self.tag(name: $0.entry.id, description: $0, modified: $0.entry.modified) }
        let remote = Dictionary(aliases.remoteModels().map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        entries += remote.values.sorted { $0.name < $1.name }.map { Self.tag(name: $0.name, remote: $0, modified: $0.created) }
        for alias in await aliases.list() {
            let name = OllamaNames.display(alias.name, isAlias: true)
            if let description = byID[alias.model] {
                entries.append(Self.tag(name: name, description: description, modified: alias.updatedAt))
            } else if let model = remote[alias.model] {
                entries.append(Self.tag(name: name, remote: model, modified: alias.updatedAt))
            }
        }
        if let allowed {
            let names = Set(allowed.flatMap { [$0.lowercased(), OllamaNames.display($0, isAlias: true).lowercased()] })
            entries = entries.filter { names.contains(($0["name"] as? String ?? "").lowercased()) }
        }
        return JSONBody.buffer(["models": entries])
    }

    static func tag(name: String, description: ModelDescription, modified: Date) -> JSONObject {
        ["name": name, "model": name, "modified_at": OllamaJSON.timestamp(modified), "size": description.entry.sizeBytes,
         "digest": digest(of: description.entry), "details": details(description)]
    }

    /// A backend's model: no file here, so no size or digest.
    static func tag(name: String, remote: RemoteModel, modified: Date) -> JSONObject {
        ["name": name, "model": name, "modified_at": OllamaJSON.timestamp(modified), "size": 0, "digest": "",
         "details": detailsWithoutFile(family: ""), "remote_host": remote.backend]
    }

    /// The blob's SHA-256: the Hugging Face cache names blobs by it.
    static func digest(of entry: ModelEntry) -> String {
        let target = (try? FileManager.default.destinationOfSymbolicLink(atPath: entry.path)) ?? entry.path
        let name = (target as NSString).lastPathComponent
        return name.count == 64 && name.allSatisfy(\.isHexDigit) ? name : ""
    }

    /// Ollama's `details` of a model Bodhi has no file of (a backend's model, a router).
    static func detailsWithoutFile(family: String) -> JSONObject {
        ["parent_model": "", "format": "", "family": family, "families": [String](), "parameter_size": "", "quantization_level": ""]
    }

    static func details(_ description: ModelDescription) -> JSONObject {
        let family = description.info?.architecture ?? ""
        return [
            "parent_model": "", "format": "gguf", "family": family, "families": family.isEmpty ? [String]() : [family],
            "parameter_size": parameterSize(description.info?.parameterCount ?? 0),
            "quantization_level": description.info?.fileType ?? description.entry.quantization ?? "",
        ]
    }

    /// `134515008` → `134.52M`, `8030261248` → `8.0B`, as Ollama prints sizes.
    static func parameterSize(_ count: UInt64) -> String {
        if count >= 1_000_000_000 { return String(format: "%.1fB", Double(count) / 1e9) }
        if count >= 1_000_000 { return String(format: "%.2fM", Double(count) / 1e6) }
        return count == 0 ? "" : String(count)
    }

    /// `/api/show` of a backend's model or a router: no file to read, so what Bodhi knows — where
    /// it is served from, and an alias's defaults. Ollama clients ask this of every model they list.
    static func showWithoutFile(_ served: ServedModel) -> ByteBuffer {
        let parameters = Self.parameters(served.alias?.defaults)
        var from = served.modelName
        var family = ""
        switch served.source {
        case .remote(let model): family = model.backend
        case .router(let router): from = router.targets.joined(separator: ", ")
        case .file: break
        }
        var modelfile = "# Modelfile generated by Bodhi\n# served by \(from)\n"
        if let system = served.alias?.defaults.system { modelfile += "SYSTEM \"\"\"\(system)\"\"\"\n" }
        for line in parameters.split(separator: "\n") { modelfile += "PARAMETER \(line)\n" }
        var reply: JSONObject = [
            "modelfile": modelfile, "parameters": parameters, "template": "",
            "details": detailsWithoutFile(family: family),
            "model_info": JSONObject(), "capabilities": ["completion"],
            "modified_at": OllamaJSON.timestamp(served.alias?.updatedAt ?? Date()),
        ]
        if let system = served.alias?.defaults.system { reply["system"] = system }
        return JSONBody.buffer(reply)
    }

    /// `/api/show`: what the GGUF header says, the chat template, and an alias's defaults as
    /// Ollama's `parameters`.
    public func show(_ body: ByteBuffer, allowed: [String]?) async throws -> ByteBuffer {
        let request = try JSONBody.object(from: body)
        let name = try OllamaJSON.modelName(request)
        let served = try await resolve(name, allowed: allowed)
        guard served.entry != nil else { return Self.showWithoutFile(served) }
        let description = try await models.describe(served.name, plan: plan)
        let info = description.info
        var modelInfo: JSONObject = ["general.parameter_count": info?.parameterCount ?? 0]
        if let architecture = info?.architecture {
            modelInfo["general.architecture"] = architecture
            let facts: [(String, Int?)] = [
                ("context_length", info?.contextLength), ("embedding_length", info?.embeddingLength),
                ("block_count", info?.blockCount), ("attention.head_count", info?.headCount),
                ("attention.head_count_kv", info?.headCountKV),
            ]
            for (key, value) in facts { if let value { modelInfo["\(architecture).\(key)"] = value } }
        }
        if let name = info?.name { modelInfo["general.name"] = name }
        if let tokenizer = info?.tokenizerModel { modelInfo["tokenizer.ggml.model"] = tokenizer }
        var capabilities = ["completion"]
        capabilities += description.capabilities.filter { ["tools", "thinking", "vision", "embedding", "insert"].contains($0) }
        let parameters = Self.parameters(served.alias?.defaults)
        var modelfile = "# Modelfile generated by Bodhi\nFROM \(description.entry.path)\n"
        if let projector = description.entry.projector { modelfile += "FROM \(projector)\n" }
        if let template = info?.chatTemplate { modelfile += "TEMPLATE \"\"\"\(template)\"\"\"\n" }
        if let system = served.alias?.defaults.system { modelfile += "SYSTEM \"\"\"\(system)\"\"\"\n" }
        for line in parameters.split(separator: "\n") { modelfile += "PARAMETER \(line)\n" }
        var reply: JSONObject = [
            "modelfile": modelfile, "parameters": parameters, "template": info?.chatTemplate ?? "",
            "details": Self.details(description), "model_info": modelInfo, "capabilities": capabilities,
            "modified_at": OllamaJSON.timestamp(description.entry.modified),
        ]
        if let system = served.alias?.defaults.system { reply["system"] = system }
        return JSONBody.buffer(reply)
    }

    /// An alias's defaults in Ollama's `PARAMETER` form, one per line.
    static func parameters(_ defaults: RequestDefaults?) -> String {
        guard let defaults else { return "" }
        var lines: [String] = []
        if let value = defaults.temperature { lines.append("temperature \(value)") }
        if let value = defaults.topP { lines.append("top_p \(value)") }
        if let value = defaults.topK { lines.append("top_k \(value)") }
        if let value = defaults.minP { lines.append("min_p \(value)") }
        if let value = defaults.seed { lines.append("seed \(value)") }
        if let value = defaults.maxTokens { lines.append("num_predict \(value)") }
        if let value = defaults.repeatPenalty { lines.append("repeat_penalty \(value)") }
        for stop in defaults.stop ?? [] { lines.append("stop \"\(stop)\"") }
        return lines.joined(separator: "\n")
    }

    /// `/api/ps`: what is loaded, when it unloads, and its measured memory.
    public func processes() async -> ByteBuffer {
        let descriptions = Dictionary(await models.describeAll(plan: plan).map { ($0.entry.id, $0) }, uniquingKeysWith: { a, _ in a })
        var entries: [JSONObject] = []
        let engines = await supervisor.status()
        let loaded = Set(engines.map(\.model))
        for engine in engines {
            // A model's embeddings engine is part of the model, listed on its own only when alone.
            let model = EngineTarget.servedID(of: engine.model)
            if model != engine.model, loaded.contains(model) { continue }
            let served = try? await aliases.resolve(model)
            let description = served.flatMap { $0.entry.flatMap { descriptions[$0.id] } }
            let expiry = await supervisor.expiry(of: engine.model)
            let expiresAt = expiry.map { Date().addingTimeInterval(Double(($0 - ContinuousClock.now).components.seconds)) }
                ?? Date(timeIntervalSinceNow: 10 * 365 * 86400)
            let name = OllamaNames.display(model, isAlias: served?.alias != nil)
            var entry: JSONObject = [
                "name": name, "model": name, "size": engine.memoryBytes ?? description?.entry.sizeBytes ?? 0,
                "digest": description.map { Self.digest(of: $0.entry) } ?? "", "expires_at": OllamaJSON.timestamp(expiresAt),
                "size_vram": 0,
            ]
            if let description {
                entry["details"] = Self.details(description)
                entry["context_length"] = description.memoryEstimate?.contextPerSlot ?? description.info?.contextLength ?? 0
            }
            entries.append(entry)
        }
        return JSONBody.buffer(["models": entries])
    }

    /// `/api/delete`: an alias goes alone; a model goes with its files (refused while aliases
    /// serve it).
    public func delete(_ body: ByteBuffer) async throws {
        let request = try JSONBody.object(from: body)
        let name = try OllamaJSON.modelName(request)
        let served = try await resolve(name, allowed: nil)
        if let alias = served.alias {
            try await aliases.delete(alias.name)
            await models.aliasChanged(alias.name)
            // A model made from uploaded blobs (`local/...`) goes with its last alias, as in Ollama.
            if let entry = served.entry, entry.repo.hasPrefix("local/"), await aliases.aliases(of: entry.id).isEmpty {
                _ = try await models.delete(entry.id)
            }
        } else {
            _ = try await models.delete(try ModelService.file(of: served).id)
        }
    }

    /// `/api/copy`: the destination becomes an alias of the source (a copy of it, if the
    /// source is an alias).
    public func copy(_ body: ByteBuffer) async throws {
        let request = try JSONBody.object(from: body)
        guard let source = request["source"] as? String, let destination = request["destination"] as? String,
              !source.isEmpty, !destination.isEmpty else {
            throw BodhiError.invalidRequest("source and destination are required")
        }
        let served = try await resolve(source, allowed: nil)
        let name = destination.hasSuffix(":latest") ? String(destination.dropLast(":latest".count)) : destination
        var alias = served.alias ?? Alias(name: name, model: served.modelName)
        alias.name = name
        if (try? await aliases.alias(named: name)) != nil {
            _ = try await aliases.update(alias)
            await models.aliasChanged(name)
        } else {
            _ = try await aliases.create(alias)
        }
    }

    // MARK: Pull

    /// `/api/pull`: Bodhi's pull, reported in Ollama's progress shape.
    public func pull(_ body: ByteBuffer) async throws -> TranslatedReply {
        let request = try JSONBody.object(from: body)
        let name = try OllamaJSON.modelName(request)
        let record = try await pulls.start(reference: name)
        let events = try await pulls.events(id: record.id)
        let stream = try JSONBody.flag(request, "stream") ?? true
        if !stream {
            var last = record
            for await update in events { last = update }
            guard last.state == .completed else { throw BodhiError(.hubError, status: 500, last.error ?? "pull \(last.state.rawValue)") }
            return .json(JSONBody.buffer(["status": "success"]))
        }
        return .stream(ChunkStream { emit in
            do {
                try await emit(JSONBody.buffer(["status": "pulling manifest"], newline: true))
                var last = record
                for await update in events {
                    last = update
                    if update.state == .downloading || update.state == .completed {
                        let digest = update.files.first?.sha256 ?? ""
                        try await emit(JSONBody.buffer([
                            "status": "pulling \(digest.prefix(12))", "digest": "sha256:\(digest)",
                            "total": update.totalBytes, "completed": update.completedBytes,
                        ], newline: true))
                    }
                }
                if last.state == .completed {
                    for status in ["verifying sha256 digest", "writing manifest", "success"] {
                        try await emit(JSONBody.buffer(["status": status], newline: true))
                    }
                } else {
                    try await emit(JSONBody.buffer(["error": last.error ?? "pull \(last.state.rawValue)"], newline: true))
                }
            } catch {
                return
            }
        })
    }
}
