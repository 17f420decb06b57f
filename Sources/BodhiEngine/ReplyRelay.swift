import NIOCore

/// A part of a streamed reply's body, as the engine connection's handler reads it.
public enum ReplyPart {
    case chunk(ByteBuffer)
    /// The reply's end: nil when the engine finished it, else why it stopped.
    case end((any Error)?)
}

/// Takes a streamed reply's parts on the engine connection's event loop, as they are read; for a
/// chunk it may return a future to wait for before the connection reads more (its own client is
/// backed up).
public typealias ReplyReceiver = (ReplyPart) -> EventLoopFuture<Void>?

/// A streamed reply's body on its way from the engine connection's handler to its reader: a task
/// (through an async stream), or a receiver called on that connection's event loop, without a
/// task. It keeps what comes before a reader is there, and holds the connection's reads while a
/// receiver waits for its client. Used on its event loop only.
final class ReplyRelay {
    private enum Reader {
        case none
        case task(AsyncThrowingStream<ByteBuffer, any Error>.Continuation)
        case receiver(ReplyReceiver)
    }

    private var reader = Reader.none
    /// Parts that came before a reader.
    private var waiting = CircularBuffer<ByteBuffer>()
    /// How the reply ended, once it did: nil error for its end, else why it stopped.
    private var ending: (any Error)??
    private var over: Bool { ending != nil }
    /// While set, the connection reads nothing more (its reader's client is backed up).
    private(set) var holdsReads = false
    private let resumeReading: @Sendable () -> Void
    private let ended: @Sendable () -> Void
    private let eventLoop: any EventLoop

    /// `resumeReading` asks the connection to read again after a hold; `ended` is called once
    /// the reply has ended or stopped.
    init(eventLoop: any EventLoop, resumeReading: @escaping @Sendable () -> Void, ended: @escaping @Sendable () -> Void) {
        self.eventLoop = eventLoop
        self.resumeReading = resumeReading
        self.ended = ended
    }

    // MARK: The handler's side

    func received(_ chunk: ByteBuffer) {
        switch reader {
        case .none: waiting.append(chunk)
        case .task(let continuation): continuation.yield(chunk)
        case .receiver(let receive): hold(until: receive(.chunk(chunk)))
        }
    }

    /// The reply ended (nil) or stopped (`error`); only the first call counts.
    func finish(_ error: (any Error)?) {
        guard !over else { return }
        ending = .some(error)
        holdsReads = false
        ended()
        switch reader {
        case .none: break
        case .task(let continuation): continuation.finish(throwing: error)
        case .receiver(let receive): _ = receive(.end(error))
        }
        reader = .none
    }

    // MARK: The reader's side

    /// A reader comes once; a second one while the first reads hears only that it is refused.
    private static let secondReader = ChannelError.inappropriateOperationForState

    func attach(_ continuation: AsyncThrowingStream<ByteBuffer, any Error>.Continuation) {
        guard case .none = reader else { return continuation.finish(throwing: Self.secondReader) }
        while let chunk = waiting.popFirst() { continuation.yield(chunk) }
        if let ending {
            continuation.finish(throwing: ending)
        } else {
            reader = .task(continuation)
        }
    }

    func attach(_ receive: @escaping ReplyReceiver) {
        guard case .none = reader else {
            _ = receive(.end(Self.secondReader))
            return
        }
        var wait: EventLoopFuture<Void>?
        while let chunk = waiting.popFirst() { wait = receive(.chunk(chunk)) ?? wait }
        if let ending {
            _ = receive(.end(ending))
        } else {
            reader = .receiver(receive)
            hold(until: wait)
        }
    }

    /// Each hold's number: only the latest one's end resumes reading.
    private var holds: UInt64 = 0

    private func hold(until wait: EventLoopFuture<Void>?) {
        guard let wait, !over else { return }
        holdsReads = true
        holds += 1
        let hold = holds
        let relay = NIOLoopBound(self, eventLoop: eventLoop)
        wait.hop(to: eventLoop).whenComplete { _ in
            let relay = relay.value
            guard relay.holdsReads, relay.holds == hold else { return }
            relay.holdsReads = false
            relay.resumeReading()
        }
    }
}
