import BodhiCore
import Synchronization

/// The streams being served, so that a stop can end the ones still running when its grace period
/// is over with an error event in their API's format, rather than cut them without a word.
public final class StreamCutoff: Sendable {
    private struct State {
        var nextID: UInt64 = 0
        var running: [UInt64: @Sendable () -> Void] = [:]
        /// Set once the streams are cut: why, for each stream's last event.
        var reason: BodhiError?
    }

    private let state = Mutex(State())

    public init() {}

    /// Registers a stream that `stop` ends; nil, with nothing registered, once streams are cut
    /// (the stream is then ended at once).
    func register(_ stop: @escaping @Sendable () -> Void) -> UInt64? {
        state.withLock { state in
            guard state.reason == nil else { return nil }
            state.nextID += 1
            state.running[state.nextID] = stop
            return state.nextID
        }
    }

    func unregister(_ id: UInt64) {
        _ = state.withLock { $0.running.removeValue(forKey: id) }
    }

    /// Why streams were cut, once they were.
    var reason: BodhiError? {
        state.withLock { $0.reason }
    }

    /// Ends every running stream, and any that starts from now on, with `reason` as its last event.
    public func cutAll(_ reason: BodhiError) {
        let stops = state.withLock { state in
            state.reason = reason
            defer { state.running = [:] }
            return Array(state.running.values)
        }
        for stop in stops { stop() }
    }

    /// How many streams are running.
    public var count: Int {
        state.withLock { $0.running.count }
    }
}
