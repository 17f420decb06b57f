import BodhiEngine
import NIOCore

/// What a translated request answers: one JSON object, or chunks (NDJSON lines, SSE events)
/// written as they come.
public enum TranslatedReply: Sendable {
    case json(ByteBuffer)
    case stream(ChunkStream)
}

/// Chunks produced while the receiver takes them.
public struct ChunkStream: Sendable {
    let produce: @Sendable (_ emit: (ByteBuffer) async throws -> Void) async -> Void

    public func forward(to emit: (ByteBuffer) async throws -> Void) async {
        await produce(emit)
    }
}

/// Server-sent events named by their `type`, as Anthropic's and OpenAI's Responses streams send them.
enum NamedEvent {
    static func sse(_ event: [String: Any]) -> ByteBuffer {
        SSEFramer.event(event, name: event["type"] as? String ?? "message")
    }
}
