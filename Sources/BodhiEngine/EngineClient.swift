#if canImport(Glibc)
import Glibc
#endif
import BodhiCore
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

/// An engine's answer: its status line and content type as soon as they arrive, and its body as
/// it streams in.
public struct EngineReply: Sendable {
    public let status: Int
    public let contentType: String?
    public let body: EngineReplyBody
    /// What a refusal's `Retry-After` asked for, in seconds (backends only).
    public var retryAfterSeconds: Int?

    public init(status: Int, contentType: String?, body: EngineReplyBody, retryAfterSeconds: Int? = nil) {
        self.status = status
        self.contentType = contentType
        self.body = body
        self.retryAfterSeconds = retryAfterSeconds
    }
}

/// The body of an engine's answer, in the chunks the engine sent. Giving it up before its end
/// (`cancel()`, or dropping it) closes the connection, which makes llama-server stop generating.
/// A task reads it as an async sequence; a local engine's can also be pushed, without a task, to
/// a receiver on the event loop where it is read (`push`).
public final class EngineReplyBody: AsyncSequence, Sendable {
    public typealias Element = ByteBuffer

    private enum Source: Sendable {
        case chunks(AsyncThrowingStream<ByteBuffer, any Error>)
        /// Read by an engine connection's handler, on the relay's event loop.
        case relayed(NIOLoopBoundBox<ReplyRelay>)
        /// The whole body, when it was asked for whole and so came after the engine's last byte.
        case whole(ByteBuffer)
    }

    private let source: Source
    private let abandon: @Sendable () -> Void

    private init(source: Source, abandon: @escaping @Sendable () -> Void) {
        self.source = source
        self.abandon = abandon
    }

    convenience init(relay: NIOLoopBoundBox<ReplyRelay>, abandon: @escaping @Sendable () -> Void) {
        self.init(source: .relayed(relay), abandon: abandon)
    }

    /// A body read from elsewhere (a backend's answer): `cancel` stops that exchange.
    public convenience init(chunks: AsyncThrowingStream<ByteBuffer, any Error>, cancel: @escaping @Sendable () -> Void) {
        self.init(source: .chunks(chunks), abandon: cancel)
    }

    /// A body already read whole.
    public convenience init(whole: ByteBuffer) {
        self.init(source: .whole(whole), abandon: {})
    }

    deinit { abandon() }

    public func makeAsyncIterator() -> AsyncThrowingStream<ByteBuffer, any Error>.AsyncIterator {
        switch source {
        case .chunks(let chunks):
            return chunks.makeAsyncIterator()
        case .whole(let whole):
            // A whole body does not travel through an engine's stream (one buffered event less per request).
            return AsyncThrowingStream { parts in
                parts.yield(whole)
                parts.finish()
            }.makeAsyncIterator()
        case .relayed(let relay):
            let (chunks, continuation) = AsyncThrowingStream<ByteBuffer, any Error>.makeStream()
            continuation.onTermination = { [abandon] termination in
                if case .cancelled = termination { abandon() }
            }
            if relay.eventLoop.inEventLoop {
                relay.value.attach(continuation)
            } else {
                relay.eventLoop.execute { relay.value.attach(continuation) }
            }
            return chunks.makeAsyncIterator()
        }
    }

    /// The event loop a local engine's reply is read on, where `push` can take it; nil for any other.
    public var pushLoop: (any EventLoop)? {
        if case .relayed(let relay) = source { return relay.eventLoop }
        return nil
    }

    /// Hands the reply's parts to `receive` as they are read, on `pushLoop`, where this must be
    /// called; false, with nothing done, for a reply read elsewhere (iterate it instead).
    public func push(to receive: @escaping ReplyReceiver) -> Bool {
        guard case .relayed(let relay) = source, relay.eventLoop.inEventLoop else { return false }
        relay.value.attach(receive)
        return true
    }

    /// Stops the exchange unless it already ended: the connection is closed, not reused.
    public func cancel() { abandon() }

