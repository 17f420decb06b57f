import NIOCore

/// What one inference request cost, reported when it ends (for metrics and token limits).
public struct InferenceRecord: Sendable {
    public let model: String
    /// What served it: `local` (this machine's engines), or a backend's name.
    public let backend: String
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

    public var totalTokens: Int { (promptTokens ?? 0) + (completionTokens ?? 0) }

    public init(
        model: String, backend: String = "local", operation: InferenceOperation, caller: InferenceCaller, status: Int, queueWait: Duration,
        promptTokens: Int?, completionTokens: Int?, timeToFirstToken: Duration?, interTokenLatencies: [Duration]
    ) {
        self.model = model
        self.backend = backend
        self.operation = operation
        self.caller = caller
        self.status = status
        self.queueWait = queueWait
        self.promptTokens = promptTokens
        self.completionTokens = completionTokens
        self.timeToFirstToken = timeToFirstToken
        self.interTokenLatencies = interTokenLatencies
    }
}

/// Told about every inference request as it ends, and about requests the queue refused.
public protocol InferenceObserver: Sendable {
    func inferenceFinished(_ record: InferenceRecord)
    func queueRejected(model: String)
    /// A router sent a request on to `to` because `from` failed before answering.
    func routerFellBack(router: String, from: String, to: String)
    /// A router target's breaker is now `state`.
    func breakerChanged(target: String, state: BreakerState)
}

extension InferenceObserver {
    public func queueRejected(model: String) {}
    public func routerFellBack(router: String, from: String, to: String) {}
    public func breakerChanged(target: String, state: BreakerState) {}
}

/// Token counts from an engine's answer: OpenAI's `usage` where present, else llama-server's
/// `timings` (which its last stream event and native endpoints carry). Read from the bytes, from
/// the end of the body, with no JSON decoding: this runs once per request, and a large
/// embeddings answer is not parsed whole.
enum EngineUsage {
    static func read(_ body: ByteBuffer) -> (prompt: Int?, completion: Int?) {
        body.withUnsafeReadableBytes { bytes in
            if let usage = lastObject(named: "usage", in: bytes) {
                let prompt = integer(named: "prompt_tokens", in: usage)
                let completion = integer(named: "completion_tokens", in: usage)
                if prompt != nil || completion != nil { return (prompt, completion) }
            }
            if let timings = lastObject(named: "timings", in: bytes) {
                let prompt = integer(named: "prompt_n", in: timings).map { $0 + (integer(named: "cache_n", in: timings) ?? 0) }
                return (prompt, integer(named: "predicted_n", in: timings))
            }
            return (nil, nil)
        }
    }

    /// Where the last `"name"` key in `bytes` is, just past its closing quote.
    private static func endOfLastKey(_ name: String, in bytes: UnsafeRawBufferPointer.SubSequence) -> Int? {
        let key = Array("\"\(name)\"".utf8)
        var index = bytes.endIndex - key.count
        while index >= bytes.startIndex {
            if bytes[index] == key[0], bytes[index..<index + key.count].elementsEqual(key) { return index + key.count }
            index -= 1
        }
        return nil
    }

    /// The whole-number value of the last `"name":` in `bytes`.
    static func integer(named name: String, in bytes: UnsafeRawBufferPointer.SubSequence) -> Int? {
        guard var index = endOfLastKey(name, in: bytes) else { return nil }
        while index < bytes.endIndex, bytes[index] == UInt8(ascii: " ") || bytes[index] == UInt8(ascii: ":") { index += 1 }
        var value = 0
        var digits = 0
        while index < bytes.endIndex, bytes[index] >= UInt8(ascii: "0"), bytes[index] <= UInt8(ascii: "9"), digits < 18 {
            value = value * 10 + Int(bytes[index] - UInt8(ascii: "0"))
            digits += 1
            index += 1
        }
        return digits > 0 ? value : nil
    }

    /// The bytes of the object that is the value of the last `"name":` in `bytes` (objects
    /// without strings that contain braces, as these are).
    static func lastObject(named name: String, in bytes: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer.SubSequence? {
        guard var start = endOfLastKey(name, in: bytes[...]) else { return nil }
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
