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

enum OllamaJSON {
    /// Ollama's timestamps: RFC 3339 with fractions of a second.
    static func timestamp(_ date: Date = Date()) -> String {
        date.formatted(.iso8601.year().month().day().dateSeparator(.dash).time(includingFractionalSeconds: true).timeSeparator(.colon).timeZone(separator: .omitted))
    }

    /// The model a request names: Ollama's `model`, or the older `name`.
    static func modelName(_ object: JSONObject) throws -> String {
        guard let name = (object["model"] as? String) ?? (object["name"] as? String), !name.isEmpty else {
            throw BodhiError.invalidRequest("model is required")
        }
        return name
    }
}