    /// The whole body, refused (and the exchange stopped) beyond `limit` bytes.
    public func collect(upTo limit: Int) async throws -> ByteBuffer {
        if case .whole(let whole) = source {
            guard whole.readableBytes <= limit else { throw EngineClientError.replyTooLarge(limit: limit) }
            return whole
        }
        var whole: ByteBuffer?
        for try await var chunk in self {
            guard (whole?.readableBytes ?? 0) + chunk.readableBytes <= limit else {
                cancel()
                throw EngineClientError.replyTooLarge(limit: limit)
            }
            if whole == nil { whole = chunk } else { whole!.writeBuffer(&chunk) }
        }
        // The stream also ends early when the caller is cancelled: that is no whole body.
        try Task.checkCancellation()
        return whole ?? ByteBuffer()
    }
}

/// Gets a whole reply (status, content type, body) on the engine connection's event loop.
public typealias WholeReplyReceiver = @Sendable (_ status: Int, _ contentType: String?, _ body: ByteBuffer) -> Void

public enum EngineClientError: Error, Equatable, CustomStringConvertible {
    /// The connection closed before the engine finished its answer (or before it began one).
    case connectionClosed(replyStarted: Bool)
    case replyTooLarge(limit: Int)
    /// Stopped on purpose: the caller gave the reply up, or its own client hung up.
    case abandoned
    /// No connection could be made (the engine is not listening): the request reached no engine.
    case unreachable(String)

    /// No connection could be made: the request reached no engine.
    public var isUnreachable: Bool {
        if case .unreachable = self { return true }
        return false
    }

    public var description: String {
        switch self {
        case .connectionClosed(let started):
            started ? "the engine closed the connection mid-reply" : "the engine closed the connection before replying"
        case .replyTooLarge(let limit): "the engine's reply is larger than \(limit) bytes"
        case .abandoned: "the request was given up before the engine finished it"
        case .unreachable(let reason): "the engine could not be reached (\(reason))"
        }
    }
}

/// HTTP/1.1 over loopback to the engines, with kept-alive connections per engine. This is the one
/// hop of every inference request, so it is kept lean: a request is one write of head and body,
/// the reply flows from the channel into an async stream, and a finished connection goes back to
/// the pool from the event loop, without a task of its own. (AsyncHTTPClient, used before, cost
/// about a tenth of Bodhi's CPU per request in its pool and request state machines.)
public final class EngineClient: Sendable {
    struct Address: Hashable, Sendable {
        let host: String
        let port: Int
    }

    private struct Idle {
        let connection: EngineConnection
        let since: NIODeadline
    }

    /// Idle connections per engine, oldest first. A request takes one of its client's event loop,
    /// so that writing it, reading the answer and writing that to the client happen on one
    /// thread, without waking another (each wake-up cost tens of µs here).
    private struct Pool {
        var idle: [Address: [Idle]] = [:]
        var shutDown = false
    }

    private let group: any EventLoopGroup
    private let pool = Mutex(Pool())
    private let exchangeIDs = Atomic<UInt64>(0)
    /// Idle connections kept per engine; as many as requests ran at once, up to this.
    static let maxIdlePerEngine = 64
    /// Idle connections are not reused after this: llama-server closes them after 5 s, and one
    /// closed just as a request is sent on it costs that request a second try.
    static let idleTimeout = TimeAmount.seconds(3)

    public init(group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) {
        self.group = group
    }

