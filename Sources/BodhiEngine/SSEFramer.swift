import NIOCore

/// Cuts a Server-Sent Events byte stream into whole events, so that a proxy forwards event
/// by event and can append its own event (an error) without splitting one in two.
/// Events end with a blank line; `\n\n`, `\r\n\r\n` and `\r\r` are all accepted.
public struct SSEFramer: Sendable {
    private var pending = ByteBuffer()

    public init() {}

    /// Adds bytes and returns every event they complete, terminator included.
    public mutating func append(_ bytes: ByteBuffer) -> [ByteBuffer] {
        if pending.readableBytes == 0 {
            pending = bytes
        } else {
            var bytes = bytes
            pending.writeBuffer(&bytes)
        }
        var events: [ByteBuffer] = []
        while let end = SSEFramer.endOfFirstEvent(in: pending) {
            events.append(pending.readSlice(length: end)!)
        }
        if pending.readableBytes == 0 {
            pending.clear()
        } else if pending.readerIndex > 64 * 1024 {
            pending.discardReadBytes()
        }
        return events
    }

    /// `object` (an object or an array) as one event, `data: {json}` and a blank line, named by
    /// an `event:` line when `name` is given (as Anthropic's and OpenAI's Responses streams name theirs).
    public static func event(_ object: Any, name: String? = nil) -> ByteBuffer {
        var event = ByteBuffer(string: name.map { "event: \($0)\ndata: " } ?? "data: ")
        var json = JSONBody.buffer(object)
        event.writeBuffer(&json)
        event.writeString("\n\n")
        return event
    }

    /// Bytes of an unfinished event held back so far.
    public var pendingByteCount: Int { pending.readableBytes }

    /// What a proxy needs to know about an event, read from its bytes without decoding text
    /// (this runs once per streamed token).
    public enum Kind: Sendable, Equatable {
        /// `data: [DONE]`, OpenAI's end of stream.
        case done
        /// A `data:` payload that is a JSON object with an `error` member first.
        case error
        case other
    }

    public static func kind(of event: ByteBuffer) -> Kind {
        event.withUnsafeReadableBytes { bytes -> Kind in
            guard let payload = firstDataPayload(in: bytes) else { return .other }
            if payload.starts(with: "[DONE]".utf8) { return .done }
            if payload.starts(with: #"{"error""#.utf8) { return .error }
            return .other
        }
    }

    /// The bytes after `data:` (and one optional space) on the event's first data line.
    private static func firstDataPayload(in bytes: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer.SubSequence? {
        var lineStart = bytes.startIndex
        while lineStart < bytes.endIndex {
            var lineEnd = lineStart
            while lineEnd < bytes.endIndex, bytes[lineEnd] != UInt8(ascii: "\n"), bytes[lineEnd] != UInt8(ascii: "\r") {
                lineEnd += 1
            }
            let line = bytes[lineStart..<lineEnd]
            if line.starts(with: "data:".utf8) {
                var payload = line.dropFirst(5)
                if payload.first == UInt8(ascii: " ") { payload = payload.dropFirst() }
                return payload
            }
            lineStart = lineEnd + 1
        }
        return nil
    }

    /// The `data:` payload of an event (lines joined with `\n`), or nil if it has none.
    public static func data(of event: ByteBuffer) -> String? {
        let text = String(buffer: event)
        var lines: [Substring] = []
        for line in text.split(omittingEmptySubsequences: true, whereSeparator: { $0 == "\n" || $0 == "\r" || $0 == "\r\n" })
        where line.hasPrefix("data:") {
            var value = line.dropFirst(5)
            if value.first == " " { value = value.dropFirst() }
            lines.append(value)
        }
        return lines.isEmpty ? nil : lines.joined(separator: "\n")
    }

    /// The length of the first complete event, terminator included.
    private static func endOfFirstEvent(in buffer: ByteBuffer) -> Int? {
        buffer.withUnsafeReadableBytes { bytes -> Int? in
            let count = bytes.count
            var index = 0
            while index < count {
                let byte = bytes[index]
                if byte == UInt8(ascii: "\n") {
                    if index + 1 < count, bytes[index + 1] == UInt8(ascii: "\n") { return index + 2 }
                    if index + 2 < count, bytes[index + 1] == UInt8(ascii: "\r"), bytes[index + 2] == UInt8(ascii: "\n") {
                        return index + 3
                    }
                } else if byte == UInt8(ascii: "\r") {
                    if index + 1 < count, bytes[index + 1] == UInt8(ascii: "\r") { return index + 2 }
                }
                index += 1
            }
            return nil
        }
    }
}
