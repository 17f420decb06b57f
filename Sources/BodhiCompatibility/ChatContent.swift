import BodhiEngine

/// A chat message's content as OpenAI's chat API takes it, from the other APIs' texts and images:
/// the texts joined as one string when there is no image (what every chat template reads), else
/// the list of parts, texts first, with each image as an `image_url` part (a URL or a data URL).
enum ChatContent {
    static func content(texts: [String], imageURLs: [String], separator: String = "\n") -> Any {
        guard !imageURLs.isEmpty else { return texts.joined(separator: separator) }
        return texts.map { ["type": "text", "text": $0] as JSONObject } + imageURLs.map { ["type": "image_url", "image_url": ["url": $0]] as JSONObject }
    }

    static func dataURL(mediaType: String, base64: String) -> String { "data:\(mediaType);base64,\(base64)" }

    /// A data URL for base64 image bytes that come without a type (Ollama's `images`): the type
    /// read from the bytes' signature, as Ollama does; the engine reads the bytes themselves.
    static func dataURL(base64 image: String) -> String {
        let signatures: [(prefix: String, type: String)] = [
            ("iVBORw0KGgo", "image/png"), ("/9j/", "image/jpeg"), ("R0lGOD", "image/gif"), ("UklGR", "image/webp"), ("Qk", "image/bmp"),
        ]
        let type = signatures.first { image.hasPrefix($0.prefix) }?.type ?? "image/jpeg"
        return dataURL(mediaType: type, base64: image)
    }
}
