@testable import BodhiEngine
import NIOCore
import NIOPosix
import Synchronization
import Testing

@Suite(.timeLimit(.minutes(2))) struct ClientConnectionTests {
    @Test func watchersHearOfTheHangUpOnceAndEndedOnesNot() async throws {
        let closed = MultiThreadedEventLoopGroup.singleton.next().makePromise(of: Void.self)
        let connection = ClientConnection(closed: closed.futureResult)
        let heard = Mutex<[String]>([])
        let first = connection.onHangUp { heard.withLock { $0.append("first") } }
        let second = connection.onHangUp { heard.withLock { $0.append("second") } }
        second.end()
        closed.succeed()
        try await closed.futureResult.get()
        #expect(heard.withLock { $0 } == ["first"])
        first.end()  // after the fact: nothing happens
        // A watcher that comes after the hang-up hears of it at once.
        _ = connection.onHangUp { heard.withLock { $0.append("late") } }
        #expect(heard.withLock { $0 } == ["first", "late"])
    }

    @Test func everyRequestOnAConnectionSharesOneWatcher() async throws {
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton).bind(host: "127.0.0.1", port: 0).get()
        let connection = ClientConnection.of(server)
        #expect(ClientConnection.of(server) === connection)
        let heard = Mutex(false)
        _ = connection.onHangUp { heard.withLock { $0 = true } }
        try await server.close()
        try await waitUntil { heard.withLock { $0 } }
        // Once closed, the channel is forgotten: a new lookup makes a new watcher.
        try await waitUntil { ClientConnection.of(server) !== connection }
    }
}
