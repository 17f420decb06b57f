import BodhiCore
import Foundation
import NIOCore

/// A rerank request (Jina's and Cohere's shape) checked and put the way llama-server takes it:
/// `query` a string, `documents` strings or `{"text": ...}` objects (sent on as strings), `top_n`
/// at least 1. llama-server answers with the results sorted by relevance, cut to `top_n`; with
/// `return_documents: true` (Jina's and Cohere's v1 option) each result also carries its
/// document, which the engine does not give back.
enum RerankRequest {
    /// More documents than this in one request are refused (Cohere's own limit).
    static let maxDocuments = 1000

    static func take(from body: ByteBuffer) throws -> (body: ByteBuffer, rewrite: RerankDocuments?) {
        guard var request = JSONBody.parsed(body) else { return (body, nil) }
        guard let query = request["query"] as? String, !query.isEmpty else {
            throw BodhiError.invalidRequest("query must be a non-empty string.", param: "query")
        }
        guard let given = request["documents"] as? [Any], !given.isEmpty else {
            throw BodhiError.invalidRequest("documents must be a non-empty array of strings or {\"text\": ...} objects.", param: "documents")
        }
        guard given.count <= maxDocuments else {
            throw BodhiError.invalidRequest("documents may hold at most \(maxDocuments) entries; this request has \(given.count).", param: "documents")
        }
        let documents = try given.enumerated().map { index, document -> String in
            if let text = document as? String { return text }
            if let text = (document as? JSONObject)?["text"] as? String { return text }
            throw BodhiError.invalidRequest("documents[\(index)] must be a string or an object with a string text.", param: "documents")
        }
        switch request["top_n"] {
        case nil, is NSNull: request["top_n"] = nil
        case let value as Int where value >= 1: break
        default: throw BodhiError.invalidRequest("top_n must be a whole number of at least 1.", param: "top_n")
        }
        let returnDocuments: Bool
        switch request["return_documents"] {
        case nil, is NSNull: returnDocuments = false
        case let value as Bool: returnDocuments = value
        default: throw BodhiError.invalidRequest("return_documents must be true or false.", param: "return_documents")
        }
        request["return_documents"] = nil
        request["documents"] = documents
        return (JSONBody.buffer(request), returnDocuments ? RerankDocuments(documents: documents) : nil)
    }
}

/// Puts each result's document beside its score, as `{"text": ...}`.
struct RerankDocuments: ReplyRewrite {
    let documents: [String]

    func whole(_ body: ByteBuffer) -> ByteBuffer {
        guard var answer = JSONBody.parsed(body), var results = answer["results"] as? [JSONObject] else { return body }
        for position in results.indices {
            guard let index = results[position]["index"] as? Int, documents.indices.contains(index) else { continue }
            results[position]["document"] = ["text": documents[index]]
        }
        answer["results"] = results
        return JSONBody.buffer(answer)
    }

    /// Reranking never streams.
    func streamRewriter() -> any StreamRewriter { Unchanged() }

    private struct Unchanged: StreamRewriter {
        mutating func rewrite(_ event: ByteBuffer) -> [ByteBuffer] { [event] }
    }
}
