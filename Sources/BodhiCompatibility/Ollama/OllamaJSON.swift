import BodhiCore
import BodhiEngine
import Foundation

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
