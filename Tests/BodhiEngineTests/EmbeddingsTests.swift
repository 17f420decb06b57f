import BodhiCore
import Foundation
import NIOCore
import Testing
@testable import BodhiEngine

/// Embedding inputs fitted to an engine's context, and vectors shaped as asked.
@Suite(.timeLimit(.minutes(1))) struct EmbeddingsTests {
    /// One token per character, as a stand-in tokenizer.
    static func tokenize(_ text: String) async throws -> [Int] { text.unicodeScalars.map { Int($0.value) } }

    @Test func shortInputsPassUntouchedWithoutBeingCounted() async throws {
        let body = JSONBody.buffer(["model": "m", "input": ["short", "also short"]])
        let fitted = try await EmbeddingInputs.fit(body, context: 64) { _ in
            Issue.record("counted a short input")
            return []
        }
        #expect(fitted == body)
    }

    @Test func aLongInputIsCutWhenAllowedAndRefusedByItsPlaceOtherwise() async throws {
        let long = String(repeating: "x", count: 100)
        let cut = try await EmbeddingInputs.fit(
            JSONBody.buffer(["model": "m", "input": ["ok", long], "truncate": true]), context: 64, tokenize: Self.tokenize)
        let request = try #require(JSONBody.parsed(cut))
        #expect(request["truncate"] == nil)
        let inputs = try #require(request["input"] as? [Any])
        #expect(inputs[0] as? String == "ok" && (inputs[1] as? [Int])?.count == 64)
        do {
            _ = try await EmbeddingInputs.fit(JSONBody.buffer(["model": "m", "input": ["ok", long]]), context: 64, tokenize: Self.tokenize)
            Issue.record("a long input was accepted")
        } catch let error as BodhiError {
            #expect(error.status == 400 && error.message.contains("Input 1 has 100 tokens, more than the 64"))
        }
        // Token ids count as they are.
        let ids = try await EmbeddingInputs.fit(
            JSONBody.buffer(["model": "m", "input": Array(0..<80), "truncate": true]), context: 64, tokenize: Self.tokenize)
        #expect((JSONBody.parsed(ids)?["input"] as? [Int])?.count == 64)
    }

    @Test func dimensionsCutAndRenormaliseAndBase64IsLittleEndianFloat32() throws {
        let taken = try EmbeddingShape.take(from: JSONBody.buffer(["model": "m", "input": "x", "dimensions": 2, "encoding_format": "base64"]))
        let shape = try #require(taken.shape)
        #expect(shape == EmbeddingShape(dimensions: 2, base64: true))
        #expect(JSONBody.parsed(taken.body)?["dimensions"] == nil && JSONBody.parsed(taken.body)?["encoding_format"] == nil)
        let reply = JSONBody.buffer(["data": [["index": 0, "embedding": [3.0, 4.0, 12.0]]]])
        let shaped = try #require(JSONBody.parsed(try shape.shaped(reply)))
        let encoded = try #require((shaped["data"] as? [[String: Any]])?.first?["embedding"] as? String)
        let bytes = [UInt8](try #require(Data(base64Encoded: encoded)))
        let floats = stride(from: 0, to: bytes.count, by: 4).map { index in
            Float(bitPattern: UInt32(bytes[index]) | UInt32(bytes[index + 1]) << 8 | UInt32(bytes[index + 2]) << 16 | UInt32(bytes[index + 3]) << 24)
        }
        #expect(floats == [0.6, 0.8])
        do {
            _ = try EmbeddingShape(dimensions: 4).shaped(reply)
            Issue.record("more dimensions than the vector has were accepted")
        } catch let error as BodhiError {
            #expect(error.param == "dimensions")
        }
        #expect(try EmbeddingShape.take(from: JSONBody.buffer(["input": "x"])).shape == nil)
        for bad in [["dimensions": 0], ["encoding_format": "hex"]] as [[String: Any]] {
            #expect(throws: BodhiError.self) { try EmbeddingShape.take(from: JSONBody.buffer(bad)) }
        }
    }
}
