import NIOCore
import NIOHTTP1

/// Reads an engine's HTTP/1.1 replies from the bytes of its connection: a head, then a body by
/// `Content-Length`, chunked, or until the connection closes. Body parts are slices of what was
/// read, handed on as they arrive (a chunk need not be complete).
///
/// Why not NIO's `HTTPResponseDecoder`: on a streamed reply its decoding, and the pipeline's
/// way through it, cost a tenth of Bodhi's time per event; the engine is Bodhi's own child
/// speaking plain HTTP/1.1, which this reads in a few lines (docs/PERFORMANCE.md). Remote
/// backends, any server at all, go through AsyncHTTPClient.
struct EngineReplyParser {
    enum Part: Equatable {
        case head(HTTPResponseHead)
        case body(ByteBuffer)
        /// The reply ended; `keepAlive` says whether the connection can carry another.
        case end(keepAlive: Bool)
    }

    enum Failure: Error, Equatable, CustomStringConvertible {
        case malformed(String)
        /// The connection closed before the reply ended (`replyStarted`: after its head).
        case closedEarly(replyStarted: Bool)

        var description: String {
            switch self {
            case .malformed(let what): "the engine's reply is not valid HTTP/1.1 (\(what))"
            case .closedEarly(let started): started ? "the engine closed the connection mid-reply" : "the engine closed the connection before replying"
            }
        }
    }

    private enum State: Equatable {
        case head
        case fixed(remaining: Int)
        case chunkSize
        case chunkData(remaining: Int)
        case chunkDataEnd
        case trailers
        case untilClose
        /// The reply's end is the next part.
        case ending
    }

    /// A head or a line of chunk framing longer than this is refused.
    static let maxHeadBytes = 64 * 1024
    static let maxLineBytes = 4 * 1024

    private var pending = ByteBuffer()
    private var state = State.head
    private var keepAlive = true

    mutating func append(_ bytes: ByteBuffer) {
        if pending.readableBytes == 0 {
            pending = bytes
        } else {
            if pending.readerIndex > 64 * 1024 { pending.discardReadBytes() }
            var bytes = bytes
            pending.writeBuffer(&bytes)
        }
    }

    /// The next part the bytes so far make; nil until more arrive.
    mutating func next() throws -> Part? {
        while true {
            switch state {
            case .head:
                return try head()
            case .ending:
                state = .head
                // Let go of the storage the body's slices share, rather than clear it in place (a copy).
                if pending.readableBytes == 0 { pending = ByteBuffer() }
                return .end(keepAlive: keepAlive)
            case .fixed(let remaining):
                return body(remaining, more: State.fixed, done: .ending)
            case .untilClose:
                return bodySlice(upTo: pending.readableBytes).map { .body($0) }
            case .chunkSize:
                guard let line = try line() else { return nil }
                let size = try Self.chunkSize(line)
                state = size == 0 ? .trailers : .chunkData(remaining: size)
            case .chunkData(let remaining):
                return body(remaining, more: State.chunkData, done: .chunkDataEnd)
            case .chunkDataEnd:
                guard let line = try line() else { return nil }
                guard line.readableBytes == 0 else { throw Failure.malformed("a chunk longer than its size") }
                state = .chunkSize
            case .trailers:
                guard let line = try line() else { return nil }
                if line.readableBytes == 0 { state = .ending }
            }
        }
    }

    /// The connection closed: the end of a reply read until then, or why the reply is cut short.
    mutating func closed() throws -> Part? {
        switch state {
        case .head:
            guard pending.readableBytes == 0 else { throw Failure.closedEarly(replyStarted: false) }
            return nil
        case .untilClose, .ending:
            state = .head
            return .end(keepAlive: false)
        default:
            throw Failure.closedEarly(replyStarted: true)
        }
    }

