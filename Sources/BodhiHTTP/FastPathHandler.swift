import BodhiEngine
import HTTPTypes
import HummingbirdCore
import NIOCore
import NIOHTTPTypes

/// A route that serves some requests without the router (Bodhi's: `FastInferenceRoute`): it
/// picks the request heads it may take, takes a whole request when nothing else would decide it,
/// and writes the response itself, through a `ChannelResponseWriter`.
public protocol FastPathRoute: Sendable {
    /// A request head the route may take, while its body comes in.
    associatedtype Candidate: Sendable
    /// A whole request the route has taken.
    associatedtype Admitted: Sendable
    /// What the route keeps per connection.
    associatedtype ConnectionState

    /// Bodies larger than this go to the router (which answers the 413).
    var maxRequestBodyBytes: Int { get }
    func makeConnectionState() -> ConnectionState
    /// The candidate a request head makes; nil for the router.
    func candidate(_ head: HTTPRequest) -> Candidate?
    func head(of candidate: Candidate) -> HTTPRequest
    /// The request taken, or nil for the router (with nothing done).
    func admit(_ candidate: Candidate, body: ByteBuffer, clientAddress: String, state: inout ConnectionState) -> Admitted?
    /// Serves a taken request; `whenSent` once its response is out.
    func serve(_ request: Admitted, connection: ClientConnection, to writer: ChannelResponseWriter, whenSent: @escaping @Sendable () -> Void)
}

/// Sits between Hummingbird's connection state handler and its channel-to-task bridge, and hands
/// the requests its route takes to it instead of to the router: their parts stop here
/// and their responses are written from here. Requests go one at a time, as HTTP/1.1 wants them
/// answered: one is taken only while none handed on is still being answered, and parts of
/// requests pipelined behind a taken one wait until its response is out.
final class FastPathHandler<Route: FastPathRoute>: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    private enum Phase {
        case idle
        /// A request the route may take, while its body comes in.
        case collecting(Route.Candidate, ByteBuffer)
        /// A request for the router, until its end has been handed on.
        case handingOn
        /// A request taken, until its response is written.
        case serving
    }

    private let route: Route
    private var phase = Phase.idle
    /// Requests handed on whose responses have not ended yet.
    private var handedOn = 0
    /// What came in while a taken request was served (a pipelining client), in order.
    private var waiting = CircularBuffer<HTTPRequestPart>()
    private var clientAddress = "unknown"
    private var state: Route.ConnectionState

    init(route: Route) {
        self.route = route
        state = route.makeConnectionState()
    }

    /// Where a response's chunks can be written to the socket directly (`SocketEnd`).
    private var socketEnd: ChannelHandlerContext?

    func handlerAdded(context: ChannelHandlerContext) {
        clientAddress = context.channel.remoteAddress?.ipAddress ?? "unknown"
        socketEnd = try? context.pipeline.syncOperations.context(handlerType: SocketEnd.self)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        take(unwrapInboundIn(data), context: context)
    }

    /// Stops reading while the requests waiting behind a taken one hold this much, until its
    /// response is out: a client cannot make Bodhi buffer without bound by pipelining.
    static var maxWaitingBytes: Int { 1 << 20 }
    private var waitingBytes = 0
    private var readHeld = false

    func read(context: ChannelHandlerContext) {
        if case .serving = phase, waitingBytes >= Self.maxWaitingBytes {
            readHeld = true
            return
        }
        context.read()
    }

    private func take(_ part: HTTPRequestPart, context: ChannelHandlerContext) {
        switch phase {
        case .serving:
            waiting.append(part)
            if case .body(let chunk) = part { waitingBytes += chunk.readableBytes } else { waitingBytes += 1024 }
        case .handingOn:
            if case .end = part { phase = .idle }
            forward(part, context: context)
        case .collecting(let candidate, var body):
            switch part {
            case .head:
                // Cannot follow a head without an end; let the router's side deal with it.
                handOn(route.head(of: candidate), body, context: context)
                take(part, context: context)
            case .body(var chunk):
                guard body.readableBytes + chunk.readableBytes <= route.maxRequestBodyBytes else {
                    // The router answers the 413, once it has read this far.
                    handOn(route.head(of: candidate), body, context: context)
                    take(part, context: context)
                    return
                }
                phase = .idle  // so that `body` is the buffer's only owner while it grows
                body.writeBuffer(&chunk)
                phase = .collecting(candidate, body)
            case .end:
                guard let admitted = route.admit(candidate, body: body, clientAddress: clientAddress, state: &state) else {
                    handOn(route.head(of: candidate), body, context: context)
                    take(part, context: context)
                    return
                }
                serve(admitted, context: context)
            }
        case .idle:
            if case .head(let head) = part, handedOn == 0, let candidate = route.candidate(head) {
                phase = .collecting(candidate, ByteBuffer())
                return
            }
            if case .head = part {
                handedOn += 1
                phase = .handingOn
            }
            forward(part, context: context)
        }
    }

    /// Gives a request this handler held back to the router, as it came (less the end, which follows).
    private func handOn(_ head: HTTPRequest, _ body: ByteBuffer, context: ChannelHandlerContext) {
        handedOn += 1
        phase = .handingOn
        forward(.head(head), context: context)
        if body.readableBytes > 0 { forward(.body(body), context: context) }
    }

    /// Whether parts went on to the router since the last read completed: only then does the
    /// router's side hear that a read completed (each such event cost it a pass over its buffer).
    private var forwardedSinceReadComplete = false

    private func forward(_ part: HTTPRequestPart, context: ChannelHandlerContext) {
        forwardedSinceReadComplete = true
        context.fireChannelRead(wrapInboundOut(part))
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        guard forwardedSinceReadComplete else { return }
        forwardedSinceReadComplete = false
        context.fireChannelReadComplete()
    }

    private func serve(_ request: Route.Admitted, context: ChannelHandlerContext) {
        phase = .serving
        let route = route
        let connection = ClientConnection.of(context.channel)
        let writer = ChannelResponseWriter(context: context, socketEnd: socketEnd)
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        route.serve(request, connection: connection, to: writer) {
            writer.onLoop { context in handler.value.served(context: context) }
        }
    }

    /// The taken request's response is out: reads go on with what waited meanwhile.
    private func served(context: ChannelHandlerContext) {
        phase = .idle
        if !waiting.isEmpty {
            let parts = waiting
            waiting.removeAll()
            waitingBytes = 0
            for part in parts { take(part, context: context) }
            channelReadComplete(context: context)
        }
        if readHeld {
            readHeld = false
            context.read()
        }
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        // Only the router's responses pass here; this handler writes its own from its context.
        if case .end = unwrapOutboundIn(data) { handedOn -= 1 }
        context.write(data, promise: promise)
    }
}

