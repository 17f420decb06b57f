import BodhiCore
@testable import BodhiModels
import Foundation
import Testing

@Suite(.timeLimit(.minutes(2))) struct ModelQueryTests {
    static func description(_ id: String, size: Int64, capabilities: [String] = []) throws -> ModelDescription {
        var writer = GGUFWriter()
        writer.header(tensors: 0, entries: 2)
        writer.entry("general.architecture", type: 8) { $0.string("llama") }
        let template = capabilities.contains("tools") ? "{{ tools }}" : "plain"
        writer.entry("tokenizer.chat_template", type: 8) { $0.string(template) }
        let info = GGUFModelInfo(try GGUFReader.read(data: writer.data))
        let quant = String(id.split(separator: ":").last ?? "")
        let entry = ModelEntry(
            id: id, repo: String(id.split(separator: ":").first ?? ""), quantization: quant, revision: "r", fileName: "f.gguf",
            path: "/m/\(id)", parts: ["/m/\(id)"], sizeBytes: size, modified: Date(timeIntervalSince1970: 0))
        return ModelDescription(entry: entry, info: info, headerError: nil, memoryEstimate: nil)
    }

    let models: [ModelDescription]

    init() throws {
        models = [
            try Self.description("b/small-GGUF:Q4_0", size: 10),
            try Self.description("a/large-GGUF:Q8_0", size: 300, capabilities: ["tools"]),
            try Self.description("c/mid-GGUF:Q4_0", size: 200),
        ]
    }

    @Test func sortsByNameOrSizeEitherWay() throws {
        #expect(ModelQuery().apply(to: models).data.map(\.entry.id) == ["a/large-GGUF:Q8_0", "b/small-GGUF:Q4_0", "c/mid-GGUF:Q4_0"])
        let bySize = try ModelQuery(parameters: ["sort": "size", "order": "desc"])
        #expect(bySize.apply(to: models).data.map(\.entry.sizeBytes) == [300, 200, 10])
    }

    @Test func filtersByNameQuantizationAndCapability() throws {
        #expect(try ModelQuery(parameters: ["name": "MID"]).apply(to: models).data.map(\.entry.id) == ["c/mid-GGUF:Q4_0"])
        #expect(try ModelQuery(parameters: ["quant": "q4_0"]).apply(to: models).total == 2)
        #expect(try ModelQuery(parameters: ["capability": "tools"]).apply(to: models).data.map(\.entry.id) == ["a/large-GGUF:Q8_0"])
    }

    @Test func pagesCarryTheTotal() throws {
        let second = try ModelQuery(parameters: ["page": "2", "page_size": "2"]).apply(to: models)
        #expect(second.data.map(\.entry.id) == ["c/mid-GGUF:Q4_0"])
        #expect(second.total == 3)
        #expect(try ModelQuery(parameters: ["page": "9"]).apply(to: models).data.isEmpty)
    }

    @Test(arguments: [["sort": "date"], ["order": "up"], ["page": "0"], ["page_size": "501"], ["page": "x"]])
    func invalidParametersAre400(parameters: [String: String]) {
        let error = #expect(throws: BodhiError.self) { try ModelQuery(parameters: parameters) }
        #expect(error?.status == 400)
        #expect(error?.param == parameters.keys.first)
    }

    @Test func enginePlanReadsTheContextSizeFromEngineArguments() {
        #expect(EnginePlan(slots: 4, engineArguments: ["--ctx-size", "8192"]).contextSize == 8192)
        #expect(EnginePlan(slots: 4, engineArguments: ["-c", "2048", "--flash-attn"]).contextSize == 2048)
        #expect(EnginePlan(slots: 4, engineArguments: ["--ctx-size=4096"]).contextSize == 4096)
        #expect(EnginePlan(slots: 4, engineArguments: ["-c", "0"]).contextSize == nil)
    }

    @Test func memoryEstimateIsWeightsPlusEverySlotsCache() throws {
        let info = GGUFModelInfo(try GGUFReader.read(data: GGUFWriter.sample()))
        let entry = try Self.description("x/y:Q4_K_M", size: 1000).entry
        let trained = try #require(MemoryEstimate(model: entry, info: info, plan: EnginePlan(slots: 2, contextSize: nil)))
        #expect(trained.contextPerSlot == 4096)
        #expect(trained.kvCacheBytes == Int64(info.kvCacheBytes(tokens: 8192)!))
        #expect(trained.totalBytes == 1000 + trained.kvCacheBytes)
        let set = try #require(MemoryEstimate(model: entry, info: info, plan: EnginePlan(slots: 2, contextSize: 1024)))
        #expect(set.contextPerSlot == 512)
        #expect(set.kvCacheBytes == Int64(info.kvCacheBytes(tokens: 1024)!))
    }
}