    private mutating func head() throws -> Part? {
        guard let length = offset(of: Self.blankLine) else {
            guard pending.readableBytes <= Self.maxHeadBytes else { throw Failure.malformed("a head larger than \(Self.maxHeadBytes) bytes") }
            return nil
        }
        let text = pending.readString(length: length)!
        pending.moveReaderIndex(forwardBy: 4)
        var lines = text.split(separator: "\r\n", omittingEmptySubsequences: false)[...]
        let statusLine = lines.popFirst() ?? ""
        let fields = statusLine.split(separator: " ", maxSplits: 2, omittingEmptySubsequences: true)
        guard fields.count >= 2, let version = Self.version(fields[0]), fields[1].utf8.count == 3, let code = Int(fields[1]) else {
            throw Failure.malformed("a status line of \(String(statusLine.prefix(64)).debugDescription)")
        }
        var headers = HTTPHeaders()
        for line in lines {
            guard let colon = line.firstIndex(of: ":"), colon != line.startIndex else {
                throw Failure.malformed("a header line of \(String(line.prefix(64)).debugDescription)")
            }
            headers.add(name: String(line[..<colon]), value: Self.trimmed(line[line.index(after: colon)...]))
        }
        // An interim answer (100 Continue): the real one follows.
        if (100..<200).contains(code) { return try head() }
        let head = HTTPResponseHead(version: version, status: HTTPResponseStatus(statusCode: code), headers: headers)
        keepAlive = head.isKeepAlive
        if code == 204 || code == 304 {
            state = .ending
        } else if headers[canonicalForm: "transfer-encoding"].contains(where: { $0.lowercased() == "chunked" }) {
            state = .chunkSize
        } else if let value = headers.first(name: "content-length") {
            guard let length = Int(value), length >= 0 else { throw Failure.malformed("a Content-Length of \(value.debugDescription)") }
            state = length == 0 ? .ending : .fixed(remaining: length)
        } else {
            state = .untilClose
            keepAlive = false
        }
        return .head(head)
    }

    /// Up to `remaining` bytes of a body of known length, the state going on to `more` with what is
    /// left, or to `done` once nothing is; nil when no bytes are there yet.
    private mutating func body(_ remaining: Int, more: (Int) -> State, done: State) -> Part? {
        guard let slice = bodySlice(upTo: remaining) else { return nil }
        let left = remaining - slice.readableBytes
        state = left == 0 ? done : more(left)
        return .body(slice)
    }

    /// Up to `limit` bytes of body from what was read, without copying; nil when none are there.
    private mutating func bodySlice(upTo limit: Int) -> ByteBuffer? {
        let count = min(limit, pending.readableBytes)
        guard count > 0 else { return nil }
        return pending.readSlice(length: count)
    }

    /// The next CRLF-terminated line, without its terminator; nil until it is complete.
    private mutating func line() throws -> ByteBuffer? {
        guard let end = offset(of: Self.lineEnd) else {
            guard pending.readableBytes <= Self.maxLineBytes else { throw Failure.malformed("a line longer than \(Self.maxLineBytes) bytes") }
            return nil
        }
        let line = pending.readSlice(length: end)!
        pending.moveReaderIndex(forwardBy: 2)
        return line
    }

    private static let lineEnd: [UInt8] = [13, 10]
    /// The end of a head: an empty line.
    private static let blankLine: [UInt8] = [13, 10, 13, 10]

    /// Where `terminator` first starts in what is unread, from its reader index; nil when it is not there yet.
    private func offset(of terminator: [UInt8]) -> Int? {
        pending.withUnsafeReadableBytes { bytes -> Int? in
            guard bytes.count >= terminator.count else { return nil }
            return (0...(bytes.count - terminator.count)).first { start in
                terminator.indices.allSatisfy { bytes[start + $0] == terminator[$0] }
            }
        }
    }

    /// A chunk-size line's size: hex digits, with any extension after `;` ignored.
    private static func chunkSize(_ line: ByteBuffer) throws -> Int {
        let size = line.withUnsafeReadableBytes { bytes -> Int? in
            var size = 0
            var digits = 0
            var trailingSpace = false
            for byte in bytes {
                let value: Int
                switch byte {
                case UInt8(ascii: "0")...UInt8(ascii: "9"): value = Int(byte - UInt8(ascii: "0"))
                case UInt8(ascii: "a")...UInt8(ascii: "f"): value = Int(byte - UInt8(ascii: "a")) + 10
                case UInt8(ascii: "A")...UInt8(ascii: "F"): value = Int(byte - UInt8(ascii: "A")) + 10
                case UInt8(ascii: " "), UInt8(ascii: "\t"):
                    trailingSpace = digits > 0
                    continue
                case UInt8(ascii: ";"): return digits > 0 ? size : nil
                default: return nil
                }
                // Spaces may follow the digits (before an extension), not part them.
                guard !trailingSpace else { return nil }
                digits += 1
                guard digits <= 15 else { return nil }
                size = size << 4 | value
            }
            return digits > 0 ? size : nil
        }
        guard let size else { throw Failure.malformed("a chunk size of \(String(buffer: line).prefix(32).debugDescription)") }
        return size
    }

    private static func trimmed(_ text: Substring) -> String {
        var view = text
        while view.first == " " || view.first == "\t" { view = view.dropFirst() }
        while view.last == " " || view.last == "\t" { view = view.dropLast() }
        return String(view)
    }

    private static func version(_ text: Substring) -> HTTPVersion? {
        switch text {
        case "HTTP/1.1": .http1_1
        case "HTTP/1.0": .http1_0
        default: nil
        }
    }
}