/// Marks the socket's end of a connection's pipeline, first of its handlers: what is written from
/// its context goes to the socket with no handler on the way (`ChannelResponseWriter.writeChunkNow`).
/// It only passes on what it reads (NIO wants every handler to be inbound or outbound; reads are
/// the rarer on a connection that streams).
public final class SocketEnd: ChannelInboundHandler, RemovableChannelHandler {
    public typealias InboundIn = ByteBuffer
    public init() {}
}

/// Writes a response through a channel handler's context from any task, each part on the
/// context's event loop (directly when the task already runs there, as it does with NIO's loops
/// as the concurrency executor).
public struct ChannelResponseWriter: Sendable {
    private let context: NIOLoopBound<ChannelHandlerContext>
    private let socketEnd: NIOLoopBound<ChannelHandlerContext?>
    public let eventLoop: any EventLoop

    init(context: ChannelHandlerContext, socketEnd: ChannelHandlerContext?) {
        self.context = NIOLoopBound(context, eventLoop: context.eventLoop)
        self.socketEnd = NIOLoopBound(socketEnd, eventLoop: context.eventLoop)
        eventLoop = context.eventLoop
    }

    /// Runs `body` with the context on its event loop.
    public func onLoop(_ body: @escaping @Sendable (ChannelHandlerContext) -> Void) {
        if eventLoop.inEventLoop { body(context.value) } else { eventLoop.execute { [context] in body(context.value) } }
    }

    /// The response's head and body. A body of known length goes out with one flush at its end;
    /// any other (a stream of events) is flushed write by write, so that each event reaches the
    /// client when it is sent. A response that cannot be finished closes the connection.
    public func send(_ response: Response) async {
        let streams = response.body.contentLength == nil
        do {
            try await write(.head(response.head), flush: streams)
            try await response.body.write(Body(writer: self, flushesEachWrite: streams))
        } catch {
            onLoop { context in context.close(promise: nil) }
        }
    }

