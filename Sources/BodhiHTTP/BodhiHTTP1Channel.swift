import HummingbirdCore
import Logging
import NIOCore
import NIOHTTP1
import NIOHTTPTypes
import NIOHTTPTypesHTTP1

/// Hummingbird's HTTP/1.1 connection, with Bodhi's handlers in its pipeline: `SocketEnd` first, `ClientHangUpHandler`
/// before Hummingbird's connection state handler (idle timeout, graceful shutdown), and
/// `FastPathHandler` after it, so that the state handler counts the requests the fast path
/// answers as it counts the router's. The pipeline is otherwise the one `HTTP1Channel.setup`
/// builds (with `OriginFormHTTPCodec` for its `HTTP1ToHTTPServerCodec`); requests that reach the end of it are served by `HTTP1Channel` itself.
public struct BodhiHTTP1Channel<Route: FastPathRoute>: ServerChildChannel {
    public typealias Value = NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>

    let http1: HTTP1Channel
    let fastPath: Route
    /// Connections idle this long between requests are closed (a request in progress never is).
    let idleTimeout: Duration

    public init(http1: HTTP1Channel, fastPath: Route, idleTimeout: Duration) {
        self.http1 = http1
        self.fastPath = fastPath
        self.idleTimeout = idleTimeout
    }

    public func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        channel.eventLoop.makeCompletedFuture {
            let pipeline = channel.pipeline.syncOperations
            try pipeline.addHandler(SocketEnd())
            try pipeline.configureHTTPServerPipeline(
                withPipeliningAssistance: false, withErrorHandling: false, withOutboundHeaderValidation: false,
                withEncoderConfiguration: .init(), withDecoderLimitConfiguration: .init())
            try pipeline.addHandler(OriginFormHTTPCodec())
            try pipeline.addHandler(ClientHangUpHandler())
            try pipeline.addHandler(HTTPConnectionStateHandler(idleTimeout: idleTimeout, logger: logger))
            try pipeline.addHandler(FastPathHandler(route: fastPath))
            return try NIOAsyncChannel(wrappingChannelSynchronously: channel, configuration: .init(isOutboundHalfClosureEnabled: true))
        }
    }

    public func handle(value: Value, logger: Logger) async {
        await http1.handle(value: value, logger: logger)
    }
}
