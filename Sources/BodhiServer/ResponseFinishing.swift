import BodhiCore
import BodhiEngine
import HTTPTypes
import Hummingbird
import NIOCore

/// The steps every response takes on its way out, in this order, whichever way it was served:
/// the router's `FinishingMiddleware` and the fast path (`FastInferenceRoute`) both call these,
/// so the order is written here only.
///
/// 1. compression, when the request accepts it and the body is worth it (`ResponseCompression`);
/// 2. the request counted and timed, by route pattern (`BodhiMetrics.recordRequest`);
/// 3. the outer stamps: API version, request id and a deprecated route's retirement
///    (`APIVersioning.stamp`), and the target a router model sent the request to.
///
/// Rate-limit headers come before all of these, where the limiter decided (`RateLimitMiddleware.stamp`).
struct ResponseFinishing: Sendable {
    let metrics: BodhiMetrics

    /// What the steps need to know of the request.
    struct Exchange: Sendable {
        let method: HTTPRequest.Method
        /// The route's pattern, for the metrics and the stamps.
        let route: String
        let acceptEncoding: String?
        let requestID: String
        let started: ContinuousClock.Instant
        let servedBy: ServedBy?
        /// Served by the fast path rather than the router (counted apart, so that operators and
        /// tests see which way requests go).
        var fastPath = false
    }

    func finish(_ response: Response, _ exchange: Exchange) async -> Response {
        // Compression that fails leaves the response as it is.
        var response = (try? await ResponseCompression.compress(response, accepting: exchange.acceptEncoding, method: exchange.method)) ?? response
        record(Int(response.status.code), exchange)
        stamp(&response.headers, exchange)
        return response
    }

    /// `finish` for a whole answer written without a task (the fast path's, from where the
    /// engine's reply is read); `stamps` are the outer stamps made beforehand (`stamp`).
    func finishWhole(status: HTTPResponse.Status, headers: inout HTTPFields, body: inout ByteBuffer, stamps: HTTPFields, _ exchange: Exchange) {
        // A body too small to compress skips the header lookups that would come to that.
        if body.readableBytes >= ResponseCompression.minimumBytes,
           let encoding = ResponseCompression.encoding(for: status, headers, accepting: exchange.acceptEncoding, method: exchange.method),
           let compressed = try? ResponseCompression.compressWhole(body, &headers, encoding: encoding) {
            body = compressed
        }
        record(Int(status.code), exchange)
        headers.append(contentsOf: stamps)
    }

    /// `finish` for a stream the fast path sends itself (`EventStream.push`): its head's headers,
    /// and how its events are to be compressed (nil: not at all).
    func finishStream(status: HTTPResponse.Status, headers: inout HTTPFields, _ exchange: Exchange) -> ResponseCompression.Encoding? {
        let encoding = ResponseCompression.encoding(for: status, headers, accepting: exchange.acceptEncoding, method: exchange.method)
        if let encoding { ResponseCompression.labelStream(&headers, encoding) }
        record(Int(status.code), exchange)
        stamp(&headers, exchange)
        return encoding
    }

    /// A request whose handling threw (what the error middleware did not turn into a response).
    func failed(status: Int, _ exchange: Exchange) {
        record(status, exchange)
    }

    func record(_ status: Int, _ exchange: Exchange) {
        metrics.recordRequest(method: exchange.method.rawValue, route: exchange.route, status: status, duration: .now - exchange.started)
        if exchange.fastPath {
            metrics.makeCounter(
                name: "bodhi_fast_path_requests_total", labels: [("route", exchange.route)],
                help: "Requests the fast path served, without the router (they count in bodhi_http_requests_total too).").increment()
        }
    }

    func stamp(_ headers: inout HTTPFields, _ exchange: Exchange) {
        if let target = exchange.servedBy?.value { headers[APIVersioning.servedByHeader] = target }
        APIVersioning.stamp(&headers, requestID: exchange.requestID, method: exchange.method, path: exchange.route)
    }
}

/// The router's side of `ResponseFinishing`: the outermost middleware. It gives the request its
/// id (logged with everything the request does) and, for a POST, a `ServedBy` for a router model
/// to fill.
struct FinishingMiddleware: RouterMiddleware {
    typealias Context = BodhiRequestContext
    let finishing: ResponseFinishing

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let exchange = ResponseFinishing.Exchange(
            method: request.method, route: context.endpointPath ?? "unmatched", acceptEncoding: request.headers[.acceptEncoding],
            requestID: APIVersioning.requestID(sentByClient: request.headers[APIVersioning.requestIDHeader]),
            started: .now, servedBy: request.method == .post ? ServedBy() : nil)
        var context = context
        context.logger[metadataKey: "request_id"] = .string(exchange.requestID)
        let response: Response
        do {
            response = try await RequestScope.$requestID.withValue(exchange.requestID) {
                try await ServedBy.$current.withValue(exchange.servedBy) { try await next(request, context) }
            }
        } catch {
            let status = (error as? BodhiError)?.status ?? (error as? any HTTPResponseError).map { Int($0.status.code) } ?? 500
            finishing.failed(status: status, exchange)
            throw error
        }
        return await finishing.finish(response, exchange)
    }
}
