import BodhiCore
import BodhiEngine
import BodhiIdentity
import HTTPTypes
import Hummingbird
import NIOCore
import NIOHTTPTypes
import Synchronization

/// The common case of the OpenAI inference routes, served without the router: a request with an
/// API token checked recently, which its role allows and no limit refuses. It takes the steps
/// the middleware and the route take, through the same functions (`AccessMiddleware.authorize`,
/// `RateLimitMiddleware.decide`, `InferenceService.handle`, `ErrorRenderingMiddleware.render`,
/// `ResponseCompression.compress`, `APIVersioning.stamp`), in one task, or in none when the
/// request needs nothing waited for (`InferenceService.serveNow`). Every other request,
/// and every request this route declines, goes through the router as before.
///
/// Why: on a small machine Hummingbird's request path (the channel-to-task bridge, the request
/// and context, six middleware, the async response writer) cost more than a third of Bodhi's
/// time on an inference request (docs/PERFORMANCE.md).
struct FastInferenceRoute: Sendable {
    let services: BodhiServices
    let rateLimits: RateLimitMiddleware
    let finishing: ResponseFinishing

    init(services: BodhiServices) {
        self.services = services
        rateLimits = RateLimitMiddleware(limiter: services.rateLimiter, admission: services.admission, metrics: services.metrics)
        finishing = ResponseFinishing(metrics: services.metrics)
    }

    static let operations: [String: InferenceOperation] = Dictionary(
        uniqueKeysWithValues: InferenceOperation.allCases.filter { $0.rawValue.hasPrefix("/v1/") }.map { ($0.rawValue, $0) })

    /// Each operation's access rule, looked up once rather than per request.
    private static let rules: [InferenceOperation: AccessPolicy.Rule] = operations.values.reduce(into: [:]) { rules, operation in
        rules[operation] = AccessPolicy.rule(method: .post, path: operation.rawValue)
    }

    /// The request headers this route acts on, read in one pass (a lookup by name through
    /// `HTTPFields`' subscript joins the values it finds through a lazy map, every time).
    struct Headers: Sendable {
        var authorization: String?
        var apiKey: String?
        var requestID: String?
        var acceptEncoding: String?
        /// `Expect` or `Connection: close`: the router's to handle.
        var declined = false

        init(_ fields: HTTPFields) {
            // Names compared as bytes: `HTTPField.Name`'s == compares Strings, with Unicode
            // equivalence, which showed in the profile.
            func named(_ field: HTTPField, _ name: StaticString) -> Bool {
                let canonical = field.name.canonicalName.utf8
                return canonical.count == name.utf8CodeUnitCount
                    && canonical.elementsEqual(UnsafeBufferPointer(start: name.utf8Start, count: name.utf8CodeUnitCount))
            }
            for field in fields {
                if named(field, "authorization") {
                    authorization = field.value
                } else if named(field, "x-api-key") {
                    apiKey = field.value
                } else if named(field, "x-request-id") {
                    requestID = field.value
                } else if named(field, "accept-encoding") {
                    acceptEncoding = acceptEncoding.map { $0 + ", " + field.value } ?? field.value
                } else if named(field, "expect") {
                    declined = true
                } else if named(field, "connection"), Self.mentionsClose(field.value) {
                    declined = true
                }
            }
        }

        /// Whether a `Connection` value has `close` in it, in any case; compared as bytes, as
        /// `String.contains` went through Foundation here (15 µs a request in the profile).
        static func mentionsClose(_ value: String) -> Bool {
            let close = Array("close".utf8)
            let bytes = Array(value.utf8)
            guard bytes.count >= close.count else { return false }
            return (0...(bytes.count - close.count)).contains { start in
                close.indices.allSatisfy { bytes[start + $0] | 0x20 == close[$0] }
            }
        }
    }

    /// The SHA-256 of the API token a connection sent last: a client sends the same one with
    /// every request on a kept-alive connection, and hashing it took 10–30 µs a request here.
    struct TokenHash {
        private var token = ""
        private var hash = ""

        mutating func of(_ token: String) -> String {
            if token != self.token {
                self.token = token
                hash = Secrets.sha256(token)
            }
            return hash
        }
    }

    /// A request head this route may take: a POST to an inference path with an API token, as
    /// clients send it (no `Expect`, no `Connection: close`).
    struct Candidate: Sendable {
        let operation: InferenceOperation
        let head: HTTPRequest
        let headers: Headers
    }

