import Foundation
import NIOCore

/// What one inference request cost, reported when it ends (for metrics and token limits).
public struct InferenceRecord: Sendable {
    public let model: String
    public let operation: InferenceOperation
    public let caller: InferenceCaller
    /// The engine's status; 200 for a stream that ran to its end.
    public let status: Int
    public let queueWait: Duration
    public let promptTokens: Int?
    public let completionTokens: Int?
    /// Streams only: from the request's arrival to the first generated event.
    public let timeToFirstToken: Duration?
    /// Streams only: the gaps between consecutive generated events.
    public let interTokenLatencies: [Duration]
    /// From the request's arrival to its last byte from the engine.
    public let duration: Duration

    public var totalTokens: Int { (promptTokens ?? 0) + (completionTokens ?? 0) }

    public init(
        model: String, operation: InferenceOperation, caller: InferenceCaller, status: Int, queueWait: Duration,
        promptTokens: Int?, completionTokens: Int?, timeToFirstToken: Duration?, interTokenLatencies: [Duration], duration: Duration
    ) {
        self.model = model
        self.operation = operation
        self.caller = caller
        self.status = status
        self.queueWait = queueWait
        self.promptTokens = promptTokens
        self.completionTokens = completionTokens
        self.timeToFirstToken = timeToFirstToken
        self.interTokenLatencies = interTokenLatencies
        self.duration = duration
    }
}

/// Told about every inference request as it ends, and about requests the queue refused.
public protocol InferenceObserver: Sendable {
    func inferenceFinished(_ record: InferenceRecord)
    func queueRejected(model: String)
}

extension InferenceObserver {
    public func queueRejected(model: String) {}
}

/// Token counts from an engine's answer: OpenAI's `usage` where present, else llama-server's
/// `timings` (which its last stream event and native endpoints carry). Only those members are
/// decoded, found from the end of the body, so a large embeddings answer is not parsed whole.
enum EngineUsage {
    struct Usage: Decodable {
        let promptTokens: Int?
        let completionTokens: Int?

        enum CodingKeys: String, CodingKey {
            case promptTokens = "prompt_tokens", completionTokens = "completion_tokens"
        }
    }

    struct Timings: Decodable {
        let cacheN: Int?
        let promptN: Int?
        let predictedN: Int?

        enum CodingKeys: String, CodingKey {
            case cacheN = "cache_n", promptN = "prompt_n", predictedN = "predicted_n"
        }
    }

    static func read(_ body: ByteBuffer) -> (prompt: Int?, completion: Int?) {
        body.withUnsafeReadableBytes { bytes in
            if let object = lastObject(named: "usage", in: bytes),
               let usage = try? JSONDecoder().decode(Usage.self, from: Data(object)) {
                return (usage.promptTokens, usage.completionTokens)
            }
            if let object = lastObject(named: "timings", in: bytes),
               let timings = try? JSONDecoder().decode(Timings.self, from: Data(object)) {
                let prompt = timings.promptN.map { $0 + (timings.cacheN ?? 0) }
                return (prompt, timings.predictedN)
            }
            return (nil, nil)
        }
    }

    /// The bytes of the object that is the value of the last `"name":` in `bytes` (objects
    /// without strings that contain braces, as these are).
    static func lastObject(named name: String, in bytes: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer.SubSequence? {
        let key = Array("\"\(name)\"".utf8)
        var index = bytes.count - key.count
        while index >= 0 {
            if bytes[index] == key[0], bytes[index..<index + key.count].elementsEqual(key) { break }
            index -= 1
        }
        guard index >= 0 else { return nil }
        var start = index + key.count
        while start < bytes.count, bytes[start] == UInt8(ascii: " ") || bytes[start] == UInt8(ascii: ":") { start += 1 }
        guard start < bytes.count, bytes[start] == UInt8(ascii: "{") else { return nil }
        var depth = 0
        var end = start
        while end < bytes.count {
            if bytes[end] == UInt8(ascii: "{") { depth += 1 }
            if bytes[end] == UInt8(ascii: "}") {
                depth -= 1
                if depth == 0 { return bytes[start...end] }
            }
            end += 1
        }
        return nil
    }
}