    /// Sends `body` as a JSON POST to `path` of the engine at `endpoint`, and returns once the
    /// engine's status line and headers are in. When `client` (the connection the request came
    /// on) hangs up before the reply has ended, the exchange is abandoned, which stops the engine.
    /// `EngineClientError.unreachable` says that no connection could be made: nothing was sent.
    ///
    /// llama-server closes idle kept-alive connections after a few seconds; a request that meets
    /// such a close before any answer was never read by the engine, so it is sent once more on a
    /// fresh connection.
    ///
    /// With `wholeUpTo`, the reply is wanted whole (a request that does not stream): the call
    /// returns once the engine has sent all of it, which the body then holds, and a reply larger
    /// than that many bytes is refused. One wake-up instead of one per part of the reply.
    /// `onWhole` then gets the reply first, on the connection's event loop as its last byte is
    /// read, before the caller is woken: it can pass the reply on without waiting for that.
    public func post(
        _ path: String, to endpoint: EngineEndpoint, body: ByteBuffer, client: ClientConnection? = nil, wholeUpTo: Int? = nil,
        onWhole: WholeReplyReceiver? = nil
    ) async throws -> EngineReply {
        let address = Address(host: endpoint.host, port: endpoint.port)
        let head = Self.requestHead(path, to: endpoint, bodyBytes: body.readableBytes)
        if let pooled = takeIdle(address, on: client?.eventLoop) {
            do {
                return try await exchange(on: pooled, head: head, body: body, client: client, wholeUpTo: wholeUpTo, onWhole: onWhole)
            } catch EngineClientError.connectionClosed(replyStarted: false) {
                // The stale close described above: fall through to a fresh connection.
            }
        }
        let fresh: EngineConnection
        do { fresh = try await connect(address, on: client?.eventLoop ?? group.any()) } catch {
            throw EngineClientError.unreachable("\(error)")
        }
        return try await exchange(on: fresh, head: head, body: body, client: client, wholeUpTo: wholeUpTo, onWhole: onWhole)
    }

    /// `post` for a reply wanted whole, without a suspension: sent before this returns, when a
    /// kept-alive connection to the engine waits on the client's event loop (and this runs there);
    /// false, with nothing sent, otherwise. The reply goes to `onWhole`, or its failure to
    /// `onFailure`, on that loop. A failure of `EngineClientError.connectionClosed(replyStarted:
    /// false)` is the stale close `post` describes: the engine never read the request.
    public func postNow(
        _ path: String, to endpoint: EngineEndpoint, body: ByteBuffer, client: ClientConnection, wholeUpTo: Int,
        onWhole: @escaping WholeReplyReceiver, onFailure: @escaping @Sendable (any Error) -> Void
    ) -> Bool {
        guard client.eventLoop.inEventLoop,
              let connection = takeIdle(Address(host: endpoint.host, port: endpoint.port), on: client.eventLoop)
        else { return false }
        let started = start(
            on: connection, head: Self.requestHead(path, to: endpoint, bodyBytes: body.readableBytes), body: body, client: client,
            wholeUpTo: wholeUpTo, onWhole: onWhole, streaming: false)
        started.replyHead.whenFailure(onFailure)
        return true
    }

    private static func requestHead(_ path: String, to endpoint: EngineEndpoint, bodyBytes: Int) -> ByteBuffer {
        ByteBuffer(string: """
            POST \(path) HTTP/1.1\r\nHost: \(endpoint.hostHeader)\r\nAuthorization: \(endpoint.authorization)\r\n\
            Content-Type: application/json\r\nContent-Length: \(bodyBytes)\r\n\r\n
            """)
    }

    /// Kept-alive connections waiting for a request, to all engines.
    var idleConnections: Int {
        pool.withLock { $0.idle.values.reduce(0) { $0 + $1.count } }
    }

    /// Closes the idle connections, and each running one as its exchange ends.
    public func shutdown() {
        let idle = pool.withLock { pool in
            pool.shutDown = true
            let idle = Array(pool.idle.values.joined())
            pool.idle = [:]
            return idle
        }
        for entry in idle { entry.connection.channel.close(promise: nil) }
    }

    private func exchange(
        on connection: EngineConnection, head: ByteBuffer, body: ByteBuffer, client: ClientConnection?, wholeUpTo: Int?,
        onWhole: WholeReplyReceiver?
    ) async throws -> EngineReply {
        // A caller already gone (cancelled while queued, or between tries) sends nothing.
        try Task.checkCancellation()
        let started = start(
            on: connection, head: head, body: body, client: client, wholeUpTo: wholeUpTo, onWhole: onWhole, streaming: wholeUpTo == nil)
        // A caller that goes away (its client hung up) while the engine works on the request
        // closes the connection, which stops the engine; it is not sent again.
        let response: EngineExchange.ReplyStart
        do {
            response = try await withTaskCancellationHandler {
                try await started.replyHead.get()
            } onCancel: {
                connection.abandon(started.id)
            }
        } catch where Task.isCancelled {
            throw CancellationError()
        }
        let ended = started.ended
        let id = started.id
        // Once the reply has ended there is nothing to stop (and no event to send).
        let abandon: @Sendable () -> Void = { if !ended.isSet { connection.abandon(id) } }
        let body: EngineReplyBody
        if let whole = response.whole {
            body = EngineReplyBody(whole: whole)
        } else if let relay = started.relay {
            body = EngineReplyBody(relay: relay, abandon: abandon)
        } else {
            body = EngineReplyBody(whole: ByteBuffer())
        }
        return EngineReply(status: Int(response.head.status.code), contentType: response.head.headers.first(name: "Content-Type"), body: body)
    }

