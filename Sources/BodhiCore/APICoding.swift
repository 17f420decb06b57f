import Foundation

/// How Bodhi's own API writes and reads JSON: times are Unix seconds, as OpenAI's `created`.
extension JSONEncoder {
    public static func bodhiAPI() -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .secondsSince1970
        return encoder
    }
}

extension JSONDecoder {
    public static func bodhiAPI() -> JSONDecoder {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .secondsSince1970
        return decoder
    }
}
