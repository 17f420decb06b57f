import BodhiCore
import Foundation
import NIOCore

/// Other vendors' bodies are open-ended JSON objects (options, formats, tool schemas, content
/// blocks), both those Bodhi serves (Ollama's, Anthropic's) and those it sends (Anthropic's,
/// Gemini's): read and written as dictionaries and mapped field by field.
public typealias JSONObject = [String: Any]

public enum JSONBody {
    public static func object(from buffer: ByteBuffer) throws -> JSONObject {
        guard buffer.readableBytes > 0 else { throw BodhiError.invalidRequest("The request body is empty; send a JSON object.") }
        try checkStrict(buffer)
        guard let object = try? JSONSerialization.jsonObject(with: Data(buffer.readableBytesView)) as? JSONObject else {
            throw BodhiError.invalidRequest("The request body is not a JSON object.")
        }
        return object
    }

    /// `object[key]` as a boolean: nil when absent or null, a 400 naming it when it is anything but
    /// true or false (a number included, which Foundation would read as one).
    public static func flag(_ object: JSONObject, _ key: String) throws -> Bool? {
        switch object[key] {
        case nil, is NSNull: return nil
        case let number as NSNumber where String(cString: number.objCType) == "c": return number.boolValue
        default: throw BodhiError.invalidRequest("\(key) must be true or false.", param: key)
        }
    }

    /// Checks that `buffer` is one JSON value by the RFC (no trailing commas, comments or junk), as
    /// the inference routes hold every body; a 400 otherwise.
    public static func checkStrict(_ buffer: ByteBuffer) throws {
        let valid = buffer.withUnsafeReadableBytes { bytes in
            (try? RequestHeadScanner.validate(bytes)) != nil
        }
        guard valid else { throw BodhiError.invalidRequest("The request body is not valid JSON.") }
    }

    /// `object` (an object or an array) as JSON, `/` unescaped, keys sorted (the same object is
    /// always the same bytes).
    public static func buffer(_ object: Any, newline: Bool = false) -> ByteBuffer {
        var data = (try? JSONSerialization.data(withJSONObject: object, options: [.withoutEscapingSlashes, .sortedKeys])) ?? Data("{}".utf8)
        if newline { data.append(0x0A) }
        return ByteBuffer(data: data)
    }
}

extension BodhiError {
    /// An engine's (or backend's) answer other than 200 to a request Bodhi made for its caller:
    /// its message and status (a refusal stays the caller's to hear: a 400, a backend's 429).
    public static func engineAnswered(_ status: Int, _ answer: JSONObject) -> BodhiError {
        let message = (answer["error"] as? JSONObject)?["message"] as? String ?? "The engine answered \(status)."
        return BodhiError(status >= 500 ? .engineFailed : .invalidRequest, status: status, message)
    }
}

extension JSONBody {
    /// `buffer` as an object; nil when it is not one (a backend's answer that is not JSON).
    public static func parsed(_ buffer: ByteBuffer) -> JSONObject? {
        try? JSONSerialization.jsonObject(with: Data(buffer.readableBytesView)) as? JSONObject
    }
}
