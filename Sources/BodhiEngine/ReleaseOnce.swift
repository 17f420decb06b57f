import Synchronization

/// A handle's release, run exactly once: when the holder releases it, or else when the last
/// reference to the handle goes away (leases, admission tickets).
struct ReleaseOnce: ~Copyable, Sendable {
    private let released = Mutex(false)
    private let action: @Sendable () -> Void

    init(_ action: @escaping @Sendable () -> Void) {
        self.action = action
    }

    /// Runs the release unless it has run already.
    func release() {
        let claimed = released.withLock { wasReleased in
            defer { wasReleased = true }
            return !wasReleased
        }
        if claimed { action() }
    }
}
