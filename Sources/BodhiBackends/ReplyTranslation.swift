import BodhiCore
import BodhiEngine
import Foundation
import NIOCore

/// Server-Sent Events as the translations write them.
enum SSE {
    /// One event carrying `object`.
    static func event(_ object: Any) -> ByteBuffer {
        SSEFramer.event(object)
    }

    static let done = ByteBuffer(string: "data: [DONE]\n\n")
}

/// Turns a backend's stream, event by event, into OpenAI's (state kept across events).
protocol EventTranslator: Sendable {
    /// The OpenAI events for one event of the backend's stream.
    mutating func translate(_ event: ByteBuffer) -> [ByteBuffer]
    /// The events that close the stream, once the backend's has ended.
    mutating func finish() -> [ByteBuffer]
}

extension EngineReply {
    /// This reply's stream of SSE events through `translator`, as a stream of OpenAI's. Giving
    /// the result up gives the backend's exchange up.
    func translatingEvents(with translator: some EventTranslator) -> EngineReply {
        let source = body
        let (chunks, continuation) = AsyncThrowingStream<ByteBuffer, any Error>.makeStream()
        let pump = Task {
            var translator = translator
            var framer = SSEFramer()
            do {
                for try await chunk in source {
                    for event in framer.append(chunk) {
                        for translated in translator.translate(event) { continuation.yield(translated) }
                    }
                }
                for translated in translator.finish() { continuation.yield(translated) }
                continuation.finish()
            } catch {
                continuation.finish(throwing: error)
            }
        }
        continuation.onTermination = { _ in pump.cancel() }
        return EngineReply(status: status, contentType: "text/event-stream", body: EngineReplyBody(chunks: chunks, cancel: {
            pump.cancel()
            source.cancel()
        }))
    }

    /// A backend's error answer (any status but 200) as OpenAI's error JSON: its status kept, its
    /// message quoted, the backend named.
    func translatingError(backend: String) async throws -> EngineReply {
        try await translatingWhole(upTo: 1 << 20) { OpenAIError.translated($0, status: status, backend: backend) }
    }

    /// This reply with its whole body replaced by `transform`'s.
    func translatingWhole(upTo limit: Int, status: Int? = nil, _ transform: (ByteBuffer) throws -> ByteBuffer) async throws -> EngineReply {
        let bytes = try await body.collect(upTo: limit)
        return EngineReply(
            status: status ?? self.status, contentType: "application/json", body: EngineReplyBody(whole: try transform(bytes)),
            retryAfterSeconds: retryAfterSeconds)
    }
}

/// OpenAI's error JSON for what a backend answered, in the words of `OpenAIErrorBody` (which
/// Bodhi's own errors use too).
enum OpenAIError {
    static func buffer(status: Int, message: String) -> ByteBuffer {
        ByteBuffer(data: (try? JSONEncoder().encode(OpenAIErrorBody(BodhiError(.backendFailed, status: status, message)))) ?? Data("{}".utf8))
    }

    /// A backend's error answer in OpenAI's shape, with the backend named.
    static func translated(_ body: ByteBuffer, status: Int, backend: String) -> ByteBuffer {
        let message = BackendTransport.errorMessage(in: body) ?? String(buffer: body).prefix(500).description
        return buffer(status: status, message: "The backend '\(backend)' answered \(status): \(message)")
    }
}

/// Where an OpenAI chat completion's pieces come from, for building its chunks and its whole form.
struct ChatChunks {
    let id: String
    let model: String
    let created = Int(Date().timeIntervalSince1970)

    init(model: String) {
        self.model = model
        id = "chatcmpl-" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased().prefix(24)
    }

    func chunk(delta: JSONObject, finishReason: String? = nil) -> ByteBuffer {
        SSE.event([
            "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [["index": 0, "delta": delta, "finish_reason": finishReason ?? NSNull()] as JSONObject],
        ] as JSONObject)
    }

    /// The last chunk, with the counts (as OpenAI sends it for `stream_options.include_usage`).
    func usageChunk(prompt: Int, completion: Int) -> ByteBuffer {
        SSE.event([
            "id": id, "object": "chat.completion.chunk", "created": created, "model": model, "choices": [Any](),
            "usage": Self.usage(prompt: prompt, completion: completion),
        ] as JSONObject)
    }

    func completion(content: String?, toolCalls: [JSONObject], finishReason: String, prompt: Int, completion: Int) -> ByteBuffer {
        var message: JSONObject = ["role": "assistant", "content": content ?? NSNull()]
        if !toolCalls.isEmpty { message["tool_calls"] = toolCalls }
        return JSONBody.buffer([
            "id": id, "object": "chat.completion", "created": created, "model": model,
            "choices": [["index": 0, "message": message, "finish_reason": finishReason] as JSONObject],
            "usage": Self.usage(prompt: prompt, completion: completion),
        ] as JSONObject)
    }

    static func usage(prompt: Int, completion: Int) -> JSONObject {
        ["prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion]
    }

    /// An error event in OpenAI's shape, which ends a stream.
    static func errorEvent(status: Int, message: String) -> ByteBuffer {
        EventStream.errorEvent(BodhiError(.backendFailed, status: status, message))
    }
}
