import NIOCore
import Synchronization

/// The client connection a request came on, as inference sees it: something that says when the
/// client hangs up, so that a request waiting in the queue leaves it and one the engine is
/// working on stops. One close callback per connection however many requests it carries: a
/// callback per request on a kept-alive connection would pile up until the connection closes.
public final class ClientConnection: Sendable {
    private struct State {
        var closed = false
        var nextID: UInt64 = 0
        var watchers: [UInt64: @Sendable () -> Void] = [:]
    }

    private let state = Mutex(State())
    /// The event loop the connection lives on: engine requests for it go out on a connection of
    /// the same loop, so that a request and its answer never cross threads inside Bodhi.
    public let eventLoop: any EventLoop
    /// The connections open now, by channel, so that each request on one finds the same watcher.
    private static let open = Mutex<[ObjectIdentifier: ClientConnection]>([:])

    /// Watches `closed` (a channel's close future, so on its loop) for the life of the connection.
    public init(closed: EventLoopFuture<Void>) {
        eventLoop = closed.eventLoop
        closed.whenComplete { [self] _ in hangUp() }
    }

    /// The watcher of `channel`, made on its first request.
    public static func of(_ channel: any Channel) -> ClientConnection {
        let key = ObjectIdentifier(channel)
        let (connection, made) = open.withLock { open in
            if let known = open[key] { return (known, false) }
            let made = ClientConnection(closed: channel.closeFuture)
            open[key] = made
            return (made, true)
        }
        if made { channel.closeFuture.whenComplete { _ in _ = open.withLock { $0.removeValue(forKey: key) } } }
        return connection
    }

    /// Calls `action` once when the client hangs up, unless the returned watch is ended first;
    /// at once when it already has.
    public func onHangUp(_ action: @escaping @Sendable () -> Void) -> HangUpWatch {
        let id: UInt64? = state.withLock { state in
            guard !state.closed else { return nil }
            state.nextID += 1
            state.watchers[state.nextID] = action
            return state.nextID
        }
        guard let id else {
            action()
            return HangUpWatch(connection: nil, id: 0)
        }
        return HangUpWatch(connection: self, id: id)
    }

    fileprivate func end(_ id: UInt64) {
        _ = state.withLock { $0.watchers.removeValue(forKey: id) }
    }

    private func hangUp() {
        let watchers = state.withLock { state in
            state.closed = true
            defer { state.watchers = [:] }
            return Array(state.watchers.values)
        }
        for action in watchers { action() }
    }
}

/// One `onHangUp` registration; `end()` it when the request no longer needs to know.
public struct HangUpWatch: Sendable {
    fileprivate let connection: ClientConnection?
    fileprivate let id: UInt64

    public func end() { connection?.end(id) }
}
