import BodhiCore
@testable import BodhiEngine
import Foundation
import NIOCore
import NIOPosix
import Synchronization
import Testing

@Suite(.timeLimit(.minutes(2))) struct AdmissionQueueTests {
    static func caller(_ key: String, priority: Bool = false, closed: EventLoopFuture<Void>? = nil) -> InferenceCaller {
        InferenceCaller(fairnessKey: key, limitKey: key, priority: priority, connection: closed.map(ClientConnection.init(closed:)))
    }

    /// Starts a request that records its caller's name when admitted, then holds its slot until released.
    final class Recorder: Sendable {
        let order = Mutex<[String]>([])
        func append(_ name: String) { order.withLock { $0.append(name) } }
        var names: [String] { order.withLock { $0 } }
    }

    /// Waits until `queue` has `waiting` requests queued for `model`.
    static func waitFor(_ queue: AdmissionQueue, model: String = "m", waiting: Int) async throws {
        for _ in 0..<2000 {
            if queue.depths().first(where: { $0.model == model })?.waiting ?? 0 == waiting { return }
            try await Task.sleep(for: .milliseconds(1))
        }
        Issue.record("never saw \(waiting) waiting")
    }

    @Test func noMoreThanTheSlotsRunAndTheRestWait() async throws {
        let queue = AdmissionQueue(maxQueue: 10)
        let first = try await queue.admit("m", slots: 2, caller: Self.caller("a"))
        let second = try await queue.admit("m", slots: 2, caller: Self.caller("a"))
        let third = Task { try await queue.admit("m", slots: 2, caller: Self.caller("b")) }
        try await Self.waitFor(queue, waiting: 1)
        #expect(queue.depths() == [.init(model: "m", inFlight: 2, waiting: 1)])
        first.release()
        let admitted = try await third.value
        #expect(queue.depths() == [.init(model: "m", inFlight: 2, waiting: 0)])
        second.release()
        admitted.release()
        #expect(queue.depths().isEmpty)
    }

    @Test func waitingCallersAreServedInTurnSoAHeavyOneCannotStarveALightOne() async throws {
        let queue = AdmissionQueue(maxQueue: 100)
        let recorder = Recorder()
        let holder = try await queue.admit("m", slots: 1, caller: Self.caller("heavy"))
        var tasks: [Task<Void, any Error>] = []
        for index in 0..<5 {
            tasks.append(Task {
                let ticket = try await queue.admit("m", slots: 1, caller: Self.caller("heavy"))
                recorder.append("heavy\(index)")
                ticket.release()
            })
            try await Self.waitFor(queue, waiting: index + 1)
        }
        tasks.append(Task {
            let ticket = try await queue.admit("m", slots: 1, caller: Self.caller("light"))
            recorder.append("light")
            ticket.release()
        })
        try await Self.waitFor(queue, waiting: 6)
        holder.release()
        for task in tasks { try await task.value }
        // The light caller arrived last but waits for one heavy request, not five.
        #expect(recorder.names.firstIndex(of: "light") == 1, "\(recorder.names)")
    }

    @Test func priorityCallersGoFirst() async throws {
        let queue = AdmissionQueue(maxQueue: 100)
        let recorder = Recorder()
        let holder = try await queue.admit("m", slots: 1, caller: Self.caller("a"))
        let normal = Task {
            let ticket = try await queue.admit("m", slots: 1, caller: Self.caller("a"))
            recorder.append("normal")
            ticket.release()
        }
        try await Self.waitFor(queue, waiting: 1)
        let premium = Task {
            let ticket = try await queue.admit("m", slots: 1, caller: Self.caller("vip", priority: true))
            recorder.append("premium")
            ticket.release()
        }
        try await Self.waitFor(queue, waiting: 2)
        holder.release()
        try await normal.value
        try await premium.value
        #expect(recorder.names == ["premium", "normal"])
    }

    @Test func aFullQueueRefusesWith503AndRetryAfter() async throws {
        let observed = RejectionCounter()
        let queue = AdmissionQueue(maxQueue: 1, observer: observed)
        let holder = try await queue.admit("m", slots: 1, caller: Self.caller("a"))
        let waiting = Task { try await queue.admit("m", slots: 1, caller: Self.caller("b")) }
        try await Self.waitFor(queue, waiting: 1)
        #expect(queue.pressure == 1)
        await #expect(throws: BodhiError.self) { _ = try await queue.admit("m", slots: 1, caller: Self.caller("c")) }
        do {
            _ = try await queue.admit("m", slots: 1, caller: Self.caller("c"))
        } catch let error as BodhiError {
            #expect(error.status == 503)
            #expect(error.retryAfterSeconds != nil)
            #expect(error.message.contains("BODHI_MAX_QUEUE"))
        }
        #expect(observed.count.withLock { $0 } == 2)
        holder.release()
        (try await waiting.value).release()
    }

    @Test func aCancelledWaiterLeavesTheQueueAtOnce() async throws {
        let queue = AdmissionQueue(maxQueue: 10)
        let holder = try await queue.admit("m", slots: 1, caller: Self.caller("a"))
        let waiting = Task { try await queue.admit("m", slots: 1, caller: Self.caller("b")) }
        try await Self.waitFor(queue, waiting: 1)
        waiting.cancel()
        await #expect(throws: CancellationError.self) { _ = try await waiting.value }
        #expect(queue.depths() == [.init(model: "m", inFlight: 1, waiting: 0)])
        holder.release()
    }

    @Test func aWaiterWhoseClientHangsUpLeavesTheQueue() async throws {
        let queue = AdmissionQueue(maxQueue: 10)
        let closed = MultiThreadedEventLoopGroup.singleton.next().makePromise(of: Void.self)
        let holder = try await queue.admit("m", slots: 1, caller: Self.caller("a"))
        let waiting = Task { try await queue.admit("m", slots: 1, caller: Self.caller("b", closed: closed.futureResult)) }
        try await Self.waitFor(queue, waiting: 1)
        closed.succeed()
        await #expect(throws: CancellationError.self) { _ = try await waiting.value }
        #expect(queue.depths() == [.init(model: "m", inFlight: 1, waiting: 0)])
        holder.release()
    }

    @Test func aFreeSlotIsTakenAtOnceUnlessOthersWaitForIt() async throws {
        let queue = AdmissionQueue(maxQueue: 10)
        let first = try #require(queue.admitNow("m", slots: 2))
        let second = try #require(queue.admitNow("m", slots: 2))
        #expect(queue.admitNow("m", slots: 2) == nil)
        let waiting = Task { try await queue.admit("m", slots: 2, caller: Self.caller("b")) }
        try await Self.waitFor(queue, waiting: 1)
        first.release()
        let admitted = try await waiting.value
        second.release()
        // The waiter took the first slot given back; the second one is free for whoever asks.
        let third = try #require(queue.admitNow("m", slots: 2))
        #expect(queue.depths() == [.init(model: "m", inFlight: 2, waiting: 0)])
        admitted.release()
        third.release()
        #expect(queue.depths().isEmpty)
    }

    @Test func aFreeSlotIsNotTakenAtOnceWhileSomeoneWaits() async throws {
        let queue = AdmissionQueue(maxQueue: 10)
        let holder = try #require(queue.admitNow("m", slots: 1))
        let waiting = Task { try await queue.admit("m", slots: 1, caller: Self.caller("b")) }
        try await Self.waitFor(queue, waiting: 1)
        // The slot the holder gives back goes to the waiter, not to whoever asks next.
        holder.release()
        #expect(queue.admitNow("m", slots: 1) == nil)
        (try await waiting.value).release()
        #expect(queue.admitNow("m", slots: 1) != nil)
    }

    @Test func aDroppedTicketGivesItsSlotBack() async throws {
        let queue = AdmissionQueue(maxQueue: 10)
        do { _ = try await queue.admit("m", slots: 1, caller: Self.caller("a")) }
        for _ in 0..<1000 where !queue.depths().isEmpty { try await Task.sleep(for: .milliseconds(1)) }
        #expect(queue.depths().isEmpty)
        // The one slot is free for the next caller, at once.
        let next = try #require(queue.admitNow("m", slots: 1))
        next.release()
    }

    @Test func aFailedLoadEndsTheWaitOfEveryoneQueuedForThatModelOnly() async throws {
        let queue = AdmissionQueue(maxQueue: 10)
        let holder = try await queue.admit("m", slots: 1, caller: Self.caller("a"))
        let other = try await queue.admit("n", slots: 1, caller: Self.caller("a"))
        let waiters = (0..<3).map { index in Task { try await queue.admit("m", slots: 1, caller: Self.caller("w\(index)")) } }
        let otherWaiter = Task { try await queue.admit("n", slots: 1, caller: Self.caller("x")) }
        try await Self.waitFor(queue, waiting: 3)
        try await Self.waitFor(queue, model: "n", waiting: 1)
        let failure = BodhiError.engineLoadFailed(model: "m", reason: "no room")
        queue.failWaiting("m", with: failure)
        for waiter in waiters {
            // do/catch rather than `await #expect(throws:)`, which crashed with Swift 6.3.1.
            do {
                (try await waiter.value).release()
                Issue.record("a waiter was admitted after the load failed")
            } catch {
                #expect(error as? BodhiError == failure)
            }
        }
        #expect(queue.depths() == [.init(model: "m", inFlight: 1, waiting: 0), .init(model: "n", inFlight: 1, waiting: 1)])
        #expect(queue.pressure == 0.1)
        holder.release()
        other.release()
        (try await otherWaiter.value).release()
        #expect(queue.depths().isEmpty && queue.pressure == 0)
    }

    final class RejectionCounter: InferenceObserver {
        let count = Mutex(0)
        func inferenceFinished(_ record: InferenceRecord) {}
        func queueRejected(model: String) { count.withLock { $0 += 1 } }
    }
}

@Suite(.timeLimit(.minutes(2))) struct EngineUsageTests {
    @Test func countsComeFromUsageOrElseFromTimings() {
        let chat = ByteBuffer(string: #"{"choices":[{"message":{"content":"the \"usage\" is {odd}"}}],"usage":{"completion_tokens":7,"prompt_tokens":30,"total_tokens":37},"timings":{"cache_n":0,"prompt_n":30,"predicted_n":7}}"#)
        #expect(EngineUsage.read(chat) == (30, 7))
        let lastStreamEvent = ByteBuffer(string: "data: {\"choices\":[{\"finish_reason\":\"stop\",\"delta\":{}}],\"timings\":{\"cache_n\":12,\"prompt_n\":3,\"predicted_n\":128,\"predicted_ms\":900.5}}\n\n")
        #expect(EngineUsage.read(lastStreamEvent) == (15, 128))
        let embeddings = ByteBuffer(string: #"{"data":[{"embedding":[0.1,0.2]}],"usage":{"prompt_tokens":4,"total_tokens":4}}"#)
        #expect(EngineUsage.read(embeddings) == (4, nil))
        #expect(EngineUsage.read(ByteBuffer(string: #"{"error":{"message":"x"}}"#)) == (nil, nil))
    }
}