    /// An exchange on its way: its reply's start, and the reply's parts as they come.
    private struct Started {
        let id: UInt64
        let replyHead: EventLoopFuture<EngineExchange.ReplyStart>
        /// Nil unless streaming.
        let relay: NIOLoopBoundBox<ReplyRelay>?
        let ended: OnceFlag
    }

    /// Writes the request on `connection`; a client hang-up from here on abandons it. With
    /// `streaming`, the reply's parts come through `relay` (whose end, or whose reader giving
    /// it up, ends the exchange); without, only through the reply's start, which a whole reply
    /// needs alone.
    private func start(
        on connection: EngineConnection, head: ByteBuffer, body: ByteBuffer, client: ClientConnection?, wholeUpTo: Int?,
        onWhole: WholeReplyReceiver?, streaming: Bool
    ) -> Started {
        let id = exchangeIDs.wrappingAdd(1, ordering: .relaxed).newValue
        let channel = connection.channel
        // Abandoning is safe at any time: the handler ignores it once the exchange ended, and
        // remembers it when it comes before the exchange started.
        let watch = client?.onHangUp { connection.abandon(id) }
        let relay = streaming
            ? NIOLoopBoundBox.makeBoxSendingValue(
                ReplyRelay(eventLoop: channel.eventLoop, resumeReading: { channel.read() }, ended: { watch?.end() }),
                as: ReplyRelay.self, eventLoop: channel.eventLoop)
            : nil
        let replyHead = channel.eventLoop.makePromise(of: EngineExchange.ReplyStart.self)
        let exchange = EngineExchange(
            id: id, head: head, body: body, wholeUpTo: wholeUpTo, onWhole: onWhole, replyHead: replyHead, replyBody: relay,
            finished: { [self] keepAlive in
                if keepAlive { giveBack(connection) } else { channel.close(promise: nil) }
            })
        if relay == nil { replyHead.futureResult.whenComplete { _ in watch?.end() } }
        let written = channel.eventLoop.makePromise(of: Void.self)
        written.futureResult.whenFailure { _ in
            // A connection closed before the request reached the handler (completing twice is a no-op).
            let closed = EngineClientError.connectionClosed(replyStarted: false)
            replyHead.fail(closed)
            relay?.value.finish(closed)
        }
        channel.writeAndFlush(exchange, promise: written)
        return Started(id: id, replyHead: replyHead.futureResult, relay: relay, ended: exchange.ended)
    }