    /// A whole request this route has taken on.
    struct Admitted: Sendable {
        let candidate: Candidate
        let body: ByteBuffer
        let principal: Principal
        let limits: RateLimiter.Decision
        let subject: RateLimiter.Subject?
        var operation: InferenceOperation { candidate.operation }
        var method: HTTPRequest.Method { candidate.head.method }
    }

    /// The candidate a request head makes, when this route may take the request; nil for the router.
    func candidate(_ head: HTTPRequest) -> Candidate? {
        guard head.method == .post, let path = head.path, let operation = Self.operations[path] else { return nil }
        let headers = Headers(head.headerFields)
        guard !headers.declined, headers.authorization != nil || headers.apiKey != nil else { return nil }
        return Candidate(operation: operation, head: head, headers: headers)
    }

    /// Takes the request on when nothing but the database or an error response would decide it:
    /// Bodhi set up, the token remembered, its role enough, no limit refusing. Only the limiter's
    /// count changes, and only when the request is taken (a refusal counts nothing; the router
    /// then answers the 429).
    func admit(_ candidate: Candidate, body: ByteBuffer, clientAddress: String, tokenHash: inout TokenHash) -> Admitted? {
        let method = candidate.head.method
        guard services.identity.isKnownSetUp,
              let token = try? AccessMiddleware.apiToken(authorization: candidate.headers.authorization, apiKey: candidate.headers.apiKey),
              let principal = services.identity.rememberedPrincipal(tokenHash: tokenHash.of(token)),
              let rule = Self.rules[candidate.operation],
              (try? AccessMiddleware.authorize(principal, under: rule, method: method, csrfToken: nil)) != nil
        else { return nil }
        let (limits, subject) = rateLimits.decide(for: principal, address: clientAddress, routeClass: .inference)
        if case .refused = limits { return nil }
        return Admitted(candidate: candidate, body: body, principal: principal, limits: limits, subject: subject)
    }

    /// Serves an admitted request, writing its response with `writer` as the middleware would
    /// have made it, and calls `whenSent` once it is out. A request that does not stream, whose
    /// model, slot and engine are at hand, is sent to the engine before this returns
    /// (`InferenceService.serveNow`); any other, or one the engine never read, is served by a task.
    /// Either way a whole answer is written where the engine's reply is read, and the engine slot
    /// is given back (and the request reported) only after that, so that the client waits for
    /// neither a task nor Bodhi's bookkeeping.
    func serve(_ request: Admitted, connection: ClientConnection, to writer: ChannelResponseWriter, whenSent: @escaping @Sendable () -> Void) {
        let exchange = Exchange(route: self, request: request, connection: connection, writer: writer, whenSent: whenSent)
        let sent = RequestScope.$requestID.withValue(exchange.requestID) {
            services.inference.serveNow(
                request.operation, body: request.body, allowedModels: request.principal.allowedModels, caller: exchange.caller,
                deliver: exchange.deliverWhole,
                unserved: { [self] outcome in
                    Task {
                        switch outcome {
                        case .retry: await serve(exchange)
                        case .failed(let error):
                            await RequestScope.$requestID.withValue(exchange.requestID) { await exchange.fail(error) }
                        }
                    }
                })
        }
        if !sent { Task { await serve(exchange) } }
    }

    /// `serve`'s way through the task: `InferenceService.handleHoldingSlot`.
    private func serve(_ exchange: Exchange) async {
        let request = exchange.request
        let held: InferenceService.HeldResult
        // Only a request served by a task can reach a router model, so only it learns which target answered.
        let servedBy = ServedBy()
        var exchange = exchange
        exchange.servedBy = servedBy
        do {
            held = try await RequestScope.$requestID.withValue(exchange.requestID) {
                try await InferenceCaller.$current.withValue(exchange.caller) {
                    try await ServedBy.$current.withValue(servedBy) {
                        try await services.inference.handleHoldingSlot(
                            request.operation, body: request.body, allowedModels: request.principal.allowedModels,
                            deliverWhole: exchange.deliverWhole)
                    }
                }
            }
        } catch {
            await exchange.fail(error)
            return
        }
        // A whole answer is out already, from the engine's side; a stream (or an answer to a
        // request that streams) is sent from here.
        if !exchange.delivered.isSet {
            var response = OpenAIRoutes.response(for: held.result)
            if case .allowed(let quotas) = request.limits { RateLimitMiddleware.stamp(&response.headers, quotas) }
            await exchange.send(response)
        }
        held.release()
    }

