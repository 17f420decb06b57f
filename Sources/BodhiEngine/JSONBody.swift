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
        guard let object = try? JSONSerialization.jsonObject(with: Data(buffer.readableBytesView)) as? JSONObject else {
            throw BodhiError.invalidRequest("The request body is not a JSON object.")
        }
        return object
    }

    /// `object` (an object or an array) as JSON, `/` unescaped, keys sorted (the same object is
    /// always the same bytes).
    public static func buffer(_ object: Any, newline: Bool = false) -> ByteBuffer {
        var data = (try? JSONSerialization.data(withJSONObject: object, options: [.withoutEscapingSlashes, .sortedKeys])) ?? Data("{}".utf8)
        if newline { data.append(0x0A) }
        return ByteBuffer(data: data)
    }
}

extension JSONBody {
    /// `buffer` as an object; nil when it is not one (a backend's answer that is not JSON).
    public static func parsed(_ buffer: ByteBuffer) -> JSONObject? {
        try? JSONSerialization.jsonObject(with: Data(buffer.readableBytesView)) as? JSONObject
    }
}
