import Synchronization

/// A handle's release, run exactly once: when the holder releases it, or else when the last
/// reference to the handle goes away (leases, admission tickets).
struct ReleaseOnce: ~Copyable, Sendable {
    private let released = Mutex(false)
    private let action: @Sendable () async -> Void

    init(_ action: @escaping @Sendable () async -> Void) {
        self.action = action
    }

    /// Runs the release unless it has run already.
    func release() async {
        guard claim() else { return }
        await action()
    }

    /// For `deinit`: runs the release in a task of its own, unless it has run already.
    func releaseDetached() {
        guard claim() else { return }
        Task { [action] in await action() }
    }

    private func claim() -> Bool {
        released.withLock { wasReleased in
            defer { wasReleased = true }
            return !wasReleased
        }
    }
}
