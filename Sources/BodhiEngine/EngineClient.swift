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
public final class EngineReplyBody: AsyncSequence, Sendable {
    public typealias Element = ByteBuffer
    private let chunks: AsyncThrowingStream<ByteBuffer, any Error>
    /// The whole body, when it was asked for whole and so came after the engine's last byte.
    private let whole: ByteBuffer?
    private let abandon: @Sendable () -> Void

    init(chunks: AsyncThrowingStream<ByteBuffer, any Error>, whole: ByteBuffer?, abandon: @escaping @Sendable () -> Void) {
        self.chunks = chunks
        self.whole = whole
        self.abandon = abandon
    }

    /// A body read from elsewhere (a backend's answer): `cancel` stops that exchange.
    public convenience init(chunks: AsyncThrowingStream<ByteBuffer, any Error>, cancel: @escaping @Sendable () -> Void) {
        self.init(chunks: chunks, whole: nil, abandon: cancel)
    }

    /// A body already read whole.
    public convenience init(whole: ByteBuffer) {
        self.init(chunks: AsyncThrowingStream { $0.finish() }, whole: whole, abandon: {})
    }

    deinit { abandon() }

    public func makeAsyncIterator() -> AsyncThrowingStream<ByteBuffer, any Error>.AsyncIterator {
        // A whole body does not travel through `chunks` (one buffered event less per request).
        guard let whole else { return chunks.makeAsyncIterator() }
        return AsyncThrowingStream { parts in
            parts.yield(whole)
            parts.finish()
        }.makeAsyncIterator()
    }

    /// Stops the exchange unless it already ended: the connection is closed, not reused.
    public func cancel() { abandon() }

