import BodhiModels
import Testing

@Suite(.timeLimit(.minutes(2))) struct ModelNamingTests {
    @Test(arguments: [
        ("SmolLM2-135M-Instruct.Q4_1.gguf", "Q4_1"),
        ("Llama-3.2-1B-Instruct-Q4_K_M.gguf", "Q4_K_M"),
        ("qwen2.5-0.5b-instruct-q8_0.gguf", "Q8_0"),
        ("model.IQ2_XXS.gguf", "IQ2_XXS"),
        ("gemma-3-270m-it-BF16.gguf", "BF16"),
        ("phi-4-f16.gguf", "F16"),
        ("Meta-Llama-3.1-8B-Instruct-Q5_K_S-00001-of-00002.gguf", "Q5_K_S"),
        ("gpt-oss-20b-MXFP4.gguf", "MXFP4"),
        ("ggml-model_Q6_K.gguf", "Q6_K"),
    ])
    func quantizationLabelComesFromTheFileName(file: String, label: String) {
        #expect(GGUFFileName(file)?.quantization == label)
    }

    @Test func filesWithoutALabelHaveNone() {
        #expect(GGUFFileName("tinymodel.gguf")?.quantization == nil)
        #expect(GGUFFileName("notes.txt") == nil)
    }

    @Test func splitPartsShareAStem() throws {
        let first = try #require(GGUFFileName("big-Q4_K_M-00001-of-00003.gguf"))
        let third = try #require(GGUFFileName("big-Q4_K_M-00003-of-00003.gguf"))
        #expect(first.split?.part == 1)
        #expect(first.split?.count == 3)
        #expect(third.split?.part == 3)
        #expect(first.stem == third.stem)
        #expect(GGUFFileName("model-Q4_0.gguf")?.split == nil)
    }

    @Test func projectorsAreNotModels() {
        #expect(GGUFFileName("mmproj-model-f16.gguf")?.isAuxiliary == true)
        // Of several projectors a model gets the full-precision one.
        #expect(GGUFFileName.projector(among: ["d/mmproj-m-Q8_0.gguf", "d/mmproj-m-F16.gguf", "d/m-Q4_0.gguf"]) == "d/mmproj-m-F16.gguf")
        #expect(GGUFFileName.projector(among: ["d/mmproj-m-Q4_1.gguf", "d/m-Q4_0.gguf"]) == "d/mmproj-m-Q4_1.gguf")
        #expect(GGUFFileName.projector(among: ["d/m-Q4_0.gguf"]) == nil)
    }
}
