import BodhiCore
import Foundation

/// A user's short name for a model file, with request defaults and, optionally, engine
/// settings of its own (which give it an engine child of its own).
public struct Alias: Codable, Sendable, Equatable {
    public var name: String
    /// The model file it serves, as `owner/repo:QUANT`.
    public var model: String
    public var defaults: RequestDefaults
    public var engine: EngineOverrides
    public var createdAt: Date
    public var updatedAt: Date

    public init(
        name: String, model: String, defaults: RequestDefaults = .init(), engine: EngineOverrides = .init(),
        createdAt: Date = Date(), updatedAt: Date = Date()
    ) {
        self.name = name
        self.model = model
        self.defaults = defaults
        self.engine = engine
        self.createdAt = createdAt
        self.updatedAt = updatedAt
    }

    enum CodingKeys: String, CodingKey {
        case name, model, defaults, engine
        case createdAt = "created_at"
        case updatedAt = "updated_at"
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        name = try container.decode(String.self, forKey: .name)
        model = try container.decode(String.self, forKey: .model)
        defaults = try container.decodeIfPresent(RequestDefaults.self, forKey: .defaults) ?? .init()
        engine = try container.decodeIfPresent(EngineOverrides.self, forKey: .engine) ?? .init()
        createdAt = try container.decodeIfPresent(Date.self, forKey: .createdAt) ?? Date()
        updatedAt = try container.decodeIfPresent(Date.self, forKey: .updatedAt) ?? Date()
    }

    /// Names are short and never contain `/`, so they cannot be mistaken for `owner/repo:QUANT`.
    public static func validate(name: String) throws {
        guard name.wholeMatch(of: /[A-Za-z0-9][A-Za-z0-9._:-]{0,127}/) != nil else {
            throw BodhiError.invalidRequest(
                "An alias name is 1 to 128 letters, digits, '.', '_', ':' or '-', starting with a letter or digit (got '\(name)').",
                param: "name")
        }
    }

    public func validate() throws {
        try Self.validate(name: name)
        try defaults.validate()
        try engine.validate()
    }
}

/// Request fields an alias fills in when a request leaves them unset. The names are the
/// OpenAI / llama.cpp request fields they set.
public struct RequestDefaults: Codable, Sendable, Equatable {
    public var temperature: Double?
    public var topP: Double?
    public var topK: Int?
    public var minP: Double?
    public var maxTokens: Int?
    public var stop: [String]?
    public var seed: Int?
    public var repeatPenalty: Double?
    public var presencePenalty: Double?
    public var frequencyPenalty: Double?
    /// A system message put first in chats that have none.
    public var system: String?

    public init(
        temperature: Double? = nil, topP: Double? = nil, topK: Int? = nil, minP: Double? = nil, maxTokens: Int? = nil,
        stop: [String]? = nil, seed: Int? = nil, repeatPenalty: Double? = nil, presencePenalty: Double? = nil,
        frequencyPenalty: Double? = nil, system: String? = nil
    ) {
        self.temperature = temperature
        self.topP = topP
        self.topK = topK
        self.minP = minP
        self.maxTokens = maxTokens
        self.stop = stop
        self.seed = seed
        self.repeatPenalty = repeatPenalty
        self.presencePenalty = presencePenalty
        self.frequencyPenalty = frequencyPenalty
        self.system = system
    }

    enum CodingKeys: String, CodingKey {
        case temperature, stop, seed, system
        case topP = "top_p", topK = "top_k", minP = "min_p", maxTokens = "max_tokens"
        case repeatPenalty = "repeat_penalty", presencePenalty = "presence_penalty", frequencyPenalty = "frequency_penalty"
    }

    public var isEmpty: Bool { self == RequestDefaults() }

    /// The sampling fields as request JSON, by field name.
    public var samplingFields: [String: Any] {
        var fields: [String: Any] = [:]
        if let temperature { fields["temperature"] = temperature }
        if let topP { fields["top_p"] = topP }
        if let topK { fields["top_k"] = topK }
        if let minP { fields["min_p"] = minP }
        if let maxTokens { fields["max_tokens"] = maxTokens }
        if let stop { fields["stop"] = stop }
        if let seed { fields["seed"] = seed }
        if let repeatPenalty { fields["repeat_penalty"] = repeatPenalty }
        if let presencePenalty { fields["presence_penalty"] = presencePenalty }
        if let frequencyPenalty { fields["frequency_penalty"] = frequencyPenalty }
        return fields
    }