    /// The whole body, refused (and the exchange stopped) beyond `limit` bytes.
    public func collect(upTo limit: Int) async throws -> ByteBuffer {
        if let whole {
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

    private static func requestHead(_ path: String, to endpoint: EngineEndpoint, bodyBytes: Int) -> HTTPRequestHead {
        var head = HTTPRequestHead(version: .http1_1, method: .POST, uri: path)
        head.headers.reserveCapacity(4)
        head.headers.add(name: "Host", value: endpoint.hostHeader)
        head.headers.add(name: "Authorization", value: endpoint.authorization)
        head.headers.add(name: "Content-Type", value: "application/json")
        head.headers.add(name: "Content-Length", value: String(bodyBytes))
        return head
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
        on connection: EngineConnection, head: HTTPRequestHead, body: ByteBuffer, client: ClientConnection?, wholeUpTo: Int?,
        onWhole: WholeReplyReceiver?
    ) async throws -> EngineReply {
        // A caller already gone (cancelled while queued, or between tries) sends nothing.
        try Task.checkCancellation()
        let started = start(on: connection, head: head, body: body, client: client, wholeUpTo: wholeUpTo, onWhole: onWhole)
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
        return EngineReply(
            status: Int(response.head.status.code), contentType: response.head.headers.first(name: "Content-Type"),
            body: EngineReplyBody(chunks: started.chunks ?? AsyncThrowingStream { $0.finish() }, whole: response.whole, abandon: {
                // Once the reply has ended there is nothing to stop (and no event to send).
                if !ended.isSet { connection.abandon(id) }
            }))
    }

    /// An exchange on its way: its reply's start, and the reply's parts as they come.
    private struct Started {
        let id: UInt64
        let replyHead: EventLoopFuture<EngineExchange.ReplyStart>
        /// Nil unless streaming.
        let chunks: AsyncThrowingStream<ByteBuffer, any Error>?
        let ended: OnceFlag
    }

    /// Writes the request on `connection`; a client hang-up from here on abandons it. With
    /// `streaming`, the reply's parts come through `chunks` (whose end, or whose reader giving
    /// it up, ends the exchange); without, only through the reply's start, which a whole reply
    /// needs alone.
    private func start(
        on connection: EngineConnection, head: HTTPRequestHead, body: ByteBuffer, client: ClientConnection?, wholeUpTo: Int?,
        onWhole: WholeReplyReceiver?, streaming: Bool = true
    ) -> Started {
        let id = exchangeIDs.wrappingAdd(1, ordering: .relaxed).newValue
        let stream = streaming ? AsyncThrowingStream<ByteBuffer, any Error>.makeStream() : nil
        let continuation = stream?.continuation
        let replyHead = connection.channel.eventLoop.makePromise(of: EngineExchange.ReplyStart.self)
        let exchange = EngineExchange(
            id: id, head: head, body: body, wholeUpTo: wholeUpTo, onWhole: onWhole, replyHead: replyHead, replyBody: continuation,
            finished: { [self] keepAlive in
                if keepAlive { giveBack(connection) } else { connection.channel.close(promise: nil) }
            })
        // Abandoning is safe at any time: the handler ignores it once the exchange ended, and
        // remembers it when it comes before the exchange started.
        let watch = client?.onHangUp { connection.abandon(id) }
        if let continuation {
            continuation.onTermination = { termination in
                watch?.end()
                if case .cancelled = termination { connection.abandon(id) }
            }
        } else {
            replyHead.futureResult.whenComplete { _ in watch?.end() }
        }
        let written = connection.channel.eventLoop.makePromise(of: Void.self)
        written.futureResult.whenFailure { _ in
            // A connection closed before the request reached the handler (completing twice is a no-op).
            let closed = EngineClientError.connectionClosed(replyStarted: false)
            replyHead.fail(closed)
            continuation?.finish(throwing: closed)
        }
        connection.channel.writeAndFlush(exchange, promise: written)
        return Started(id: id, replyHead: replyHead.futureResult, chunks: stream?.stream, ended: exchange.ended)
    }

    private func connect(_ address: Address, on loop: any EventLoop) async throws -> EngineConnection {
        let channel = try await ClientBootstrap(group: loop)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    // The request heads are Bodhi's own (fixed names, a hex key, a number): checking
                    // them again on every request showed in the profile.
                    try channel.pipeline.syncOperations.addHTTPClientHandlers(enableOutboundHeaderValidation: false)
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
    let head: HTTPRequestHead
    let body: ByteBuffer
    /// Collect the reply whole, refusing more than this many bytes; nil streams it.
    let wholeUpTo: Int?
    /// Gets a whole reply before the caller does.
    let onWhole: WholeReplyReceiver?
    let replyHead: EventLoopPromise<ReplyStart>
    /// Where a streamed reply's parts go; nil when the reply is wanted whole only.
    let replyBody: AsyncThrowingStream<ByteBuffer, any Error>.Continuation?
    /// Set once the reply has ended.
    let ended = OnceFlag()
    /// Called on the event loop once the reply ended; whether the connection may be reused.
    let finished: @Sendable (_ keepAlive: Bool) -> Void
}

/// Turns an `EngineExchange` into request parts, and the reply's parts into its head promise and
/// body stream. One exchange at a time per connection.
final class EngineExchangeHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundIn = EngineExchange
    typealias OutboundOut = HTTPClientRequestPart

    struct Abandon: Sendable { let id: UInt64 }

    private var current: EngineExchange?
    private var replyStarted = false
    private var keepAlive = true
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
            exchange.replyBody?.finish(throwing: ChannelError.inappropriateOperationForState)
            promise?.fail(ChannelError.inappropriateOperationForState)
            return
        }
        lastStarted = exchange.id
        if abandonedAhead == exchange.id {
            // Given up before it was sent: nothing went out, so the connection is as good as new.
            abandonedAhead = nil
            exchange.replyHead.fail(EngineClientError.abandoned)
            exchange.replyBody?.finish(throwing: EngineClientError.abandoned)
            exchange.finished(true)
            promise?.succeed()
            return
        }
        current = exchange
        replyStarted = false
        wholeReply = nil
        context.write(wrapOutboundOut(.head(exchange.head)), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(exchange.body))), promise: nil)
        context.write(wrapOutboundOut(.end(nil)), promise: promise)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard let exchange = current else { return }
        switch unwrapInboundIn(data) {
        case .head(let head):
            replyStarted = true
            keepAlive = head.isKeepAlive
            if exchange.wholeUpTo != nil {
                wholeReply = (head, ByteBuffer())
            } else {
                exchange.replyHead.succeed(.init(head: head, whole: nil))
            }
        case .body(var chunk):
            guard let limit = exchange.wholeUpTo, var whole = wholeReply else {
                exchange.replyBody?.yield(chunk)
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
        case .end:
            current = nil
            exchange.ended.set()
            if let whole = wholeReply {
                wholeReply = nil
                // The client's answer first; then the pool, before the reader learns of the end,
                // so that its next request finds the connection. The body travels in the reply
                // start, not through the stream.
                exchange.onWhole?(Int(whole.head.status.code), whole.head.headers.first(name: "Content-Type"), whole.body)
                exchange.finished(keepAlive)
                exchange.replyBody?.finish()
                exchange.replyHead.succeed(.init(head: whole.head, whole: whole.body))
            } else {
                // Pooled before the reader learns of the end, so that its next request finds it.
                exchange.finished(keepAlive)
                exchange.replyBody?.finish()
            }
        }
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
        // A reset or broken pipe is the engine closing the connection; anything else (a reply
        // that does not parse) is its own failure, and never a reason to send the request again.
        if let error = error as? IOError, [ECONNRESET, EPIPE].contains(error.errnoCode) {
            fail(EngineClientError.connectionClosed(replyStarted: replyStarted))
        } else {
            fail(error)
        }
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        fail(EngineClientError.connectionClosed(replyStarted: replyStarted))
        context.fireChannelInactive()
    }

    private func fail(_ error: any Error) {
        guard let exchange = current else { return }
        current = nil
        // A reply wanted whole has not been handed over yet, even when it has begun.
        if !replyStarted || wholeReply != nil { exchange.replyHead.fail(error) }
        wholeReply = nil
        exchange.replyBody?.finish(throwing: error)
    }
}
