@testable import BodhiEngine
import NIOCore
import NIOPosix
import Synchronization
import Testing

/// A loopback HTTP/1.1 server whose answer to each request (numbered from 1 across connections)
/// a test chooses: a reply, a hang-up without one, or a stream that never ends.
final class ScriptedEngine: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    enum Answer: Sendable {
        case reply(String)
        /// A reply, then a close: an engine's keep-alive timeout firing after it.
        case replyThenHangUp(String)
        case hangUp
        case noAnswer
        case endlessStream(firstChunk: String)
        /// A reply cut off: fewer bytes than its Content-Length says, then a close.
        case truncated(String)
        /// The start of a head, then a close.
        case headCutOff
        /// A chunked stream: its head and first chunk at once, each other chunk and then its end
        /// when the test calls `step()`.
        case streamInSteps([String])
    }

    /// The stream in steps under way: where to write, and what is left to write.
    private let steps = Mutex<(context: NIOLoopBound<ChannelHandlerContext>, left: [String], ended: Bool)?>(nil)

    /// Sends a stream in steps its next chunk, or its end once no chunk is left.
    func step() {
        guard let (context, chunk) = steps.withLock({ steps -> (NIOLoopBound<ChannelHandlerContext>, String?)? in
            guard var current = steps, !current.ended else { return nil }
            let chunk = current.left.isEmpty ? nil : current.left.removeFirst()
            current.ended = chunk == nil
            steps = current
            return (current.context, chunk)
        }) else { return }
        context.eventLoop.execute {
            let bytes = chunk.map { String($0.utf8.count, radix: 16) + "\r\n" + $0 + "\r\n" } ?? "0\r\n\r\n"
            context.value.writeAndFlush(NIOAny(ByteBuffer(string: bytes)), promise: nil)
        }
    }

    private struct Counts {
        var requests = 0
        var connections = 0
        var closed = 0
    }
    private let counts = Mutex(Counts())
    private let script: @Sendable (Int) -> Answer

    init(_ script: @escaping @Sendable (Int) -> Answer) { self.script = script }

    var requests: Int { counts.withLock { $0.requests } }
    var connections: Int { counts.withLock { $0.connections } }
    var closedConnections: Int { counts.withLock { $0.closed } }

    func channelActive(context: ChannelHandlerContext) {
        counts.withLock { $0.connections += 1 }
    }

    func channelInactive(context: ChannelHandlerContext) {
        counts.withLock { $0.closed += 1 }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        // Each test request is small enough to arrive in one read.
        guard String(buffer: unwrapInboundIn(data)).contains("\r\n\r\n") else { return }
        let number = counts.withLock { counts in
            counts.requests += 1
            return counts.requests
        }
        switch script(number) {
        case .reply(let body):
            let reply = "HTTP/1.1 200 OK\r\nContent-Length: \(body.utf8.count)\r\nContent-Type: application/json\r\n\r\n\(body)"
            context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: reply)), promise: nil)
        case .replyThenHangUp(let body):
            let reply = "HTTP/1.1 200 OK\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)"
            context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: reply)), promise: nil)
            context.close(promise: nil)
        case .hangUp:
            context.close(promise: nil)
        case .noAnswer:
            break
        case .truncated(let body):
            let reply = "HTTP/1.1 200 OK\r\nContent-Length: \(body.utf8.count + 100)\r\n\r\n\(body)"
            context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: reply)), promise: nil)
            context.close(promise: nil)
        case .headCutOff:
            context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: "HTTP/1.1 200 O")), promise: nil)
            context.close(promise: nil)
        case .streamInSteps(let chunks):
            let head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/event-stream\r\n\r\n"
            let first = String(chunks[0].utf8.count, radix: 16) + "\r\n" + chunks[0] + "\r\n"
            steps.withLock { $0 = (NIOLoopBound(context, eventLoop: context.eventLoop), Array(chunks.dropFirst()), false) }
            context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: head + first)), promise: nil)
        case .endlessStream(let chunk):
            let head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/event-stream\r\n\r\n"
            let first = String(chunk.utf8.count, radix: 16) + "\r\n" + chunk + "\r\n"
            context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: head + first)), promise: nil)
        }
    }

    /// Serves on a free loopback port until `body` returns.
    @discardableResult
    func serve<T>(_ body: (EngineEndpoint) async throws -> T) async throws -> T {
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { channel in channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(self) } }
            .bind(host: "127.0.0.1", port: 0).get()
        defer { server.close(promise: nil) }
        let port = try #require(server.localAddress?.port)
        return try await body(EngineEndpoint(host: "127.0.0.1", port: port, apiKey: "key", pid: 0))
    }
}

