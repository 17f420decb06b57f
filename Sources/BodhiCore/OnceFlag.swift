import Synchronization

/// A flag that is set once and then stays set, readable from any thread.
public final class OnceFlag: Sendable {
    private let value = Atomic(false)

    public init() {}

    public var isSet: Bool { value.load(ordering: .acquiring) }

    public func set() { value.store(true, ordering: .releasing) }
}
