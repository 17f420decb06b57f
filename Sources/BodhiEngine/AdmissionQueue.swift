import BodhiCore
import NIOCore
import Synchronization

/// Who an inference request is for, as admission and accounting see it.
public struct InferenceCaller: Sendable {
    /// Requests with the same key share one turn of the round robin: a user, whichever of
    /// their tokens or sessions they come through.
    public var fairnessKey: String
    /// Whom the request's tokens are charged to (a token or a user; see the rate limiter).
    public var limitKey: String
    /// Unlimited callers are served before everyone else.
    public var priority: Bool
    /// The client's connection: when it closes, a request still waiting leaves the queue and one
    /// the engine is working on stops.
    public var connection: ClientConnection?

    public init(fairnessKey: String, limitKey: String, priority: Bool = false, connection: ClientConnection? = nil) {
        self.fairnessKey = fairnessKey
        self.limitKey = limitKey
        self.priority = priority
        self.connection = connection
    }

    /// Set by the HTTP layer for the request being served. A task-local value so that every
    /// API family's translation (OpenAI, Ollama, Anthropic) reaches the queue with its caller
    /// without threading it through each of their services.
    @TaskLocal public static var current = InferenceCaller(fairnessKey: "", limitKey: "")
}

/// Admission to the engines: each model serves at most its slot count of requests at once;
/// the rest wait, taken round-robin across callers (one heavy caller cannot starve the others),
/// priority callers first, up to a bound beyond which requests are refused with 503.
///
/// A lock rather than an actor: a request that finds a free slot takes it without a suspension
/// (`admitNow`), so that the fast path can send it to its engine from the connection's event loop.
public final class AdmissionQueue: Sendable {
    private struct Waiter {
        let id: UInt64
        let continuation: CheckedContinuation<Void, any Error>
    }

    /// FIFO per caller, callers taken in turn.
    private struct RoundRobin {
        var queues: [String: [Waiter]] = [:]
        var turns: [String] = []
        var count = 0

        mutating func append(_ waiter: Waiter, for key: String) {
            if queues[key, default: []].isEmpty { turns.append(key) }
            queues[key, default: []].append(waiter)
            count += 1
        }

        mutating func next() -> Waiter? {
            guard !turns.isEmpty else { return nil }
            let key = turns.removeFirst()
            var queue = queues[key]!
            let waiter = queue.removeFirst()
            if queue.isEmpty { queues[key] = nil } else { queues[key] = queue; turns.append(key) }
            count -= 1
            return waiter
        }

        mutating func remove(_ id: UInt64) -> Waiter? {
            for (key, queue) in queues {
                guard let index = queue.firstIndex(where: { $0.id == id }) else { continue }
                var queue = queue
                let waiter = queue.remove(at: index)
                if queue.isEmpty {
                    queues[key] = nil
                    turns.removeAll { $0 == key }
                } else {
                    queues[key] = queue
                }
                count -= 1
                return waiter
            }
            return nil
        }
    }

    private struct Lane {
        var slots: Int
        var inFlight: Set<UInt64> = []
        var priority = RoundRobin()
        var normal = RoundRobin()
        var waiting: Int { priority.count + normal.count }

        /// Takes a free slot for `id` when one is free and nobody waits for it.
        mutating func admitNow(_ id: UInt64, slots: Int) -> Bool {
            self.slots = slots
            guard inFlight.count < slots, waiting == 0 else { return false }
            inFlight.insert(id)
            return true
        }

        /// A waiting request, taken out of its queue.
        mutating func leave(_ id: UInt64) -> Waiter? {
            priority.remove(id) ?? normal.remove(id)
        }

        /// Every waiting request, taken out of the queues.
        mutating func leaveAll() -> [Waiter] {
            var all: [Waiter] = []
            while let waiter = priority.next() ?? normal.next() { all.append(waiter) }
            return all
        }

        /// Gives back `id`'s slot; returns the waiters that now take the free slots.
        mutating func release(_ id: UInt64) -> [Waiter] {
            guard inFlight.remove(id) != nil else { return [] }
            var admitted: [Waiter] = []
            while inFlight.count < slots, let waiter = priority.next() ?? normal.next() {
                inFlight.insert(waiter.id)
                admitted.append(waiter)
            }
            return admitted
        }
    }

    public struct Depth: Sendable, Equatable {
        public let model: String
        public let inFlight: Int
        public let waiting: Int
    }

    private struct State {
        /// Per model, kept once made (a handful): lanes are changed in place, so that a request that
        /// finds a free slot costs no copy of the lane's sets and queues, nor a new lane.
        var lanes: [String: Lane] = [:]
        var nextID: UInt64 = 1
        /// Requests that went away before they had joined their queue.
        var departed: Set<UInt64> = []

        mutating func makeID() -> UInt64 {
            defer { nextID += 1 }
            return nextID
        }
    }

    private let state = Mutex(State())
    private let maxQueue: Atomic<Int>
    private let totalWaiting = Atomic<Int>(0)
    private let observer: (any InferenceObserver)?

    public init(maxQueue: Int, observer: (any InferenceObserver)? = nil) {
        self.maxQueue = Atomic(maxQueue)
        self.observer = observer
    }