/// Waits up to two seconds for `condition`, and fails the test if it never holds.
func waitUntil(_ condition: () -> Bool, sourceLocation: SourceLocation = #_sourceLocation) async throws {
    for _ in 0..<200 where !condition() { try await Task.sleep(for: .milliseconds(10)) }
    #expect(condition(), sourceLocation: sourceLocation)
}

@Suite(.timeLimit(.minutes(2))) struct EngineClientTests {
    let body = ByteBuffer(string: #"{"model":"m"}"#)

    /// A reply streams in by default; `wholeUpTo` asks for it whole, in one piece.
    static let deliveries: [Int?] = [nil, 4096]

    @Test(arguments: deliveries)
    func repliesComeWholeAndConnectionsAreKeptAlive(wholeUpTo: Int?) async throws {
        let engine = ScriptedEngine { .reply(#"{"n":\#($0)}"#) }
        let client = EngineClient()
        defer { client.shutdown() }
        try await engine.serve { endpoint in
            for number in 1...3 {
                let reply = try await client.post("/v1/chat/completions", to: endpoint, body: body, wholeUpTo: wholeUpTo)
                #expect(reply.status == 200)
                #expect(reply.contentType == "application/json")
                #expect(String(buffer: try await reply.body.collect(upTo: 1024)) == #"{"n":\#(number)}"#)
            }
        }
        #expect(engine.requests == 3)
        #expect(engine.connections == 1)
        #expect(client.idleConnections == 1)
    }

    /// Runs `body` on `loop`, where `postNow` must be called.
    static func onLoop<T: Sendable>(_ loop: any EventLoop, _ body: @escaping @Sendable () -> T) async throws -> T {
        try await loop.submit(body).get()
    }

    /// A client connection on one of the group's loops, open while `body` runs.
    static func withClient(_ body: (any EventLoop, ClientConnection) async throws -> Void) async throws {
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        let hangUp = loop.makePromise(of: Void.self)
        defer { hangUp.succeed() }
        try await body(loop, ClientConnection(closed: hangUp.futureResult))
    }

    @Test func postNowSendsOnAConnectionKeptOnTheClientsLoopAndAnswersWhereTheReplyIsRead() async throws {
        let engine = ScriptedEngine { .reply(#"{"n":\#($0)}"#) }
        let client = EngineClient()
        defer { client.shutdown() }
        try await Self.withClient { loop, connection in try await engine.serve { endpoint in
            // Nothing kept yet on the client's loop: nothing is sent.
            let sentWithNoneKept = try await Self.onLoop(loop) {
                client.postNow("/v1/completions", to: endpoint, body: body, client: connection, wholeUpTo: 1024,
                               onWhole: { _, _, _ in }, onFailure: { _ in })
            }
            #expect(!sentWithNoneKept)
            // Not on the client's loop: nothing is sent either.
            let sentOffLoop = client.postNow(
                "/v1/completions", to: endpoint, body: body, client: connection, wholeUpTo: 1024, onWhole: { _, _, _ in }, onFailure: { _ in })
            #expect(!sentOffLoop)
            _ = try await client.post("/v1/completions", to: endpoint, body: body, client: connection, wholeUpTo: 1024)
            let answer = loop.makePromise(of: String.self)
            let sent = try await Self.onLoop(loop) {
                client.postNow(
                    "/v1/completions", to: endpoint, body: body, client: connection, wholeUpTo: 1024,
                    onWhole: { status, contentType, body in
                        answer.succeed("\(status) \(contentType ?? "-") \(String(buffer: body)) \(loop.inEventLoop)")
                    },
                    onFailure: { answer.fail($0) })
            }
            #expect(sent)
            #expect(try await answer.futureResult.get() == #"200 application/json {"n":2} true"#)
        } }
        #expect(engine.connections == 1)
        try await waitUntil { client.idleConnections == 1 }
    }

    @Test func postNowTellsOfAnEngineThatClosedBeforeReplying() async throws {
        let engine = ScriptedEngine { $0 == 2 ? .hangUp : .reply("ok") }
        let client = EngineClient()
        defer { client.shutdown() }
        try await Self.withClient { loop, connection in try await engine.serve { endpoint in
            _ = try await client.post("/v1/completions", to: endpoint, body: body, client: connection, wholeUpTo: 1024)
            let failure = loop.makePromise(of: Void.self)
            let sent = try await Self.onLoop(loop) {
                client.postNow("/v1/completions", to: endpoint, body: body, client: connection, wholeUpTo: 1024,
                               onWhole: { _, _, _ in failure.succeed() }, onFailure: { failure.fail($0) })
            }
            #expect(sent)
            await #expect(throws: EngineClientError.connectionClosed(replyStarted: false)) { try await failure.futureResult.get() }
        } }
    }

    @Test func aConnectionTheEngineClosesLeavesThePool() async throws {
        let engine = ScriptedEngine { _ in .replyThenHangUp("ok") }
        let client = EngineClient()
        defer { client.shutdown() }
        try await engine.serve { endpoint in
            let reply = try await client.post("/v1/completions", to: endpoint, body: body)
            #expect(String(buffer: try await reply.body.collect(upTo: 1024)) == "ok")
            try await waitUntil { client.idleConnections == 0 }
        }
    }

    @Test func aRequestMetByAClosingKeptAliveConnectionIsSentOnceMore() async throws {
        // The engine's keep-alive timeout fires just as the second request arrives.
        let engine = ScriptedEngine { $0 == 2 ? .hangUp : .reply("ok") }
        let client = EngineClient()
        defer { client.shutdown() }
        try await engine.serve { endpoint in
            _ = try await client.post("/v1/completions", to: endpoint, body: body).body.collect(upTo: 1024)
            let reply = try await client.post("/v1/completions", to: endpoint, body: body)
            #expect(String(buffer: try await reply.body.collect(upTo: 1024)) == "ok")
        }
        #expect(engine.requests == 3)
        #expect(engine.connections == 2)
    }

    @Test func anEngineThatHangsUpOnAFreshConnectionIsAnErrorNotARetry() async throws {
        let engine = ScriptedEngine { _ in .hangUp }
        let client = EngineClient()
        defer { client.shutdown() }
        try await engine.serve { endpoint in
            await #expect(throws: EngineClientError.connectionClosed(replyStarted: false)) {
                try await client.post("/v1/completions", to: endpoint, body: body)
            }
        }
        #expect(engine.requests == 1)
    }

    @Test func aStoppedEngineRefusesTheConnection() async throws {
        let client = EngineClient()
        defer { client.shutdown() }
        // Bind and close a port, so that nothing listens on it.
        let probe = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton).bind(host: "127.0.0.1", port: 0).get()
        let port = try #require(probe.localAddress?.port)
        try await probe.close()
        await #expect(throws: (any Error).self) {
            try await client.post("/v1/completions", to: EngineEndpoint(host: "127.0.0.1", port: port, apiKey: "k", pid: 0), body: body)
        }
    }

    @Test func givingUpAStreamClosesItsConnectionSoTheEngineStops() async throws {
        let engine = ScriptedEngine { $0 == 1 ? .endlessStream(firstChunk: "data: {}\n\n") : .reply("ok") }
        let client = EngineClient()
        defer { client.shutdown() }
        try await engine.serve { endpoint in
            let reply = try await client.post("/v1/chat/completions", to: endpoint, body: body)
            #expect(reply.contentType == "text/event-stream")
            var chunks = reply.body.makeAsyncIterator()
            let first = try await chunks.next()
            #expect(first.map { String(buffer: $0) } == "data: {}\n\n")
            reply.body.cancel()
            // The engine sees the hang-up, and the next request gets a connection of its own.
            try await waitUntil { engine.closedConnections == 1 }
            let next = try await client.post("/v1/chat/completions", to: endpoint, body: body)
            #expect(String(buffer: try await next.body.collect(upTo: 1024)) == "ok")
        }
        #expect(engine.connections == 2)
    }

    /// What a receiver of a pushed reply got, in order.
    final class Received: Sendable {
        enum Part: Equatable { case chunk(String), end(failed: Bool), offLoop }
        private let parts = Mutex<[Part]>([])
        var all: [Part] { parts.withLock { $0 } }
        func add(_ part: Part) { parts.withLock { $0.append(part) } }
    }

    /// A receiver on `loop` that records what it gets there, and has the engine wait for `holds`
    /// (by chunk) before it reads more.
    static func recorder(_ received: Received, on loop: any EventLoop, holds: [String: EventLoopFuture<Void>] = [:]) -> ReplyReceiver {
        { part in
            if !loop.inEventLoop { received.add(.offLoop) }
            switch part {
            case .chunk(let chunk):
                received.add(.chunk(String(buffer: chunk)))
                return holds[String(buffer: chunk)]
            case .end(let error):
                received.add(.end(failed: error != nil))
                return nil
            }
        }
    }

    @Test func aStreamPushedToAReceiverGetsEveryChunkAndItsEndOnItsLoopAndKeepsTheConnection() async throws {
        let engine = ScriptedEngine { $0 == 1 ? .streamInSteps(["a", "b", "c"]) : .reply("ok") }
        let client = EngineClient()
        defer { client.shutdown() }
        let received = Received()
        try await Self.withClient { loop, connection in try await engine.serve { endpoint in
            let reply = try await client.post("/v1/chat/completions", to: endpoint, body: body, client: connection)
            #expect(reply.body.pushLoop === loop)
            // Chunks that came before the receiver are kept for it (the first came with the head).
            #expect(try await loop.submit { reply.body.push(to: Self.recorder(received, on: loop)) }.get())
            engine.step()
            engine.step()
            engine.step()
            try await waitUntil { received.all.count == 4 }
            #expect(received.all == [.chunk("a"), .chunk("b"), .chunk("c"), .end(failed: false)])
            // The connection went back to the pool.
            let next = try await client.post("/v1/chat/completions", to: endpoint, body: body, client: connection)
            #expect(String(buffer: try await next.body.collect(upTo: 1024)) == "ok")
        } }
        #expect(engine.connections == 1)
    }

    @Test func aReceiverWaitingForItsClientHoldsTheEnginesReads() async throws {
        let engine = ScriptedEngine { _ in .streamInSteps(["a", "b", "c"]) }
        let client = EngineClient()
        defer { client.shutdown() }
        let received = Received()
        try await Self.withClient { loop, connection in try await engine.serve { endpoint in
            let reply = try await client.post("/v1/chat/completions", to: endpoint, body: body, client: connection)
            let backedUp = loop.makePromise(of: Void.self)
            let holds = ["b": backedUp.futureResult]
            #expect(try await loop.submit { reply.body.push(to: Self.recorder(received, on: loop, holds: holds)) }.get())
            engine.step()
            try await waitUntil { received.all.count == 2 }
            // While "b" waits, "c" stays unread.
            engine.step()
            try await Task.sleep(for: .milliseconds(300))
            #expect(received.all == [.chunk("a"), .chunk("b")])
            backedUp.succeed()
            try await waitUntil { received.all.count == 3 }
            engine.step()
            try await waitUntil { received.all.count == 4 }
            #expect(received.all == [.chunk("a"), .chunk("b"), .chunk("c"), .end(failed: false)])
        } }
    }

    @Test func aPushedStreamGivenUpEndsAsAFailureAndClosesItsConnection() async throws {
        let engine = ScriptedEngine { $0 == 1 ? .endlessStream(firstChunk: "data: {}\n\n") : .reply("ok") }
        let client = EngineClient()
        defer { client.shutdown() }
        let received = Received()
        try await Self.withClient { loop, connection in try await engine.serve { endpoint in
            let reply = try await client.post("/v1/chat/completions", to: endpoint, body: body, client: connection)
            #expect(try await loop.submit { reply.body.push(to: Self.recorder(received, on: loop)) }.get())
            reply.body.cancel()
            try await waitUntil { received.all.count == 2 }
            #expect(received.all == [.chunk("data: {}\n\n"), .end(failed: true)])
            try await waitUntil { engine.closedConnections == 1 }
        } }
    }

    @Test func aKeptConnectionWhoseReplyIsCutOffInItsHeadIsAnErrorNotARetry() async throws {
        let engine = ScriptedEngine { $0 == 1 ? .reply("ok") : .headCutOff }
        let client = EngineClient()
        defer { client.shutdown() }
        try await engine.serve { endpoint in
            _ = try await client.post("/v1/chat/completions", to: endpoint, body: body, wholeUpTo: 1024)
            do {
                _ = try await client.post("/v1/chat/completions", to: endpoint, body: body, wholeUpTo: 1024)
                Issue.record("a reply cut off in its head was taken")
            } catch {
                #expect(error as? EngineReplyParser.Failure == .closedEarly(replyStarted: false))
            }
        }
        // The engine had read it: it is not sent a second time.
        #expect(engine.requests == 2)
    }

    @Test func aReaderThatComesAfterAFailedEndHearsTheFailure() async throws {
        let engine = ScriptedEngine { _ in .endlessStream(firstChunk: "data: {}\n\n") }
        let client = EngineClient()
        defer { client.shutdown() }
        let received = Received()
        try await Self.withClient { loop, connection in try await engine.serve { endpoint in
            let reply = try await client.post("/v1/chat/completions", to: endpoint, body: body, client: connection)
            reply.body.cancel()
            try await waitUntil { engine.closedConnections == 1 }
            // The end came before any reader: the first hears the chunk and the failure.
            #expect(try await loop.submit { reply.body.push(to: Self.recorder(received, on: loop)) }.get())
            #expect(received.all == [.chunk("data: {}\n\n"), .end(failed: true)])
            // A second reader is refused; neither is left waiting.
            #expect(try await loop.submit { reply.body.push(to: Self.recorder(received, on: loop)) }.get())
            #expect(received.all == [.chunk("data: {}\n\n"), .end(failed: true), .end(failed: true)])
        } }
    }

    @Test func aReplyIsPushedOnlyOnItsOwnLoop() async throws {
        let engine = ScriptedEngine { _ in .streamInSteps(["a"]) }
        let client = EngineClient()
        defer { client.shutdown() }
        let received = Received()
        try await Self.withClient { loop, connection in try await engine.serve { endpoint in
            let reply = try await client.post("/v1/chat/completions", to: endpoint, body: body, client: connection)
            let other = try #require(MultiThreadedEventLoopGroup.singleton.makeIterator().first { $0 !== loop }, "a second event loop")
            #expect(try await other.submit { reply.body.push(to: Self.recorder(received, on: other)) }.get() == false)
            // Not on the loop at all: refused too, and the reply is read as a sequence instead.
            #expect(reply.body.push(to: Self.recorder(received, on: loop)) == false)
            engine.step()
            #expect(String(buffer: try await reply.body.collect(upTo: 1024)) == "a")
            #expect(received.all.isEmpty)
        } }
    }

    enum Departure: CaseIterable, Sendable {
        /// The caller's task is cancelled.
        case cancelled
        /// The client connection the request came on closes.
        case clientHungUp
    }

    @Test(arguments: Departure.allCases)
    func aCallerThatGoesAwayBeforeTheReplyStopsTheEngine(_ departure: Departure) async throws {
        let engine = ScriptedEngine { _ in .noAnswer }
        let client = EngineClient()
        defer { client.shutdown() }
        let hangUp = MultiThreadedEventLoopGroup.singleton.next().makePromise(of: Void.self)
        defer { hangUp.succeed() }
        try await engine.serve { endpoint in
            let waiting = Task {
                try await client.post("/v1/chat/completions", to: endpoint, body: body, client: ClientConnection(closed: hangUp.futureResult))
            }
            try await waitUntil { engine.requests == 1 }
            switch departure {
            case .cancelled:
                waiting.cancel()
                await #expect(throws: CancellationError.self) { try await waiting.value }
            case .clientHungUp:
                hangUp.succeed()
                await #expect(throws: EngineClientError.abandoned) { try await waiting.value }
            }
            // The connection closes, which is what makes llama-server stop.
            try await waitUntil { engine.closedConnections == 1 }
        }
        // Not sent again on another connection.
        #expect(engine.requests == 1)
    }

    @Test func aClientAlreadyGoneSendsNothing() async throws {
        let engine = ScriptedEngine { _ in .reply("ok") }
        let client = EngineClient()
        defer { client.shutdown() }
        let gone = ClientConnection(closed: MultiThreadedEventLoopGroup.singleton.next().makeSucceededVoidFuture())
        try await engine.serve { endpoint in
            await #expect(throws: EngineClientError.abandoned) {
                try await client.post("/v1/chat/completions", to: endpoint, body: body, client: gone)
            }
            // The connection, which carried nothing, serves the next caller.
            let reply = try await client.post("/v1/chat/completions", to: endpoint, body: body)
            #expect(String(buffer: try await reply.body.collect(upTo: 1024)) == "ok")
        }
        #expect(engine.requests == 1)
        #expect(engine.connections == 1)
    }

    @Test func aReplyBeyondTheLimitIsRefused() async throws {
        let engine = ScriptedEngine { _ in .reply(String(repeating: "x", count: 2000)) }
        let client = EngineClient()
        defer { client.shutdown() }
        try await engine.serve { endpoint in
            let reply = try await client.post("/v1/completions", to: endpoint, body: body)
            await #expect(throws: EngineClientError.replyTooLarge(limit: 1000)) { try await reply.body.collect(upTo: 1000) }
            // Wanted whole, it is refused as it comes in, and its connection is not reused.
            await #expect(throws: EngineClientError.replyTooLarge(limit: 1000)) {
                try await client.post("/v1/completions", to: endpoint, body: body, wholeUpTo: 1000)
            }
            let whole = try await client.post("/v1/completions", to: endpoint, body: body, wholeUpTo: 4000)
            #expect(try await whole.body.collect(upTo: 4000).readableBytes == 2000)
        }
        #expect(engine.connections == 2)
    }

    @Test func aReplyWantedWholeThatBreaksOffIsAnError() async throws {
        let engine = ScriptedEngine { _ in .truncated(#"{"partial":"#) }
        let client = EngineClient()
        defer { client.shutdown() }
        try await engine.serve { endpoint in
            // Begun, so not sent again: the caller hears that the engine broke off (the reply
            // does not parse), rather than waiting for the rest.
            await #expect(throws: (any Error).self) {
                try await client.post("/v1/completions", to: endpoint, body: body, wholeUpTo: 4000)
            }
        }
        #expect(engine.requests == 1)
    }

    @Test func theRequestCarriesTheEnginesKeyAndTheBodyLength() async throws {
        let seen = Mutex("")
        final class Recorder: ChannelInboundHandler, Sendable {
            typealias InboundIn = ByteBuffer
            typealias OutboundOut = ByteBuffer
            let seen: @Sendable (String) -> Void
            init(_ seen: @escaping @Sendable (String) -> Void) { self.seen = seen }
            func channelRead(context: ChannelHandlerContext, data: NIOAny) {
                seen(String(buffer: unwrapInboundIn(data)))
                context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: "HTTP/1.1 204 No Content\r\n\r\n")), promise: nil)
            }
        }
        let recorder = Recorder { text in seen.withLock { $0 += text } }
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { channel in channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(recorder) } }
            .bind(host: "127.0.0.1", port: 0).get()
        defer { server.close(promise: nil) }
        let client = EngineClient()
        defer { client.shutdown() }
        let port = try #require(server.localAddress?.port)
        let reply = try await client.post("/v1/embeddings", to: EngineEndpoint(host: "127.0.0.1", port: port, apiKey: "secret", pid: 0), body: body)
        #expect(reply.status == 204)
        let request = seen.withLock { $0 }
        #expect(request.hasPrefix("POST /v1/embeddings HTTP/1.1\r\n"))
        #expect(request.contains("Authorization: Bearer secret\r\n"))
        #expect(request.contains("Content-Length: 13\r\n"))
        #expect(request.hasSuffix("\r\n\r\n" + #"{"model":"m"}"#))
    }
}
