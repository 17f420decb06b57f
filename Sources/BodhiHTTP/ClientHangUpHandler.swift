import NIOCore

/// Closes a connection as soon as its client closes its side of it, as llama-server does: the
/// connection's close then tells a request waiting in the admission queue, or streaming, that
/// nobody is listening any more. (Hummingbird allows half-closed connections, which would leave a
/// gone client's request waiting or generating.) A client that half-closes on purpose and still
/// expects an answer loses it; none of the HTTP clients Bodhi serves does that.
final class ClientHangUpHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = Any

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, event == .inputClosed {
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }
}
