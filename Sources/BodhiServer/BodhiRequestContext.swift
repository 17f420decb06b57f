import BodhiCore
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
    /// Completes when the client's connection closes (a queued request then gives up its place).
    public let connectionClosed: EventLoopFuture<Void>

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        clientAddress = source.channel.remoteAddress?.ipAddress ?? "unknown"
        connectionClosed = source.channel.closeFuture
    }

    /// The signed-in principal; routes behind a rule that requires one always have it.
    func requirePrincipal() throws -> Principal {
        guard let principal else { throw BodhiError(.unauthorized, status: 401, "Sign in, or send an API token.") }
        return principal
    }
}