    /// How full the queues are, from 0 (nobody waits) to 1 (a queue is at its bound); read by the
    /// rate limiter on every request.
    public var pressure: Double {
        let bound = maxQueue.load(ordering: .relaxed)
        guard bound > 0 else { return 0 }
        return min(1, Double(totalWaiting.load(ordering: .relaxed)) / Double(bound))
    }

    public func setMaxQueue(_ bound: Int) {
        maxQueue.store(bound, ordering: .relaxed)
    }

    /// One of `model`'s `slots` if one is free and nobody waits for it; nil otherwise.
    public func admitNow(_ model: String, slots: Int) -> AdmissionTicket? {
        let id: UInt64? = state.withLock { state in
            let id = state.makeID()
            return state.lanes[model, default: Lane(slots: slots)].admitNow(id, slots: slots) ? id : nil
        }
        return id.map { AdmissionTicket(queue: self, model: model, id: $0, waited: .zero) }
    }

    /// Waits for one of `model`'s `slots`; the returned ticket gives it back when released
    /// or dropped.
    public func admit(_ model: String, slots: Int, caller: InferenceCaller) async throws -> AdmissionTicket {
        let started = ContinuousClock.now
        let bound = maxQueue.load(ordering: .relaxed)
        enum Turn { case now, wait, full(waiting: Int) }
        let (id, turn) = state.withLock { state -> (UInt64, Turn) in
            let id = state.makeID()
            if state.lanes[model, default: Lane(slots: slots)].admitNow(id, slots: slots) { return (id, .now) }
            let waiting = state.lanes[model]?.waiting ?? 0
            return (id, waiting < bound ? .wait : .full(waiting: waiting))
        }
        switch turn {
        case .now:
            return AdmissionTicket(queue: self, model: model, id: id, waited: .zero)
        case .full(let waiting):
            observer?.queueRejected(model: model)
            throw BodhiError.engineUnavailable(
                "The model '\(model)' is busy: \(waiting) requests are already waiting for it (BODHI_MAX_QUEUE is \(bound)). Retry shortly.",
                retryAfterSeconds: 2)
        case .wait:
            break
        }
        // A client that hangs up, or a caller cancelled, leaves the queue (or, when that comes
        // before it joined, keeps it from joining).
        let hangUp = caller.connection?.onHangUp { [self] in leave(model, id: id) }
        defer { hangUp?.end() }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let joined = state.withLock { state in
                    guard !Task.isCancelled, state.departed.remove(id) == nil else { return false }
                    let waiter = Waiter(id: id, continuation: continuation)
                    if caller.priority {
                        state.lanes[model, default: Lane(slots: slots)].priority.append(waiter, for: caller.fairnessKey)
                    } else {
                        state.lanes[model, default: Lane(slots: slots)].normal.append(waiter, for: caller.fairnessKey)
                    }
                    return true
                }
                if joined { totalWaiting.add(1, ordering: .relaxed) } else { continuation.resume(throwing: CancellationError()) }
            }
        } onCancel: {
            leave(model, id: id)
        }
        return AdmissionTicket(queue: self, model: model, id: id, waited: .now - started)
    }

    /// A waiting request that went away (cancelled, or its client disconnected).
    private func leave(_ model: String, id: UInt64) {
        let waiter = state.withLock { state -> Waiter? in
            if let waiter = state.lanes[model]?.leave(id) { return waiter }
            // Not (yet) in the queue: remembered, unless it was admitted already.
            if state.lanes[model]?.inFlight.contains(id) != true { state.departed.insert(id) }
            return nil
        }
        guard let waiter else { return }
        totalWaiting.subtract(1, ordering: .relaxed)
        waiter.continuation.resume(throwing: CancellationError())
    }

    /// Ends the wait of every request queued for `model` with `error`: the load they wait for
    /// failed, and each of them would only try it again.
    public func failWaiting(_ model: String, with error: any Error) {
        let waiters = state.withLock { $0.lanes[model]?.leaveAll() ?? [] }
        guard !waiters.isEmpty else { return }
        totalWaiting.subtract(waiters.count, ordering: .relaxed)
        for waiter in waiters { waiter.continuation.resume(throwing: error) }
    }

    func release(_ model: String, id: UInt64) {
        let admitted = state.withLock { state in
            state.departed.remove(id)
            return state.lanes[model]?.release(id) ?? []
        }
        for waiter in admitted {
            totalWaiting.subtract(1, ordering: .relaxed)
            waiter.continuation.resume()
        }
    }

    /// Requests in flight and waiting, per model with either.
    public func depths() -> [Depth] {
        state.withLock { state in
            state.lanes.filter { !$0.value.inFlight.isEmpty || $0.value.waiting > 0 }.sorted { $0.key < $1.key }
                .map { Depth(model: $0.key, inFlight: $0.value.inFlight.count, waiting: $0.value.waiting) }
        }
    }
}

/// One admitted request's slot. Released exactly once: explicitly, or when dropped.
public final class AdmissionTicket: Sendable {
    /// How long the request waited for its slot.
    public let waited: Duration
    private let once: ReleaseOnce

    init(queue: AdmissionQueue, model: String, id: UInt64, waited: Duration) {
        self.waited = waited
        once = ReleaseOnce { queue.release(model, id: id) }
    }

    public func release() {
        once.release()
    }

    deinit {
        once.release()
    }
}
