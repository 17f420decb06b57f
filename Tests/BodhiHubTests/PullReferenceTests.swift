import BodhiCore
import Testing
@testable import BodhiHub

@Suite(.timeLimit(.minutes(2))) struct PullReferenceTests {
    @Test func acceptsTheFormsOllamaAndTheHubUse() throws {
        #expect(try PullReference(parsing: "owner/repo").selector == .preferred)
        #expect(try PullReference(parsing: "owner/repo:q4_k_m").selector == .quantization("Q4_K_M"))
        #expect(try PullReference(parsing: "hf.co/owner/repo:Q8_0") == PullReference(parsing: "owner/repo:Q8_0"))
        #expect(try PullReference(parsing: "https://huggingface.co/owner/repo").repo == "owner/repo")
        #expect(try PullReference(parsing: "owner/repo:latest").selector == .preferred)
        let file = try PullReference(parsing: "owner/repo/sub/model-Q4_0.gguf")
        #expect(file.selector == .file("sub/model-Q4_0.gguf"))
        for bad in ["", "repo", "owner/", "/repo", "owner/repo/notes.txt", "owner/../x", "own er/repo"] {
            #expect(throws: BodhiError.self) { try PullReference(parsing: bad) }
        }
    }

    static let listing: [HubClient.RepoFile] = [
        .init(path: "README.md", size: 10, sha256: nil),
        .init(path: "model.Q4_K_M.gguf", size: 100, sha256: "a"),
        .init(path: "model.Q8_0.gguf", size: 200, sha256: "b"),
        .init(path: "big/model.F16-00001-of-00002.gguf", size: 300, sha256: "c"),
        .init(path: "big/model.F16-00002-of-00002.gguf", size: 300, sha256: "d"),
        .init(path: "half/model.BF16-00001-of-00002.gguf", size: 300, sha256: "e"),
        .init(path: "mmproj-model-f16.gguf", size: 50, sha256: "f"),
    ]

    @Test func choosesByQuantizationPathOrPreference() throws {
        // A projector in the model's folder comes with it; the folder `big/` has none.
        #expect(try PullReference(parsing: "o/r:q8_0").choose(from: Self.listing).files.map(\.path) == ["model.Q8_0.gguf", "mmproj-model-f16.gguf"])
        #expect(try PullReference(parsing: "o/r").choose(from: Self.listing).label == "Q4_K_M")
        let split = try PullReference(parsing: "o/r:F16").choose(from: Self.listing)
        #expect(split.files.map(\.sha256) == ["c", "d"])
        #expect(try PullReference(parsing: "o/r/big/model.F16-00002-of-00002.gguf").choose(from: Self.listing) == split)
    }

    @Test func aMissingOrAmbiguousChoiceListsWhatExists() throws {
        do {
            _ = try PullReference(parsing: "o/r:Q2_K").choose(from: Self.listing)
            Issue.record("expected an error")
        } catch let error as BodhiError {
            #expect(error.status == 404)
            #expect(error.message.contains("Q8_0 (model.Q8_0.gguf)"))
            // An incomplete split and a projector are not offered.
            #expect(!error.message.contains("BF16"))
            #expect(!error.message.contains("mmproj"))
        }
        let twins: [HubClient.RepoFile] = [
            .init(path: "a/m.Q4_0.gguf", size: 1, sha256: "a"), .init(path: "b/m.Q4_0.gguf", size: 1, sha256: "b"),
        ]
        do {
            _ = try PullReference(parsing: "o/r:Q4_0").choose(from: twins)
            Issue.record("expected an error")
        } catch let error as BodhiError {
            #expect(error.status == 400)
            #expect(error.message.contains("a/m.Q4_0.gguf") && error.message.contains("b/m.Q4_0.gguf"))
        }
    }
}