    private func connect(_ address: Address, on loop: any EventLoop) async throws -> EngineConnection {
        let channel = try await ClientBootstrap(group: loop)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(EngineExchangeHandler())
                }
            }
            .connect(host: address.host, port: address.port).get()
        let connection = EngineConnection(channel: channel, address: address)
        // Engines come and go on new ports: a closed connection leaves the pool at once, so that
        // an unloaded engine's connections are not kept.
        channel.closeFuture.whenComplete { [self] _ in forget(connection) }
        return connection
    }

    private func forget(_ connection: EngineConnection) {
        pool.withLock { pool in
            pool.idle[connection.address]?.removeAll { $0.connection === connection }
            if pool.idle[connection.address]?.isEmpty == true { pool.idle[connection.address] = nil }
        }
    }

    /// The most recently used idle connection to `address` on `loop` (any loop: nil). Expired
    /// ones are closed: they are the oldest, at the front.
    private func takeIdle(_ address: Address, on loop: (any EventLoop)?) -> EngineConnection? {
        let oldest = NIODeadline.now() - Self.idleTimeout
        let (fresh, expired) = pool.withLock { pool -> (EngineConnection?, ArraySlice<Idle>) in
            guard var idle = pool.idle.removeValue(forKey: address) else { return (nil, []) }
            let expiredCount = idle.firstIndex { $0.since >= oldest } ?? idle.endIndex
            let expired = idle[..<expiredCount]
            idle.removeFirst(expiredCount)
            idle.removeAll { !$0.connection.channel.isActive }
            let index = idle.lastIndex { loop == nil || $0.connection.channel.eventLoop === loop! }
            let fresh = index.map { idle.remove(at: $0).connection }
            if !idle.isEmpty { pool.idle[address] = idle }
            return (fresh, expired)
        }
        for entry in expired { entry.connection.channel.close(promise: nil) }
        return fresh
    }

    private func giveBack(_ connection: EngineConnection) {
        let kept = pool.withLock { pool in
            guard !pool.shutDown, connection.channel.isActive,
                  pool.idle[connection.address, default: []].count < Self.maxIdlePerEngine else { return false }
            pool.idle[connection.address, default: []].append(Idle(connection: connection, since: .now()))
            return true
        }
        if !kept { connection.channel.close(promise: nil) }
    }
}

/// One kept-alive connection to an engine.
final class EngineConnection: Sendable {
    let channel: any Channel
    let address: EngineClient.Address

    init(channel: any Channel, address: EngineClient.Address) {
        self.channel = channel
        self.address = address
    }

    /// Ends exchange `id` by closing the connection, if that exchange is still running on it.
    func abandon(_ id: UInt64) {
        channel.triggerUserOutboundEvent(EngineExchangeHandler.Abandon(id: id), promise: nil)
    }
}

/// A request and where its answer goes; written into the connection's pipeline as one message.
struct EngineExchange: Sendable {
    /// The reply's head, and its whole body when it was wanted whole.
    struct ReplyStart: Sendable {
        let head: HTTPResponseHead
        let whole: ByteBuffer?
    }

    let id: UInt64
    /// The request's head, in HTTP/1.1's bytes.
    let head: ByteBuffer
    let body: ByteBuffer
    /// Collect the reply whole, refusing more than this many bytes; nil streams it.
    let wholeUpTo: Int?
    /// Gets a whole reply before the caller does.
    let onWhole: WholeReplyReceiver?
    let replyHead: EventLoopPromise<ReplyStart>
    /// Where a streamed reply's parts go; nil when the reply is wanted whole only.
    let replyBody: NIOLoopBoundBox<ReplyRelay>?
    /// Set once the reply has ended.
    let ended = OnceFlag()
    /// Called on the event loop once the reply ended; whether the connection may be reused.
    let finished: @Sendable (_ keepAlive: Bool) -> Void
}

