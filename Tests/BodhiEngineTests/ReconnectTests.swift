import AsyncHTTPClient
@testable import BodhiEngine
import NIOCore
import NIOPosix
import Synchronization
import Testing

/// A loopback HTTP server that hangs up on its first request without answering, as an engine
/// does when its keep-alive timeout fires just as a request arrives, and answers the rest.
final class HangUpOnceServer: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let requests = Mutex(0)

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        guard String(buffer: buffer).contains("\r\n\r\n") else { return }
        let count = requests.withLock { count in
            count += 1
            return count
        }
        if count == 1 {
            context.close(promise: nil)
        } else {
            let reply = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"
            context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: reply)), promise: nil)
        }
    }
}

@Suite struct ReconnectTests {
    @Test func aRequestMetByAClosingConnectionIsSentOnceMore() async throws {
        let handler = HangUpOnceServer()
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { channel in channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(handler) } }
            .bind(host: "127.0.0.1", port: 0).get()
        defer { server.close(promise: nil) }
        let port = try #require(server.localAddress?.port)

        var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)/v1/chat/completions")
        request.method = .POST
        request.body = .bytes(ByteBuffer(string: "{}"))
        let response = try await InferenceService.execute(request, on: .shared)
        #expect(response.status == .ok)
        #expect(String(buffer: try await response.body.collect(upTo: 1024)) == "ok")
        #expect(handler.requests.withLock { $0 } == 2)
    }

    @Test func onlyConnectionsTheEngineClosedAreRetried() {
        #expect(InferenceService.isStaleConnection(HTTPClientError.remoteConnectionClosed))
        #expect(InferenceService.isStaleConnection(ChannelError.ioOnClosedChannel))
        #expect(InferenceService.isStaleConnection(IOError(errnoCode: ECONNRESET, reason: "read")))
        #expect(InferenceService.isStaleConnection(IOError(errnoCode: EPIPE, reason: "write")))
        // A dead engine refuses connections: that is a 503, not something to resend.
        #expect(!InferenceService.isStaleConnection(IOError(errnoCode: ECONNREFUSED, reason: "connect")))
        #expect(!InferenceService.isStaleConnection(HTTPClientError.deadlineExceeded))
    }
}
