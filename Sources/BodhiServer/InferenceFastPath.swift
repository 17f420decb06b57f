import BodhiCore
import BodhiEngine
import BodhiHTTP
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
struct FastInferenceRoute: FastPathRoute {
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
        /// `Expect`, `Origin`, `Content-Encoding` or `Connection: close`: the router's to handle.
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
                } else if named(field, "expect") || named(field, "origin") || named(field, "content-encoding") {
                    // The router's steps answer these: CORS, a compressed body.
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

    var maxRequestBodyBytes: Int { services.maxRequestBodyBytes }

    func makeConnectionState() -> TokenHash { TokenHash() }

    func head(of candidate: Candidate) -> HTTPRequest { candidate.head }

    func admit(_ candidate: Candidate, body: ByteBuffer, clientAddress: String, state: inout TokenHash) -> Admitted? {
        admit(candidate, body: body, clientAddress: clientAddress, tokenHash: &state)
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
                    switch outcome {
                    case .retry: Task { await serve(exchange) }
                    case .failed(let error): exchange.fail(error)
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
            exchange.fail(error)
            return
        }
        // A whole answer is out already, from the engine's side; a local engine's stream goes
        // from its side too; any other (or an answer to a request that streams) is sent from here.
        if case .events(let stream) = held.result, exchange.push(stream) { return }
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

        /// Sends a local engine's stream from where its reply is read (`EventStream.push`); false,
        /// with nothing done, for any other.
        func push(_ stream: EventStream) -> Bool {
            guard stream.canPush(on: writer.eventLoop) else { return false }
            var headers = OpenAIRoutes.eventStreamHeaders
            if case .allowed(let quotas) = request.limits { RateLimitMiddleware.stamp(&headers, quotas) }
            let encoding = route.finishing.finishStream(status: .ok, headers: &headers, finishing)
            FastInferenceRoute.stampServer(&headers)
            let sink = PushedStream(
                head: HTTPResponse(status: .ok, headerFields: headers), encoding: encoding, writer: writer, whenSent: whenSent,
                compressor: .makeEmptyBox(valueType: StreamCompressor.self, eventLoop: writer.eventLoop))
            return stream.push(on: writer.eventLoop, to: sink)
        }

        func send(_ response: Response) async {
            var response = await route.finishing.finish(response, finishing)
            FastInferenceRoute.stampServer(&response.headers)
            await writer.send(response)
            whenSent()
        }

        /// The error's response, as the error middleware renders it, written at once (no task needed).
        func fail(_ error: any Error) {
            let bodhiError = ErrorRenderingMiddleware.bodhiError(
                from: error, method: request.method, path: request.operation.rawValue, maxBodyBytes: route.services.maxRequestBodyBytes)
            var (headers, body) = ErrorRenderingMiddleware.rendered(bodhiError, path: request.operation.rawValue)
            headers[.contentLength] = String(body.readableBytes)
            let status = HTTPResponse.Status(code: bodhiError.status)
            // The outer stamps only: an error answer has no rate-limit headers, as on the router's way.
            var outer = HTTPFields()
            route.finishing.stamp(&outer, finishing)
            FastInferenceRoute.stampServer(&outer)
            route.finishing.finishWhole(status: status, headers: &headers, body: &body, stamps: outer, finishing)
            writer.sendWhole(HTTPResponse(status: status, headerFields: headers), body, then: whenSent)
        }
    }

    /// A stream's way to its client from where the engine's reply is read, on the client's event loop.
    private struct PushedStream: StreamEventSink {
        let head: HTTPResponse
        let encoding: ResponseCompression.Encoding?
        let writer: ChannelResponseWriter
        let whenSent: @Sendable () -> Void
        /// Made by `begin`, on the loop.
        let compressor: NIOLoopBoundBox<StreamCompressor?>

        func begin() {
            var head = head
            if let encoding {
                do { compressor.value = try StreamCompressor(encoding) } catch {
                    head.headerFields[.contentEncoding] = nil
                }
            }
            // A client already gone finds out at the first event.
            _ = try? writer.writeNow(.head(head), flush: true)
        }

        func send(_ event: ByteBuffer) throws -> EventLoopFuture<Void>? {
            try writer.writeChunkNow(compressor.value?.compress(event) ?? event)
        }

        func end() {
            if let tail = try? compressor.value?.finish() { _ = try? writer.writeChunkNow(tail) }
            _ = try? writer.writeNow(.end(nil), flush: true)
            whenSent()
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
