import Synchronization

/// Lets exactly one caller through: for handles released explicitly or, failing that, when the
/// last reference goes away (leases, admission tickets).
struct ReleaseOnce: ~Copyable, Sendable {
    private let released = Mutex(false)

    /// True for the first caller only.
    func claim() -> Bool {
        released.withLock { wasReleased in
            defer { wasReleased = true }
            return !wasReleased
        }
    }
}