    /// Writes a whole response at once, from any thread and without waiting, then runs `then`
    /// on the context's event loop.
    public func sendWhole(_ head: HTTPResponse, _ body: ByteBuffer, then: @escaping @Sendable () -> Void) {
        onLoop { context in
            if context.channel.isActive {
                context.write(NIOAny(HTTPResponsePart.head(head)), promise: nil)
                context.write(NIOAny(HTTPResponsePart.body(body)), promise: nil)
                context.writeAndFlush(NIOAny(HTTPResponsePart.end(nil)), promise: nil)
            }
            then()
        }
    }

    /// Writes one part now, on the context's event loop, where this must run: nil once it is on its
    /// way, or its completion when the channel is backed up (a slow reader) and it is worth waiting
    /// for. Throws once the connection is closed.
    public func writeNow(_ part: HTTPResponsePart, flush: Bool) throws -> EventLoopFuture<Void>? {
        try Self.write(NIOAny(part), flush: flush, on: context.value)
    }

    /// Writes one chunk of a chunked body now, as `writeNow(.body(bytes), flush: true)` does, but
    /// framed here and handed to the socket directly, past the HTTP handlers (which only pass
    /// it on). For a response whose head went out without a length (so chunked, as HTTP/1.1
    /// responses of unknown length are); its end goes through `writeNow(.end)` as ever.
    ///
    /// Why: a stream's events took as long through those handlers as through the socket.
    public func writeChunkNow(_ bytes: ByteBuffer) throws -> EventLoopFuture<Void>? {
        guard let socketEnd = socketEnd.value else { return try writeNow(.body(bytes), flush: true) }
        guard socketEnd.channel.isActive else { throw ChannelError.ioOnClosedChannel }
        guard bytes.readableBytes > 0 else { return nil }  // an empty chunk would end the body
        var chunk = socketEnd.channel.allocator.buffer(capacity: bytes.readableBytes + 20)
        Self.writeHex(bytes.readableBytes, to: &chunk)
        chunk.writeStaticString("\r\n")
        var bytes = bytes
        chunk.writeBuffer(&bytes)
        chunk.writeStaticString("\r\n")
        return try Self.write(NIOAny(chunk), flush: true, on: socketEnd)
    }

    private static func writeHex(_ value: Int, to buffer: inout ByteBuffer) {
        let digits: StaticString = "0123456789abcdef"
        var shift = (Int.bitWidth - value.leadingZeroBitCount + 3) / 4 * 4 - 4
        if shift < 0 { shift = 0 }
        while shift >= 0 {
            buffer.writeInteger(digits.utf8Start[(value >> shift) & 0xF])
            shift -= 4
        }
    }

    /// Writes one part. It waits only while the channel is not writable (a slow reader), as
    /// Hummingbird's writer does, and fails once the connection is closed.
    func write(_ part: HTTPResponsePart, flush: Bool) async throws {
        if eventLoop.inEventLoop {
            try await Self.write(NIOAny(part), flush: flush, on: context.value)?.get()
        } else {
            // Not on the connection's loop (there are several): hop there.
            try await eventLoop.flatSubmit { [context] in
                let context = context.value
                do {
                    return try Self.write(NIOAny(part), flush: flush, on: context) ?? context.eventLoop.makeSucceededVoidFuture()
                } catch {
                    return context.eventLoop.makeFailedFuture(error)
                }
            }.get()
        }
    }

    /// Writes `data` from `context`: the write's completion when it must be waited for (the channel
    /// is backed up), nil otherwise; throws once the connection is closed.
    private static func write(_ data: NIOAny, flush: Bool, on context: ChannelHandlerContext) throws -> EventLoopFuture<Void>? {
        guard context.channel.isActive else { throw ChannelError.ioOnClosedChannel }
        let promise: EventLoopPromise<Void>? = context.channel.isWritable ? nil : context.eventLoop.makePromise()
        if flush { context.writeAndFlush(data, promise: promise) } else { context.write(data, promise: promise) }
        return promise?.futureResult
    }

    private struct Body: ResponseBodyWriter {
        let writer: ChannelResponseWriter
        let flushesEachWrite: Bool

        mutating func write(_ buffer: ByteBuffer) async throws {
            try await writer.write(.body(buffer), flush: flushesEachWrite)
        }

        consuming func finish(_ trailingHeaders: HTTPFields?) async throws {
            try await writer.write(.end(trailingHeaders), flush: true)
        }
    }
}
