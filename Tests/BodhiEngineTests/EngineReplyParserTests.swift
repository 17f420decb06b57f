@testable import BodhiEngine
import NIOCore
import NIOHTTP1
import Testing

@Suite struct EngineReplyParserTests {
    /// What the parser made of `bytes`, fed in pieces of `piece` bytes, the body joined.
    struct Reading: Equatable {
        var statuses: [Int] = []
        var contentTypes: [String?] = []
        var bodies: [String] = []
        var ends: [Bool] = []
    }

    static func read(_ text: String, piece: Int = .max, closeAtEnd: Bool = false) throws -> Reading {
        var parser = EngineReplyParser()
        var reading = Reading()
        var body = ""
        func take(_ part: EngineReplyParser.Part) {
            switch part {
            case .head(let head):
                reading.statuses.append(Int(head.status.code))
                reading.contentTypes.append(head.headers.first(name: "Content-Type"))
                body = ""
            case .body(let bytes): body += String(buffer: bytes)
            case .end(let keepAlive):
                reading.bodies.append(body)
                reading.ends.append(keepAlive)
            }
        }
        let bytes = Array(text.utf8)
        var start = 0
        while start < bytes.count {
            let end = min(bytes.count, start + piece)
            parser.append(ByteBuffer(bytes: bytes[start..<end]))
            while let part = try parser.next() { take(part) }
            start = end
        }
        if closeAtEnd, let part = try parser.closed() { take(part) }
        return reading
    }

    static let stream = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\nKeep-Alive: timeout=5\r\n\r\n"
        + "f\r\ndata: {\"a\":1}\n\n\r\n" + "10;ext=1\r\ndata: {\"b\":22}\n\n\r\n" + "0\r\nTrailer: x\r\n\r\n"

    @Test func aChunkedStreamReadsAlikeHoweverItsBytesArrive() throws {
        let whole = try Self.read(Self.stream)
        #expect(whole == Reading(statuses: [200], contentTypes: ["text/event-stream"], bodies: ["data: {\"a\":1}\n\ndata: {\"b\":22}\n\n"], ends: [true]))
        for piece in 1...Self.stream.utf8.count {
            #expect(try Self.read(Self.stream, piece: piece) == whole, "in pieces of \(piece)")
        }
    }

    @Test func repliesOneAfterAnotherOnAConnectionEachEndWithTheirBody() throws {
        let two = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 7\r\n\r\n{\"n\":1}"
            + "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
            + "HTTP/1.1 204 No Content\r\n\r\n"
        for piece in [1, 3, 1000] {
            #expect(try Self.read(two, piece: piece) == Reading(
                statuses: [200, 404, 204], contentTypes: ["application/json", nil, nil], bodies: ["{\"n\":1}", "", ""], ends: [true, true, true]))
        }
    }

    @Test func anInterimAnswerIsSkipped() throws {
        let reading = try Self.read("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        #expect(reading == Reading(statuses: [200], contentTypes: [nil], bodies: ["ok"], ends: [true]))
    }

    @Test(arguments: [
        ("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", false),
        ("HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", false),
        ("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok", true),
    ])
    func whetherTheConnectionCarriesAnotherReplyIsAsItsHeadSays(_ reply: String, _ keepAlive: Bool) throws {
        #expect(try Self.read(reply).ends == [keepAlive])
    }

    @Test func aReplyWithoutALengthEndsWhenTheConnectionCloses() throws {
        let reply = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end"
        #expect(try Self.read(reply, piece: 4).ends.isEmpty)
        #expect(try Self.read(reply, piece: 4, closeAtEnd: true) == Reading(
            statuses: [200], contentTypes: ["text/plain"], bodies: ["until the end"], ends: [false]))
    }

    @Test func aConnectionClosedMidReplySaysWhetherTheReplyHadBegun() throws {
        #expect(throws: EngineReplyParser.Failure.closedEarly(replyStarted: true)) {
            try Self.read("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", closeAtEnd: true)
        }
        #expect(throws: EngineReplyParser.Failure.closedEarly(replyStarted: true)) {
            try Self.read(String(Self.stream.prefix(120)), closeAtEnd: true)
        }
        #expect(throws: EngineReplyParser.Failure.closedEarly(replyStarted: false)) {
            try Self.read("HTTP/1.1 200 O", closeAtEnd: true)
        }
        // Nothing at all: a connection closed between replies.
        #expect(try Self.read("", closeAtEnd: true) == Reading())
    }

    @Test(arguments: [
        "SPDY/3 200 OK\r\n\r\n",
        "HTTP/1.1 2000 OK\r\n\r\n",
        "HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1 0\r\n",
    ])
    func aReplyThatIsNotHTTPIsRefused(_ reply: String) {
        #expect(throws: EngineReplyParser.Failure.self) { try Self.read(reply) }
    }

    @Test func aHeadWithoutEndIsRefusedPastItsLimit() {
        let endless = "HTTP/1.1 200 OK\r\n" + String(repeating: "X-Filler: 0123456789\r\n", count: EngineReplyParser.maxHeadBytes / 20)
        #expect(throws: EngineReplyParser.Failure.self) { try Self.read(endless, piece: 4096) }
    }
}
