import HTTPTypes
import NIOCore
import NIOHTTP1
import NIOHTTPTypes
import NIOHTTPTypesHTTP1

/// NIO's HTTP/1 parts to and from HTTPTypes' for Hummingbird, as `HTTP1ToHTTPServerCodec` converts
/// them, less one cost: that codec parses every request target with `URLComponents` to find the
/// path of an absolute-form target (`http://host/path`), 3% of Bodhi's CPU on an inference request.
/// A target that starts with `/` (origin form, what clients send to a server) is its own path, as
/// that parse concludes too; only any other target goes through the library's conversion.
final class OriginFormHTTPCodec: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            if Self.expectsContinue(head) {
                // Answered at once: curl waits a second for it before sending a large body.
                context.writeAndFlush(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: .continue))), promise: nil)
            }
            do {
                context.fireChannelRead(wrapInboundOut(.head(try Self.request(head))))
            } catch {
                context.fireErrorCaught(error)
            }
        case .body(let body):
            context.fireChannelRead(wrapInboundOut(.body(body)))
        case .end(let trailers):
            context.fireChannelRead(wrapInboundOut(.end(trailers.map { HTTPFields($0, splitCookie: false) })))
        }
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .head(let response):
            context.write(wrapOutboundOut(.head(HTTPResponseHead(response))), promise: promise)
        case .body(let body):
            context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: promise)
        case .end(let trailers):
            context.write(wrapOutboundOut(.end(trailers.map(HTTPHeaders.init))), promise: promise)
        }
    }

    static func request(_ head: HTTPRequestHead) throws -> HTTPRequest {
        var request: HTTPRequest
        if head.uri.utf8.first == UInt8(ascii: "/") {
            request = HTTPRequest(
                method: try HTTPRequest.Method(head.method), scheme: "http", authority: head.headers["Host"].first, path: head.uri,
                headerFields: HTTPFields(head.headers, splitCookie: false))
        } else {
            request = try HTTPRequest(head, secure: false, splitCookie: false)
        }
        // HTTPTypes' request has no version: an HTTP/1.0 request without keep-alive says so as
        // `Connection: close`, which the connection's state handler then honours.
        if !head.isKeepAlive, request.headerFields[.connection] == nil { request.headerFields[.connection] = "close" }
        return request
    }

    /// HTTP/1.1 only: an HTTP/1.0 client is never sent a 1xx answer (RFC 9110).
    private static func expectsContinue(_ head: HTTPRequestHead) -> Bool {
        (head.version.major, head.version.minor) >= (1, 1) && head.headers["Expect"].contains { $0.lowercased() == "100-continue" }
    }
}
