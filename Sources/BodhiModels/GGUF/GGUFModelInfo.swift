/// The facts about a model that Bodhi shows and plans with, derived from its GGUF header.
public struct GGUFModelInfo: Sendable, Equatable, Codable {
    public let architecture: String?
    public let name: String?
    public let parameterCount: UInt64
    /// The quantization as llama.cpp names it (`Q4_1`, `Q4_K_M`, `F16`, ...).
    public let fileType: String?
    public let contextLength: Int?
    public let embeddingLength: Int?
    public let blockCount: Int?
    public let headCount: Int?
    public let headCountKV: Int?
    public let keyLength: Int?
    public let valueLength: Int?
    public let chatTemplate: String?
    public let tokenizerModel: String?
    public let bosTokenID: Int?
    public let eosTokenID: Int?
    /// What the model can do beyond completion: `tools`, `thinking`, `vision`, `embedding`,
    /// `insert` (fill-in-the-middle tokens).
    public let capabilities: [String]

    enum CodingKeys: String, CodingKey {
        case architecture, name, capabilities
        case parameterCount = "parameter_count", fileType = "file_type", contextLength = "context_length"
        case embeddingLength = "embedding_length", blockCount = "block_count", headCount = "head_count"
        case headCountKV = "head_count_kv", keyLength = "key_length", valueLength = "value_length"
        case chatTemplate = "chat_template", tokenizerModel = "tokenizer_model"
        case bosTokenID = "bos_token_id", eosTokenID = "eos_token_id"
    }

    public init(_ header: GGUFHeader) {
        let metadata = header.metadata
        let architecture = metadata["general.architecture"]?.string
        func architectural(_ key: String) -> GGUFValue? {
            architecture.flatMap { metadata["\($0).\(key)"] }
        }
        self.architecture = architecture
        name = metadata["general.name"]?.string
        parameterCount = header.parameterCount
        fileType = metadata["general.file_type"]?.integer.flatMap { Self.fileTypes[$0] }
        contextLength = architectural("context_length")?.integer
        embeddingLength = architectural("embedding_length")?.integer
        blockCount = architectural("block_count")?.integer
        headCount = architectural("attention.head_count").flatMap(Self.largest)
        headCountKV = architectural("attention.head_count_kv").flatMap(Self.largest) ?? headCount
        keyLength = architectural("attention.key_length")?.integer
        valueLength = architectural("attention.value_length")?.integer
        chatTemplate = metadata["tokenizer.chat_template"]?.string
        tokenizerModel = metadata["tokenizer.ggml.model"]?.string
        bosTokenID = metadata["tokenizer.ggml.bos_token_id"]?.integer
        eosTokenID = metadata["tokenizer.ggml.eos_token_id"]?.integer
        capabilities = Self.capabilities(metadata: metadata, architecture: architecture, template: chatTemplate)
    }

    /// Bytes of f16 KV cache for `tokens` tokens of context (all slots together).
    public func kvCacheBytes(tokens: Int) -> UInt64? {
        guard let blocks = blockCount, let kvHeads = headCountKV else { return nil }
        let headDimension = embeddingLength.flatMap { embedding in headCount.map { embedding / max(1, $0) } }
        guard let keyDimension = keyLength ?? headDimension, let valueDimension = valueLength ?? headDimension else { return nil }
        let perToken = UInt64(blocks) * UInt64(kvHeads) * UInt64(keyDimension + valueDimension) * 2
        return perToken * UInt64(max(0, tokens))
    }

    /// Per-layer head counts come as arrays in some models; the largest layer decides memory.
    private static func largest(_ value: GGUFValue) -> Int? {
        if let number = value.integer { return number }
        if case .array(_, _, let elements?) = value { return elements.compactMap(\.integer).max() }
        return nil
    }

    private static func capabilities(metadata: [String: GGUFValue], architecture: String?, template: String?) -> [String] {
        var found: [String] = []
        let template = template ?? ""
        if template.contains("tools") || template.contains("tool_call") { found.append("tools") }
        if template.contains("<think>") || template.contains("enable_thinking") || template.contains("reasoning_content") {
            found.append("thinking")
        }
        if metadata.keys.contains(where: { $0.hasPrefix("clip.vision") || $0.contains(".vision.") }) { found.append("vision") }
        if let architecture, let pooling = metadata["\(architecture).pooling_type"]?.integer {
            // llama.cpp's LLAMA_POOLING_TYPE_RANK: a reranker's classification head scores query and document.
            if pooling == 4 { found.append("rerank") } else if template.isEmpty { found.append("embedding") }
        }
        let fim = ["fim_pre_token_id", "fim_suf_token_id", "fim_mid_token_id"].allSatisfy { metadata["tokenizer.ggml.\($0)"] != nil }
            || ["prefix_token_id", "suffix_token_id", "middle_token_id"].allSatisfy { metadata["tokenizer.ggml.\($0)"] != nil }
        if fim { found.append("insert") }
        return found
    }

    /// llama.cpp's `llama_ftype` values.
    static let fileTypes: [Int: String] = [
        0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K", 11: "Q3_K_S",
        12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S", 17: "Q5_K_M", 18: "Q6_K",
        19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS", 23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL",
        26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S", 29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M", 32: "BF16",
        36: "TQ1_0", 37: "TQ2_0", 38: "MXFP4_MOE",
    ]
}