    /// One admitted request's way back to its client, however it is served.
    private struct Exchange: Sendable {
        let route: FastInferenceRoute
        let request: Admitted
        let writer: ChannelResponseWriter
        let whenSent: @Sendable () -> Void
        let started = ContinuousClock.now
        let requestID: String
        let caller: InferenceCaller
        /// Set once a whole answer went out from the engine's side.
        let delivered = OnceFlag()
        let stamps: Stamps
        /// Which target of a router model answered (requests served by a task only).
        var servedBy: ServedBy?

        init(route: FastInferenceRoute, request: Admitted, connection: ClientConnection, writer: ChannelResponseWriter,
             whenSent: @escaping @Sendable () -> Void) {
            self.route = route
            self.request = request
            self.writer = writer
            self.whenSent = whenSent
            requestID = APIVersioning.requestID(sentByClient: request.candidate.headers.requestID)
            caller = RateLimitMiddleware.caller(request.principal, subject: request.subject, connection: connection)
            let stamps = Stamps(route: route, request: request, requestID: requestID)
            self.stamps = stamps
            // Made while the engine works: this job runs once the request is on its way to it.
            writer.eventLoop.execute { _ = stamps.fields }
        }

        /// What `ResponseFinishing` needs to know of this request.
        var finishing: ResponseFinishing.Exchange {
            ResponseFinishing.Exchange(
                method: request.method, route: request.operation.rawValue, acceptEncoding: request.candidate.headers.acceptEncoding,
                requestID: requestID, started: started, servedBy: servedBy, fastPath: true)
        }

        /// Writes a whole answer at once, from where the engine's reply is read.
        var deliverWhole: InferenceService.WholeAnswerReceiver {
            { [self] status, contentType, body in
                delivered.set()
                let status = HTTPResponse.Status(code: status)
                var headers: HTTPFields = [.contentType: contentType, .contentLength: String(body.readableBytes)]
                var body = body
                route.finishing.finishWhole(status: status, headers: &headers, body: &body, stamps: stamps.fields, finishing)
                writer.sendWhole(HTTPResponse(status: status, headerFields: headers), body, then: whenSent)
            }
        }

        func send(_ response: Response) async {
            var response = await route.finishing.finish(response, finishing)
            FastInferenceRoute.stampServer(&response.headers)
            await writer.send(response)
            whenSent()
        }

        /// The error's response, as the error middleware renders it.
        func fail(_ error: any Error) async {
            let bodhiError = ErrorRenderingMiddleware.bodhiError(
                from: error, method: request.method, path: request.operation.rawValue, maxBodyBytes: route.services.maxRequestBodyBytes)
            await send(ErrorRenderingMiddleware.render(bodhiError, path: request.operation.rawValue))
        }
    }

    /// The headers a whole answer gets whatever the engine says: its rate limits and the
    /// outer stamps (`ResponseFinishing.stamp`, `stampServer`). Made once, by whoever asks first.
    private final class Stamps: Sendable {
        private let made: Mutex<HTTPFields?> = Mutex(nil)
        private let make: @Sendable () -> HTTPFields

        init(route: FastInferenceRoute, request: Admitted, requestID: String) {
            make = {
                var fields = HTTPFields()
                if case .allowed(let quotas) = request.limits { RateLimitMiddleware.stamp(&fields, quotas) }
                APIVersioning.stamp(&fields, requestID: requestID, method: request.method, path: request.operation.rawValue)
                FastInferenceRoute.stampServer(&fields)
                return fields
            }
        }

        var fields: HTTPFields {
            made.withLock { made in
                if let made { return made }
                let fields = make()
                made = fields
                return fields
            }
        }
    }

    /// `Date` and `Server`, which Hummingbird's application adds to the router's responses.
    fileprivate static func stampServer(_ headers: inout HTTPFields) {
        headers[.date] = HTTPDate.now
        headers[.server] = BodhiHTTPServer.serverName
    }
}

