import BodhiCore
import BodhiEngine
import Foundation
import Hummingbird

extension Request {
    /// The path after `prefix`, percent-decoded: model ids contain `/`, and clients send them
    /// either encoded as one segment or as plain segments.
    func decodedPath(after prefix: String) -> String {
        let raw = String(uri.path.dropFirst(prefix.count))
        return raw.removingPercentEncoding ?? raw
    }
}

extension Request {
    /// The query string's parameters, percent-decoded; the last of a repeated name wins.
    var queryValues: [String: String] {
        var values: [String: String] = [:]
        for (key, value) in uri.queryParameters {
            values[String(key)] = String(value)
        }
        return values
    }
}

extension Parameters {
    /// A path parameter, percent-decoded (clients encode `:` and other characters in names).
    func decoded(_ name: String) throws -> String {
        let raw = try require(name)
        return raw.removingPercentEncoding ?? raw
    }
}

extension Request {
    /// The body as JSON of `type`, or a 400 that says what was wrong with it.
    func decodeJSON<Value: Decodable>(_ type: Value.Type, limit: Int) async throws -> Value {
        let body = try await body.collect(upTo: limit)
        // Foundation's decoder lets some non-JSON through (trailing commas); every route holds the RFC.
        try JSONBody.checkStrict(body)
        do {
            return try JSONDecoder().decode(type, from: Data(body.readableBytesView))
        } catch let DecodingError.keyNotFound(key, _) {
            throw BodhiError.invalidRequest("The request body lacks '\(key.stringValue)'.", param: key.stringValue)
        } catch let DecodingError.typeMismatch(_, context) {
            let field = context.codingPath.map(\.stringValue).joined(separator: ".")
            throw BodhiError.invalidRequest("'\(field)' has the wrong type: \(context.debugDescription)", param: field)
        } catch {
            throw BodhiError.invalidRequest("The request body is not valid JSON.")
        }
    }
}