/// Writes an `EngineExchange`'s request on the connection, and reads its reply (`EngineReplyParser`)
/// into its head promise and its body's relay. One exchange at a time per connection.
final class EngineExchangeHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = EngineExchange
    typealias OutboundOut = ByteBuffer

    struct Abandon: Sendable { let id: UInt64 }

    private var current: EngineExchange?
    private var parser = EngineReplyParser()
    private var replyStarted = false
    /// The head and body so far of a reply wanted whole.
    private var wholeReply: (head: HTTPResponseHead, body: ByteBuffer)?
    /// The newest exchange started here; ids only grow, so an abandon with a higher id is for an
    /// exchange still on its way to this handler.
    private var lastStarted: UInt64 = 0
    private var abandonedAhead: UInt64?

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let exchange = unwrapOutboundIn(data)
        guard current == nil else {
            exchange.replyHead.fail(ChannelError.inappropriateOperationForState)
            exchange.replyBody?.value.finish(ChannelError.inappropriateOperationForState)
            promise?.fail(ChannelError.inappropriateOperationForState)
            return
        }
        lastStarted = exchange.id
        if abandonedAhead == exchange.id {
            // Given up before it was sent: nothing went out, so the connection is as good as new.
            abandonedAhead = nil
            exchange.replyHead.fail(EngineClientError.abandoned)
            exchange.replyBody?.value.finish(EngineClientError.abandoned)
            exchange.finished(true)
            promise?.succeed()
            return
        }
        current = exchange
        replyStarted = false
        wholeReply = nil
        context.write(wrapOutboundOut(exchange.head), promise: nil)
        context.write(wrapOutboundOut(exchange.body), promise: promise)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        parser.append(unwrapInboundIn(data))
        do {
            while let part = try parser.next() {
                guard let exchange = current else {
                    // A reply to no request: whatever sent it, the connection is not to be used.
                    context.close(promise: nil)
                    return
                }
                take(part, of: exchange, context: context)
            }
        } catch {
            // A reply that does not parse: the engine's own failure, never a reason to send the request again.
            fail(error)
            context.close(promise: nil)
        }
    }

    private func take(_ part: EngineReplyParser.Part, of exchange: EngineExchange, context: ChannelHandlerContext) {
        switch part {
        case .head(let head):
            replyStarted = true
            if exchange.wholeUpTo != nil {
                wholeReply = (head, ByteBuffer())
            } else {
                exchange.replyHead.succeed(.init(head: head, whole: nil))
            }
        case .body(var chunk):
            guard let limit = exchange.wholeUpTo, var whole = wholeReply else {
                exchange.replyBody?.value.received(chunk)
                return
            }
            guard whole.body.readableBytes + chunk.readableBytes <= limit else {
                fail(EngineClientError.replyTooLarge(limit: limit))
                context.close(promise: nil)
                return
            }
            wholeReply = nil  // so that the body grows in place
            whole.body.writeBuffer(&chunk)
            wholeReply = whole
        case .end(let keepAlive):
            current = nil
            exchange.ended.set()
            if let whole = wholeReply {
                wholeReply = nil
                // The client's answer first; then the pool, before the reader learns of the end,
                // so that its next request finds the connection. The body travels in the reply
                // start, not through the stream.
                exchange.onWhole?(Int(whole.head.status.code), whole.head.headers.first(name: "Content-Type"), whole.body)
                exchange.finished(keepAlive)
                exchange.replyHead.succeed(.init(head: whole.head, whole: whole.body))
            } else {
                // Pooled before the reader learns of the end, so that its next request finds it.
                exchange.finished(keepAlive)
                exchange.replyBody?.value.finish(nil)
            }
        }
    }

    func read(context: ChannelHandlerContext) {
        // Held while a streamed reply's reader waits for its client to take what it was sent.
        if current?.replyBody?.value.holdsReads == true { return }
        context.read()
    }

    func triggerUserOutboundEvent(context: ChannelHandlerContext, event: Any, promise: EventLoopPromise<Void>?) {
        if let abandon = event as? Abandon {
            if current?.id == abandon.id {
                fail(EngineClientError.abandoned)
                context.close(promise: nil)
            } else if abandon.id > lastStarted {
                abandonedAhead = abandon.id
            }
            promise?.succeed()
        } else {
            context.triggerUserOutboundEvent(event, promise: promise)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // A reset or broken pipe is the engine closing the connection; anything else is its own
        // failure, and never a reason to send the request again.
        if let error = error as? IOError, [ECONNRESET, EPIPE].contains(error.errnoCode) {
            fail(EngineClientError.connectionClosed(replyStarted: replyStarted))
        } else {
            fail(error)
        }
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        if let exchange = current {
            do {
                // A reply without a length ends with its connection.
                if let end = try parser.closed() { take(end, of: exchange, context: context) }
            } catch EngineReplyParser.Failure.closedEarly(replyStarted: false) {
                // Part of a head came: the engine read the request, so it is not to be sent again.
                fail(EngineReplyParser.Failure.closedEarly(replyStarted: false))
            } catch {
                // Cut off mid-body: said below.
            }
        }
        fail(EngineClientError.connectionClosed(replyStarted: replyStarted))
        context.fireChannelInactive()
    }

    private func fail(_ error: any Error) {
        guard let exchange = current else { return }
        current = nil
        // A reply wanted whole has not been handed over yet, even when it has begun.
        if !replyStarted || wholeReply != nil { exchange.replyHead.fail(error) }
        wholeReply = nil
        exchange.replyBody?.value.finish(error)
    }
}