/// Sits between Hummingbird's connection state handler and its channel-to-task bridge, and hands
/// the requests `FastInferenceRoute` takes to it instead of to the router: their parts stop here
/// and their responses are written from here. Requests go one at a time, as HTTP/1.1 wants them
/// answered: one is taken only while none handed on is still being answered, and parts of
/// requests pipelined behind a taken one wait until its response is out.
final class InferenceFastPath: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    private enum Phase {
        case idle
        /// A request the route may take, while its body comes in.
        case collecting(FastInferenceRoute.Candidate, ByteBuffer)
        /// A request for the router, until its end has been handed on.
        case handingOn
        /// A request taken, until its response is written.
        case serving
    }

    private let route: FastInferenceRoute
    private var phase = Phase.idle
    /// Requests handed on whose responses have not ended yet.
    private var handedOn = 0
    /// What came in while a taken request was served (a pipelining client), in order.
    private var waiting = CircularBuffer<HTTPRequestPart>()
    private var clientAddress = "unknown"
    private var tokenHash = FastInferenceRoute.TokenHash()

    init(route: FastInferenceRoute) {
        self.route = route
    }

    func handlerAdded(context: ChannelHandlerContext) {
        clientAddress = context.channel.remoteAddress?.ipAddress ?? "unknown"
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        take(unwrapInboundIn(data), context: context)
    }

    /// Stops reading while the requests waiting behind a taken one hold this much, until its
    /// response is out: a client cannot make Bodhi buffer without bound by pipelining.
    static let maxWaitingBytes = 1 << 20
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
                handOn(candidate.head, body, context: context)
                take(part, context: context)
            case .body(var chunk):
                guard body.readableBytes + chunk.readableBytes <= route.services.maxRequestBodyBytes else {
                    // The router answers the 413, once it has read this far.
                    handOn(candidate.head, body, context: context)
                    take(part, context: context)
                    return
                }
                phase = .idle  // so that `body` is the buffer's only owner while it grows
                body.writeBuffer(&chunk)
                phase = .collecting(candidate, body)
            case .end:
                guard let admitted = route.admit(candidate, body: body, clientAddress: clientAddress, tokenHash: &tokenHash) else {
                    handOn(candidate.head, body, context: context)
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

    private func serve(_ request: FastInferenceRoute.Admitted, context: ChannelHandlerContext) {
        phase = .serving
        let route = route
        let connection = ClientConnection.of(context.channel)
        let writer = ChannelResponseWriter(context: context)
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

/// Writes a response through a channel handler's context from any task, each part on the
/// context's event loop (directly when the task already runs there, as it does with NIO's loops
/// as the concurrency executor).
struct ChannelResponseWriter: Sendable {
    private let context: NIOLoopBound<ChannelHandlerContext>
    let eventLoop: any EventLoop

    init(context: ChannelHandlerContext) {
        self.context = NIOLoopBound(context, eventLoop: context.eventLoop)
        eventLoop = context.eventLoop
    }

    /// Runs `body` with the context on its event loop.
    func onLoop(_ body: @escaping @Sendable (ChannelHandlerContext) -> Void) {
        if eventLoop.inEventLoop { body(context.value) } else { eventLoop.execute { [context] in body(context.value) } }
    }

    /// The response's head and body. A body of known length goes out with one flush at its end;
    /// any other (a stream of events) is flushed write by write, so that each event reaches the
    /// client when it is sent. A response that cannot be finished closes the connection.
    func send(_ response: Response) async {
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
    func sendWhole(_ head: HTTPResponse, _ body: ByteBuffer, then: @escaping @Sendable () -> Void) {
        onLoop { context in
            if context.channel.isActive {
                context.write(NIOAny(HTTPResponsePart.head(head)), promise: nil)
                context.write(NIOAny(HTTPResponsePart.body(body)), promise: nil)
                context.writeAndFlush(NIOAny(HTTPResponsePart.end(nil)), promise: nil)
            }
            then()
        }
    }

    /// Writes one part. It waits only while the channel is not writable (a slow reader), as
    /// Hummingbird's writer does, and fails once the connection is closed.
    func write(_ part: HTTPResponsePart, flush: Bool) async throws {
        if eventLoop.inEventLoop {
            try await Self.write(part, flush: flush, on: context.value)?.get()
        } else {
            // Not on the connection's loop (there are several): hop there.
            try await eventLoop.flatSubmit { [context] in
                let context = context.value
                do {
                    return try Self.write(part, flush: flush, on: context) ?? context.eventLoop.makeSucceededVoidFuture()
                } catch {
                    return context.eventLoop.makeFailedFuture(error)
                }
            }.get()
        }
    }

    /// The write's completion when it must be waited for.
    private static func write(_ part: HTTPResponsePart, flush: Bool, on context: ChannelHandlerContext) throws -> EventLoopFuture<Void>? {
        guard context.channel.isActive else { throw ChannelError.ioOnClosedChannel }
        let promise: EventLoopPromise<Void>? = context.channel.isWritable ? nil : context.eventLoop.makePromise()
        if flush { context.writeAndFlush(NIOAny(part), promise: promise) } else { context.write(NIOAny(part), promise: promise) }
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
