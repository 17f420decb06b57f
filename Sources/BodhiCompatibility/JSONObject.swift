import BodhiCore
import Foundation
import NIOCore

/// Ollama's and Anthropic's bodies are open-ended JSON objects (options, formats, tool schemas,
/// content blocks); they are read and written as dictionaries and mapped field by field.
typealias JSONObject = [String: Any]

enum JSONBody {
    static func object(from buffer: ByteBuffer) throws -> JSONObject {
        guard buffer.readableBytes > 0 else { throw BodhiError.invalidRequest("The request body is empty; send a JSON object.") }
        guard let object = try? JSONSerialization.jsonObject(with: Data(buffer.readableBytesView)) as? JSONObject else {
            throw BodhiError.invalidRequest("The request body is not a JSON object.")
        }
        return object
    }

    static func buffer(_ object: JSONObject, newline: Bool = false) -> ByteBuffer {
        var data = (try? JSONSerialization.data(withJSONObject: object, options: [.withoutEscapingSlashes])) ?? Data("{}".utf8)
        if newline { data.append(0x0A) }
        return ByteBuffer(data: data)
    }
}
