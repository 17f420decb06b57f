import BodhiCore
import Foundation
import NIOCore

/// What Bodhi does around a local engine's embeddings: inputs fitted to the embeddings engine's
/// context (cut when the caller allows it, Ollama's `truncate`; refused clearly otherwise), and the
/// vectors shaped as asked: OpenAI's `dimensions` (cut and renormalised, as OpenAI's v3 models do)
/// and `encoding_format: base64` (little-endian float32).
struct EmbeddingShape: Sendable, Equatable {
    var dimensions: Int?
    var base64 = false

    /// The shape a request asks for, and its body without those fields (the engine gets floats).
    static func take(from body: ByteBuffer) throws -> (shape: EmbeddingShape?, body: ByteBuffer) {
        guard var request = JSONBody.parsed(body), request["dimensions"] != nil || request["encoding_format"] != nil else { return (nil, body) }
        var shape = EmbeddingShape()
        switch request["dimensions"] {
        case nil, is NSNull: break
        case let value as Int where value >= 1: shape.dimensions = value
        default: throw BodhiError.invalidRequest("dimensions must be a whole number of at least 1.", param: "dimensions")
        }
        switch request["encoding_format"] {
        case nil, is NSNull: break
        case let format as String where format == "float": break
        case let format as String where format == "base64": shape.base64 = true
        default: throw BodhiError.invalidRequest("encoding_format must be float or base64.", param: "encoding_format")
        }
        request["dimensions"] = nil
        request["encoding_format"] = nil
        return (shape, JSONBody.buffer(request))
    }

    /// An engine's embeddings answer (OpenAI's shape) with its vectors shaped.
    func shaped(_ reply: ByteBuffer) throws -> ByteBuffer {
        guard var answer = JSONBody.parsed(reply), var data = answer["data"] as? [JSONObject] else { return reply }
        for index in data.indices {
            guard var vector = (data[index]["embedding"] as? [NSNumber])?.map({ $0.floatValue }) else { continue }
            if let dimensions {
                guard dimensions <= vector.count else {
                    throw BodhiError.invalidRequest(
                        "dimensions must be at most \(vector.count), the size of this model's embeddings.", param: "dimensions")
                }
                vector = Self.normalized(Array(vector.prefix(dimensions)))
            }
            data[index]["embedding"] = base64 ? Self.base64(vector) as Any : vector.map { Double($0) } as Any
        }
        answer["data"] = data
        return JSONBody.buffer(answer)
    }

    static func normalized(_ vector: [Float]) -> [Float] {
        let norm = vector.reduce(0) { $0 + $1 * $1 }.squareRoot()
        return norm > 0 ? vector.map { $0 / norm } : vector
    }

    static func base64(_ vector: [Float]) -> String {
        var bytes = [UInt8]()
        bytes.reserveCapacity(vector.count * 4)
        for value in vector {
            withUnsafeBytes(of: value.bitPattern.littleEndian) { bytes.append(contentsOf: $0) }
        }
        return Data(bytes).base64EncodedString()
    }
}

/// An embeddings request's inputs fitted to an engine whose batch holds `context` tokens.
enum EmbeddingInputs {
    /// The body to send: inputs that may be too long are counted with `tokenize`; one longer than
    /// `context` is cut to it when the request says `truncate: true`, else refused.
    static func fit(_ body: ByteBuffer, context: Int, tokenize: (String) async throws -> [Int]) async throws -> ByteBuffer {
        guard var request = JSONBody.parsed(body) else { return body }
        let truncate = request["truncate"] as? Bool ?? false
        let single = request["input"] is String || (request["input"] as? [Any])?.allSatisfy({ $0 is Int }) == true
        let inputs: [Any] = single ? [request["input"] as Any] : request["input"] as? [Any] ?? []
        var fitted: [Any] = []
        var changed = request["truncate"] != nil
        for (index, input) in inputs.enumerated() {
            var tokens: [Int]?
            if let text = input as? String {
                // A token is at least one byte: shorter text cannot overflow.
                if text.utf8.count + 2 > context { tokens = try await tokenize(text) }
            } else if let ids = input as? [Int] {
                tokens = ids
            }
            guard let tokens, tokens.count > context else {
                fitted.append(input)
                continue
            }
            guard truncate else {
                throw BodhiError.invalidRequest(
                    "Input \(index) has \(tokens.count) tokens, more than the \(context) this model embeds at once; shorten it.",
                    param: "input")
            }
            fitted.append(Array(tokens.prefix(context)))
            changed = true
        }
        guard changed else { return body }
        request["truncate"] = nil
        request["input"] = single ? fitted.first ?? "" : fitted
        return JSONBody.buffer(request)
    }
}
