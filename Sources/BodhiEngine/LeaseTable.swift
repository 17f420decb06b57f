import Synchronization

/// What requests change of each engine — its endpoint once ready, the requests in flight, its
/// last use — under a lock rather than in the supervisor's actor, so that a request takes a lease
/// on a ready engine without waiting for the actor (`lease`).
///
/// The invariant: an engine has an entry here exactly while the supervisor knows it, of the same
/// generation. The supervisor unloads an idle engine only by taking its entry out under the lock
/// (`takeIfIdle`), so that no lease slips in between its check and the unload.
final class LeaseTable: Sendable {
    struct Entry: Sendable {
        let generation: Int
        /// Set once the engine is ready.
        var endpoint: EngineEndpoint?
        var inFlight = 0
        var lastUsed: ContinuousClock.Instant
        /// Its keep-alive is zero: it unloads as soon as its last request ends.
        var unloadsWhenIdle = false
    }

    private let entries = Mutex<[String: Entry]>([:])

    /// The endpoint and generation of `engineID`'s engine, counted as one more request in flight,
    /// if it is ready; nil otherwise.
    func lease(_ engineID: String) -> (endpoint: EngineEndpoint, generation: Int)? {
        entries.withLock { entries in
            guard let endpoint = entries[engineID]?.endpoint else { return nil }
            entries[engineID]!.inFlight += 1
            entries[engineID]!.lastUsed = .now
            return (endpoint, entries[engineID]!.generation)
        }
    }

    /// One request of that generation's engine ended; whether the engine should now unload.
    func release(_ engineID: String, generation: Int) -> Bool {
        entries.withLock { entries in
            guard var entry = entries[engineID], entry.generation == generation else { return false }
            entry.inFlight = max(0, entry.inFlight - 1)
            entry.lastUsed = .now
            entries[engineID] = entry
            return entry.inFlight == 0 && entry.unloadsWhenIdle
        }
    }

    func entry(_ engineID: String) -> Entry? {
        entries.withLock { $0[engineID] }
    }

    /// A new engine (or a restart) for `engineID`, not ready yet; its last use carries over.
    func begin(_ engineID: String, generation: Int) {
        entries.withLock { entries in
            entries[engineID] = Entry(generation: generation, lastUsed: entries[engineID]?.lastUsed ?? .now)
        }
    }

    /// The engine of that generation is ready at `endpoint`.
    func ready(_ engineID: String, generation: Int, at endpoint: EngineEndpoint) {
        entries.withLock { entries in
            guard entries[engineID]?.generation == generation else { return }
            entries[engineID]!.endpoint = endpoint
        }
    }

    /// Claims an engine with no request running, for unloading: from here no request leases it.
    func takeIfIdle(_ engineID: String) -> Bool {
        entries.withLock { entries in
            guard let entry = entries[engineID], entry.inFlight == 0 else { return false }
            entries[engineID] = nil
            return true
        }
    }

    func remove(_ engineID: String) {
        _ = entries.withLock { $0.removeValue(forKey: engineID) }
    }

    func removeAll() {
        entries.withLock { $0.removeAll() }
    }

    /// Sets each listed engine's `unloadsWhenIdle`.
    func setUnloadsWhenIdle(_ values: [String: Bool]) {
        entries.withLock { entries in
            for (engineID, unloads) in values where entries[engineID] != nil { entries[engineID]!.unloadsWhenIdle = unloads }
        }
    }
}