    func validate() throws {
        func check(_ ok: Bool, _ field: String, _ expectation: String) throws {
            if !ok { throw BodhiError.invalidRequest("defaults.\(field) must be \(expectation).", param: "defaults.\(field)") }
        }
        try check(temperature.map { $0 >= 0 && $0 <= 10 } ?? true, "temperature", "from 0 to 10")
        try check(topP.map { $0 >= 0 && $0 <= 1 } ?? true, "top_p", "from 0 to 1")
        try check(minP.map { $0 >= 0 && $0 <= 1 } ?? true, "min_p", "from 0 to 1")
        try check(topK.map { $0 >= 0 } ?? true, "top_k", "0 or more")
        try check(maxTokens.map { $0 >= 1 } ?? true, "max_tokens", "1 or more")
        try check(stop.map { $0.count <= 16 && !$0.contains("") } ?? true, "stop", "at most 16 non-empty strings")
        try check(repeatPenalty.map { $0 >= 0 } ?? true, "repeat_penalty", "0 or more")
        try check(presencePenalty.map { $0 >= -2 && $0 <= 2 } ?? true, "presence_penalty", "from -2 to 2")
        try check(frequencyPenalty.map { $0 >= -2 && $0 <= 2 } ?? true, "frequency_penalty", "from -2 to 2")
    }
}

/// Engine settings an alias runs its own engine child with.
public struct EngineOverrides: Codable, Sendable, Equatable {
    /// Total context (`--ctx-size`).
    public var contextSize: Int?
    /// Slots (`--parallel`).
    public var parallel: Int?
    /// Layers offloaded to the GPU (`--n-gpu-layers`).
    public var gpuLayers: Int?
    /// Further llama-server flags, from `allowedFlags` only.
    public var extraArgs: [String]?

    public init(contextSize: Int? = nil, parallel: Int? = nil, gpuLayers: Int? = nil, extraArgs: [String]? = nil) {
        self.contextSize = contextSize
        self.parallel = parallel
        self.gpuLayers = gpuLayers
        self.extraArgs = extraArgs
    }

    enum CodingKeys: String, CodingKey {
        case contextSize = "context_size", parallel, gpuLayers = "gpu_layers", extraArgs = "extra_args"
    }

    public var isEmpty: Bool { self == EngineOverrides() || self == EngineOverrides(extraArgs: []) }

    /// Flags that tune performance or sampling and touch nothing outside the engine: never the
    /// listener (`--host`, `--port`), the key, or any file path.
    public static let allowedFlags: [String: Bool] = [
        // flag: takes a value
        "--flash-attn": true, "-fa": true, "--cache-type-k": true, "-ctk": true, "--cache-type-v": true, "-ctv": true,
        "--threads": true, "-t": true, "--threads-batch": true, "-tb": true, "--batch-size": true, "-b": true,
        "--ubatch-size": true, "-ub": true, "--rope-scaling": true, "--rope-freq-base": true, "--rope-freq-scale": true,
        "--yarn-orig-ctx": true, "--split-mode": true, "-sm": true, "--main-gpu": true, "-mg": true,
        "--tensor-split": true, "-ts": true, "--reasoning-format": true, "--reasoning-budget": true,
        "--n-predict": true, "-n": true, "--keep": true, "--cache-reuse": true, "--load-mode": true, "-lm": true,
        "--no-kv-offload": false, "-nkvo": false, "--cont-batching": false,
        "--no-cont-batching": false, "--swa-full": false, "--no-context-shift": false, "--context-shift": false,
    ]

    func validate() throws {
        func fail(_ message: String) -> BodhiError { BodhiError.invalidRequest(message, param: "engine") }
        if let contextSize, contextSize < 0 || contextSize > 10_000_000 { throw fail("engine.context_size must be 0 (the model's) up to 10000000.") }
        if let parallel, !(1...256).contains(parallel) { throw fail("engine.parallel must be from 1 to 256.") }
        if let gpuLayers, gpuLayers < -1 { throw fail("engine.gpu_layers must be -1 (all) or more.") }
        var arguments = (extraArgs ?? [])[...]
        while let argument = arguments.popFirst() {
            let parts = argument.split(separator: "=", maxSplits: 1).map(String.init)
            guard let takesValue = Self.allowedFlags[parts[0]] else {
                let allowed = Self.allowedFlags.keys.filter { $0.hasPrefix("--") }.sorted().joined(separator: ", ")
                throw fail("'\(parts[0])' is not an engine flag an alias may set. Allowed: \(allowed).")
            }
            var value: String?
            if parts.count == 2 {
                value = parts[1]
            } else if takesValue {
                guard let next = arguments.popFirst() else { throw fail("'\(parts[0])' needs a value.") }
                value = next
            }
            if !takesValue, value != nil { throw fail("'\(parts[0])' takes no value.") }
            if let value, value.isEmpty || value.contains("/") || value.hasPrefix("-") && Double(value) == nil {
                throw fail("'\(value)' is not a value '\(parts[0])' accepts here (no file paths, no flags).")
            }
        }
    }

    /// The flags these settings add to an engine's command line.
    public var arguments: [String] {
        var result: [String] = []
        if let contextSize { result += ["--ctx-size", String(contextSize)] }
        if let gpuLayers { result += ["--n-gpu-layers", String(gpuLayers)] }
        return result + (extraArgs ?? [])
    }
}

/// Where aliases are kept.
public protocol AliasRepository: Sendable {
    func allAliases() async throws -> [Alias]
    func saveAlias(_ alias: Alias) async throws
    func deleteAlias(named name: String) async throws
}
