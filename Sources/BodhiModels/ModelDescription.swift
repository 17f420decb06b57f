import Foundation

/// How an engine will be run, as far as memory is concerned.
public struct EnginePlan: Sendable, Equatable {
    public var slots: Int
    /// Total context (`--ctx-size`) when the user set one; otherwise each slot gets the
    /// model's trained context, as llama-server does.
    public var contextSize: Int?

    public init(slots: Int, contextSize: Int?) {
        self.slots = slots
        self.contextSize = contextSize
    }

    /// `--ctx-size N` or `-c N` among extra engine arguments.
    public init(slots: Int, engineArguments: [String]) {
        let context = EnginePlan.value(of: ["--ctx-size", "-c"], in: engineArguments).flatMap { Int($0) }
        self.init(slots: slots, contextSize: context.flatMap { $0 > 0 ? $0 : nil })
    }

    /// The value an engine flag (any of its `names`) gets among `arguments`, as `NAME VALUE` or
    /// `NAME=VALUE`; the last one counts, as in llama-server's own parsing.
    public static func value(of names: [String], in arguments: [String]) -> String? {
        var value: String?
        for (index, argument) in arguments.enumerated() {
            if names.contains(argument), index + 1 < arguments.count {
                value = arguments[index + 1]
            } else if let name = names.first(where: { argument.hasPrefix($0 + "=") }) {
                value = String(argument.dropFirst(name.count + 1))
            }
        }
        return value
    }
}

/// Expected memory of a loaded model: its weights (and its vision projector's) plus an f16 KV cache
/// for every slot's context.
public struct MemoryEstimate: Sendable, Equatable, Encodable {
    public let weightsBytes: Int64
    public let kvCacheBytes: Int64
    public let totalBytes: Int64
    public let contextPerSlot: Int
    public let slots: Int

    enum CodingKeys: String, CodingKey {
        case weightsBytes = "weights_bytes", kvCacheBytes = "kv_cache_bytes", totalBytes = "total_bytes"
        case contextPerSlot = "context_per_slot", slots
    }

    public init?(model: ModelEntry, info: GGUFModelInfo, plan: EnginePlan) {
        let slots = max(1, plan.slots)
        guard let perSlot = plan.contextSize.map({ $0 / slots }) ?? info.contextLength,
              let kvCache = info.kvCacheBytes(tokens: perSlot * slots) else { return nil }
        weightsBytes = model.sizeBytes + model.projectorBytes
        kvCacheBytes = Int64(clamping: kvCache)
        totalBytes = weightsBytes + kvCacheBytes
        contextPerSlot = perSlot
        self.slots = slots
    }
}

/// Everything Bodhi knows about one model: where it is, what its header says, what it costs.
public struct ModelDescription: Sendable, Encodable {
    public let entry: ModelEntry
    public let info: GGUFModelInfo?
    /// Why the header could not be read, when it could not.
    public let headerError: String?
    public let memoryEstimate: MemoryEstimate?
    /// The aliases that serve this model.
    public var aliases: [String] = []

    /// What the header declares, and `vision` where a projector sits beside the model.
    public var capabilities: [String] {
        let declared = info?.capabilities ?? []
        return entry.projector != nil && !declared.contains("vision") ? declared + ["vision"] : declared
    }

    enum CodingKeys: String, CodingKey {
        case id, repo, quantization, revision, file, path, parts, modified
        case sizeBytes = "size_bytes", info = "gguf", headerError = "header_error", memoryEstimate = "memory_estimate"
        case capabilities, aliases
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(entry.id, forKey: .id)
        try container.encode(entry.repo, forKey: .repo)
        try container.encode(entry.quantization, forKey: .quantization)
        try container.encode(entry.revision, forKey: .revision)
        try container.encode(entry.fileName, forKey: .file)
        try container.encode(entry.path, forKey: .path)
        try container.encode(entry.parts, forKey: .parts)
        try container.encode(entry.sizeBytes, forKey: .sizeBytes)
        try container.encode(Int(entry.modified.timeIntervalSince1970), forKey: .modified)
        try container.encode(capabilities, forKey: .capabilities)
        try container.encodeIfPresent(info, forKey: .info)
        try container.encodeIfPresent(headerError, forKey: .headerError)
        try container.encodeIfPresent(memoryEstimate, forKey: .memoryEstimate)
        try container.encode(aliases, forKey: .aliases)
    }
}
