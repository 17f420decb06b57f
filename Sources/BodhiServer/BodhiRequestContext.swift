import BodhiCore
import BodhiEngine
import BodhiIdentity
import Hummingbird
import NIOCore

/// Hummingbird's request context plus who is asking.
public struct BodhiRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    /// Set by `AccessMiddleware` on routes that require sign-in.
    public var principal: Principal?
    /// The peer's address, for sign-in throttling.
    public let clientAddress: String
    private let channel: any Channel

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        clientAddress = source.channel.remoteAddress?.ipAddress ?? "unknown"
        channel = source.channel
    }

    /// The client's connection, which says when it closes (a queued request then gives up its
    /// place, and the engine stops working on a request of a client that left). Looked up only
    /// by the inference routes that need it, not on every request.
    public var connection: ClientConnection { ClientConnection.of(channel) }

    /// The signed-in principal; routes behind a rule that requires one always have it.
    func requirePrincipal() throws -> Principal {
        guard let principal else { throw BodhiError(.unauthorized, status: 401, "Sign in, or send an API token.") }
        return principal
    }
}
