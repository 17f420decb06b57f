import BodhiCore
import BodhiModels
import Foundation
import Logging
import NIOCore
import NIOFoundationCompat
import NIOHTTP1

/// The OpenAI-compatible operations an engine serves, by the path it serves them on.
public enum InferenceOperation: String, Sendable, CaseIterable {
    case chatCompletions = "/v1/chat/completions"
    case completions = "/v1/completions"
    case embeddings = "/v1/embeddings"
    /// Scores documents against a query (Jina's and Cohere's shape, as llama-server serves it).
    case rerank = "/v1/rerank"
    /// llama-server's fill-in-the-middle (native format), for Ollama's `suffix`.
    case infill = "/infill"
    /// llama-server's own tokenizer endpoints, and its chat template applied to messages (to count
    /// a chat's tokens): answered at once, without a generation slot, for local models only.
    case tokenize = "/tokenize"
    case detokenize = "/detokenize"
    case applyTemplate = "/apply-template"

    /// Whether it generates: it may stream, takes a slot, and gets an alias's sampling defaults.
    var generates: Bool { self == .chatCompletions || self == .completions || self == .infill }
    var streams: Bool { generates }
    /// Whether it waits for one of the engine's slots (generating, embedding and reranking do).
    var takesSlot: Bool { generates || pools }
    /// Whether an engine of its own pools each input into a vector or a score.
    var pools: Bool { self == .embeddings || self == .rerank }

    /// A short name, for metric labels.
    public var name: String {
        switch self {
        case .chatCompletions: "chat"
        case .completions: "completions"
        case .embeddings: "embeddings"
        case .rerank: "rerank"
        case .infill: "infill"
        case .tokenize: "tokenize"
        case .detokenize: "detokenize"
        case .applyTemplate: "apply_template"
        }
    }
}

/// The answer to an inference request: a whole body, or a stream of Server-Sent Events.
public enum InferenceResult: Sendable {
    case complete(status: Int, contentType: String, body: ByteBuffer)
    case events(EventStream)
}

/// A stream of SSE events from an engine, delivered whole. Ends with an error event of
/// OpenAI's shape when the engine fails part-way; stops the engine's generation when the
/// receiver stops taking events (a client that went away).
public struct EventStream: Sendable {
    fileprivate let reply: EngineReply
    fileprivate let slot: InferenceSlot
    fileprivate let logger: Logger
    fileprivate let cutoff: StreamCutoff
    /// llama-server's own stream format (no `[DONE]`; the last event says `"stop":true`).
    fileprivate var nativeFormat = false
    /// How Bodhi rewrites the engine's answer (a tool choice it binds, legacy completions' shapes).
    fileprivate var rewrite: (any ReplyRewrite)?
    /// The request it answers, for log lines written while it streams.
    fileprivate let requestID = RequestScope.requestID

    /// Sends each event to `receiver` until the engine finishes or `receiver` throws
    /// (the client went away), which cancels the engine request and so its generation.
    public func forward(to receiver: (ByteBuffer) async throws -> Void) async {
        await RequestScope.$requestID.withValue(requestID) {
            var pump = EventPump(nativeFormat: nativeFormat)
            var rewriter = rewrite?.streamRewriter()
            let body = reply.body
            let registration = cutoff.register { body.cancel() }
            defer { registration.map(cutoff.unregister) }
            var stop: (any Error)?
            do {
                if registration == nil { throw EngineClientError.abandoned }
                for try await chunk in body {
                    for engineEvent in pump.events(in: chunk) {
                        do {
                            if rewriter == nil {
                                try await receiver(engineEvent)
                            } else {
                                for event in rewriter!.rewrite(engineEvent) { try await receiver(event) }
                            }
                        } catch {
                            body.cancel()
                            logger.debug("client went away mid-stream; engine generation stopped", metadata: ["error": "\(error)"])
                            slot.finish(status: 200, timing: pump.timing)
                            return
                        }
                    }
                }
            } catch {
                stop = error
            }
            if let last = closingEvent(pump, stoppedBy: stop) { try? await receiver(last) }
            slot.finish(status: 200, timing: pump.timing)
        }
    }

    /// `forward` without a task, for a local engine's reply: its events go to `sink` on the
    /// event loop where the reply is read, as they are read (and reads wait while the sink's
    /// client is backed up). False, with nothing done, for a reply read anywhere else (a
    /// backend's), or on a loop other than `loop`: `forward` it then.
    ///
    /// Why: moving each event through a task and back cost more than the rest of its way
    /// through Bodhi (docs/PERFORMANCE.md).
    public func push(on loop: any EventLoop, to sink: some StreamEventSink) -> Bool {
        guard canPush(on: loop) else { return false }
        if loop.inEventLoop {
            pushHere(to: sink)
        } else {
            loop.execute { pushHere(to: sink) }
        }
        return true
    }

    /// Whether `push` takes this stream on `loop`.
    public func canPush(on loop: any EventLoop) -> Bool {
        reply.body.pushLoop === loop && rewrite == nil
    }

    private func pushHere(to sink: some StreamEventSink) {
        sink.begin()
        var pump = EventPump(nativeFormat: nativeFormat)
        var clientGone = false
        let body = reply.body
        let registration = cutoff.register { body.cancel() }
        let pushed = body.push { part in
            switch part {
            case .chunk(let chunk):
                guard !clientGone else { return nil }
                var wait: EventLoopFuture<Void>?
                for event in pump.events(in: chunk) {
                    do { wait = try sink.send(event) ?? wait } catch {
                        clientGone = true
                        body.cancel()
                        RequestScope.$requestID.withValue(requestID) {
                            logger.debug("client went away mid-stream; engine generation stopped", metadata: ["error": "\(error)"])
                        }
                        return nil
                    }
                }
                return wait
            case .end(let stop):
                // Log lines from here on carry the request's id (a chunk's way has none to write).
                RequestScope.$requestID.withValue(requestID) {
                    registration.map(cutoff.unregister)
                    if !clientGone, let last = closingEvent(pump, stoppedBy: stop) { _ = try? sink.send(last) }
                    slot.finish(status: 200, timing: pump.timing)
                }
                sink.end()
                return nil
            }
        }
        assert(pushed, "push runs on the reply's own loop")
        // Streams were cut before this one began: its end (abandoned) says so.
        if registration == nil { body.cancel() }
    }

    /// The event that ends a stream that stopped with `stop` (nil: the engine ended it), when its
    /// client is to hear why: Bodhi stopping, or an engine that failed or ended without finishing.
    private func closingEvent(_ pump: EventPump, stoppedBy stop: (any Error)?) -> ByteBuffer? {
        if let stop {
            if stop as? EngineClientError == .abandoned {
                // Bodhi stops: the client hears why its stream ends here.
                if let reason = cutoff.reason { return EventStream.errorEvent(reason) }
                logger.debug("client hung up mid-stream; engine generation stopped")
                return nil
            }
            logger.warning("engine failed mid-stream", metadata: ["model": "\(slot.model)", "error": "\(stop)"])
        }
        if pump.finished { return nil }
        return EventStream.errorEvent(BodhiError(
            .engineFailed, status: 500,
            "The engine for model '\(slot.model)' stopped before finishing the reply; it is being restarted. Retry the request."))
    }

    /// An SSE event carrying `error` in OpenAI's shape, which ends a stream.
    public static func errorEvent(_ error: BodhiError) -> ByteBuffer {
        let body = OpenAIErrorBody(error)
        let json = (try? JSONEncoder().encode(body)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
        return ByteBuffer(string: "data: \(json)\n\n")
    }
}

/// Takes a stream's events where its engine's reply is read (`EventStream.push`), on that event loop.
public protocol StreamEventSink: Sendable {
    /// Before the first event: the response's head goes out.
    func begin()
    /// Sends an event on to the client: nil when it is on its way, or a future to wait for
    /// before more is read (the client is backed up). Throws when the client is gone.
    func send(_ event: ByteBuffer) throws -> EventLoopFuture<Void>?
    /// The stream is over: its last event was sent, and its slot given back.
    func end()
}

/// A stream's events cut from its engine's chunks, each classified and timed as it passes,
/// whichever way they are sent on (`EventStream.forward` or `push`).
struct EventPump {
    private var framer = SSEFramer()
    /// llama-server's own stream format (no `[DONE]`; the last event says `"stop":true`).
    let nativeFormat: Bool
    private(set) var timing = StreamTiming()
    private var sawEnd = false
    private var lastWasError = false

    init(nativeFormat: Bool) {
        self.nativeFormat = nativeFormat
    }

    /// Whether the stream ended as it should: with its end marker, or with an error event.
    var finished: Bool { sawEnd || lastWasError }

    mutating func events(in chunk: ByteBuffer) -> [ByteBuffer] {
        let events = framer.append(chunk)
        for event in events {
            switch SSEFramer.kind(of: event) {
            case .done: sawEnd = true
            case .error: lastWasError = true
            case .other:
                lastWasError = false
                timing.generated(event)
                if nativeFormat, SSEFramer.data(of: event)?.contains(#""stop":true"#) == true { sawEnd = true }
            }
        }
        return events
    }
}

/// When a stream's generated events came, and its last one (which carries the token counts).
struct StreamTiming {
    var first: ContinuousClock.Instant?
    var previous: ContinuousClock.Instant?
    var gaps: [Duration] = []
    var last: ByteBuffer?

    mutating func generated(_ event: ByteBuffer) {
        let now = ContinuousClock.now
        if let previous { gaps.append(now - previous) } else { first = now }
        previous = now
        last = event
    }
}

/// An admitted request's hold on what serves it (a local engine's admission slot and lease, given
/// back together), with the request's record reported to the observers.
struct InferenceSlot: Sendable {
    let model: String
    let backend: String
    let queueWait: Duration
    let release: @Sendable () -> Void
    let operation: InferenceOperation
    let caller: InferenceCaller
    let started: ContinuousClock.Instant
    let observers: [any InferenceObserver]

    func finish(status: Int, body: ByteBuffer? = nil, timing: StreamTiming? = nil) {
        giveBack()
        guard !observers.isEmpty else { return }
        var usage: (prompt: Int?, completion: Int?) = (body ?? timing?.last).map(EngineUsage.read) ?? (prompt: nil, completion: nil)
        // A stream cut short (client gone, engine failed) has no counts at its end: its events are
        // what it generated, one token each, so that limits on tokens still see them.
        if usage.completion == nil, let timing, timing.first != nil { usage.completion = timing.gaps.count + 1 }
        let record = InferenceRecord(
            model: model, backend: backend, operation: operation, caller: caller, status: status, queueWait: queueWait,
            promptTokens: usage.prompt, completionTokens: usage.completion,
            timeToFirstToken: timing?.first.map { $0 - started }, interTokenLatencies: timing?.gaps ?? [])
        for observer in observers { observer.inferenceFinished(record) }
    }

    /// What the request held back, with no record: for a request that is served anew.
    func giveBack() {
        release()
    }
}

/// OpenAI's error JSON: `{"error": {"message", "type", "param", "code"}}`.
public struct OpenAIErrorBody: Codable, Sendable {
    public struct Detail: Codable, Sendable {
        public let message: String
        public let type: String
        public let param: String?
        public let code: String?
    }
    public let error: Detail

    public init(_ error: BodhiError) {
        let type: String
        switch error.status {
        case 400, 404, 405, 413, 415, 422: type = "invalid_request_error"
        case 401: type = "authentication_error"
        case 403: type = "permission_error"
        case 429: type = "rate_limit_error"
        default: type = "server_error"
        }
        self.error = Detail(message: error.message, type: type, param: error.param, code: error.code.rawValue)
    }

    /// An engine's or backend's error answer in OpenAI's shape (llama-server's has a numeric `code`
    /// and no `param`), keeping its message.
    static func normalizing(_ body: ByteBuffer, status: Int) -> ByteBuffer {
        var error = BodhiError.engineAnswered(status, JSONBody.parsed(body) ?? [:])
        if JSONBody.parsed(body) == nil, body.readableBytes > 0 { error = BodhiError(error.code, status: status, String(buffer: body)) }
        return (try? JSONEncoder().encode(OpenAIErrorBody(error))).map { ByteBuffer(bytes: $0) } ?? body
    }
}

/// Routes an OpenAI-style request to the engine of the model it names. Bodies travel as
/// they came: Bodhi reads the fields it acts on (`model`, `stream`) and passes everything
/// else, llama.cpp's extras included, to the engine untouched — unless the name is an alias
/// with request defaults, which fill the fields the request left unset.
public struct InferenceService: Sendable {
    private let models: AliasRegistry
    private let supervisor: EngineSupervisor
    private let engines: EngineClient
    private let logger: Logger
    private let admission: AdmissionQueue
    private let observers: [any InferenceObserver]
    /// This machine's engines.
    private let local: LocalBackend
    /// The servers and cloud APIs that serve `prefix/model` names.
    private let remotes: (any RemoteBackends)?
    /// Router targets' breakers and retry budgets.
    public let breakers: RouterBreakers
    /// The streams being served, which a stop ends once its grace period is over.
    public let streams: StreamCutoff

    /// What an engine's reply without a `Content-Type` is.
    static let defaultContentType = "application/json"

    /// Responses larger than this are refused rather than buffered (non-streaming only).
    public static let maxResponseBytes = 256 * 1024 * 1024

    /// The most one request may generate (`BODHI_MAX_OUTPUT_TOKENS`); nil: up to a slot's
    /// context, where the engine ends the reply.
    let maxOutputTokens: Int?

    public init(
        models: AliasRegistry, supervisor: EngineSupervisor, engines: EngineClient, logger: Logger,
        admission: AdmissionQueue = AdmissionQueue(maxQueue: 512), observers: [any InferenceObserver] = [],
        streams: StreamCutoff = StreamCutoff(), remotes: (any RemoteBackends)? = nil, breakers: RouterBreakers = RouterBreakers(),
        maxOutputTokens: Int? = nil
    ) {
        self.maxOutputTokens = maxOutputTokens
        self.remotes = remotes
        self.breakers = breakers
        local = LocalBackend(supervisor: supervisor, engines: engines, admission: admission)
        self.streams = streams
        self.models = models
        self.supervisor = supervisor
        self.engines = engines
        self.logger = logger
        self.admission = admission
        self.observers = observers
    }

    /// Set around a request translated from another API (Ollama's, Gemini's, ...), to which
    /// OpenAI's own field limits do not apply (temperature to 2, top_p to 1, 4 stop sequences),
    /// nor the legacy completions' shapes (the translation reads the engine's own).
    @TaskLocal public static var translatedFromOtherAPI = false

    static func parseHead(_ body: ByteBuffer, maxOutputTokens: Int? = nil) throws -> RequestHead {
        guard body.readableBytes > 0 else {
            throw BodhiError.invalidRequest("The request body is empty; send a JSON object.")
        }
        let scanned = body.withUnsafeReadableBytes { bytes in
            Result { () throws(RequestHeadScanner.Failure) in
                try RequestHeadScanner.scan(bytes, openAILimits: !InferenceService.translatedFromOtherAPI, maxOutputTokens: maxOutputTokens)
            }
        }
        switch scanned {
        case .success(let head):
            return head
        case .failure(.notAnObject):
            throw BodhiError.invalidRequest("The request body must be a JSON object.")
        case .failure(.wrongType(let field)):
            let expected = field == "stream" ? "a boolean" : "a string"
            throw BodhiError.invalidRequest("'\(field)' must be \(expected).", param: field)
        case .failure(.invalid(let message, let param)):
            throw BodhiError.invalidRequest(message, param: param)
        case .failure(.malformed):
            throw BodhiError.invalidRequest(
                "We could not parse the JSON body of your request. The body must be a valid JSON object.")
        }
    }

    /// Serves one request. `allowedModels` is the caller's allow-list (an API token's), nil
    /// when every model is allowed.
    public func handle(_ operation: InferenceOperation, body: ByteBuffer, allowedModels: [String]? = nil) async throws -> InferenceResult {
        let held = try await handleHoldingSlot(operation, body: body, allowedModels: allowedModels)
        held.release()
        return held.result
    }

    /// An answer whose engine slot is still held: `release()` gives it back and reports the
    /// request to the observers (a stream does both itself when it ends).
    public struct HeldResult: Sendable {
        public let result: InferenceResult
        fileprivate let finish: (@Sendable () -> Void)?
        /// What a refusal's `Retry-After` asked for (a backend's 429 or 503).
        var retryAfterSeconds: Int?

        public func release() { finish?() }
    }

    /// Gets a whole answer (status, content type, body) where the engine's reply is read.
    public typealias WholeAnswerReceiver = @Sendable (_ status: Int, _ contentType: String, _ body: ByteBuffer) -> Void

    /// `handle`, for a caller that sends a whole answer on before it gives the slot back, so
    /// that its client does not wait for the bookkeeping. With `deliverWhole`, an answer that
    /// is not a stream goes there as soon as the engine's reply is read, before this returns,
    /// so that it reaches the client without waiting for a task.
    public func handleHoldingSlot(
        _ operation: InferenceOperation, body: ByteBuffer, allowedModels: [String]? = nil, deliverWhole: WholeAnswerReceiver? = nil
    ) async throws -> HeldResult {
        let started = ContinuousClock.now
        let head = try Self.parseHead(body, maxOutputTokens: maxOutputTokens)
        let served = try await resolve(try Self.modelName(head), allowedBy: allowedModels)
        if case .router(let router) = served.source { return try await route(operation, body: body, through: router) }
        let prepared = try Self.prepare(operation, body: body, head: head, served: served, maxOutputTokens: maxOutputTokens)
        let caller = InferenceCaller.current
        var onWhole: WholeReplyReceiver?
        if !prepared.wantsEvents, prepared.rewrite == nil, prepared.embeddingShape == nil, let deliverWhole {
            onWhole = { status, contentType, body in
                if status >= 400 {
                    deliverWhole(status, Self.defaultContentType, OpenAIErrorBody.normalizing(body, status: status))
                } else {
                    deliverWhole(status, contentType ?? Self.defaultContentType, body)
                }
            }
        }
        let backend = try backend(serving: prepared.served)
        guard operation.takesSlot || backend.name == local.name else {
            throw BodhiError.invalidRequest(
                "'\(prepared.served.name)' is a model of the backend '\(backend.name)'; tokens are counted for this machine's models only.",
                param: "model")
        }
        let exchange: BackendExchange
        do {
            exchange = try await backend.send(BackendRequest(
                operation: operation, body: prepared.body, served: prepared.served, wantsEvents: prepared.wantsEvents, caller: caller,
                onWhole: onWhole, outputLimit: Self.refusedAboveContext(operation, head)))
        } catch let failure as BackendFailure {
            InferenceSlot(
                model: failure.model, backend: backend.name, queueWait: failure.waited, release: {}, operation: operation, caller: caller,
                started: started, observers: observers
            ).finish(status: (failure.underlying as? BodhiError)?.status ?? 503)
            throw engineStopped(failure.model, failure.underlying)
        }
        let slot = InferenceSlot(
            model: exchange.model, backend: backend.name, queueWait: exchange.queueWait, release: exchange.release, operation: operation,
            caller: caller, started: started, observers: observers)
        let reply = exchange.reply
        var contentType = reply.contentType ?? Self.defaultContentType
        if prepared.wantsEvents, reply.status == 200, contentType.hasPrefix("text/event-stream") {
            var stream = EventStream(reply: reply, slot: slot, logger: logger, cutoff: streams, nativeFormat: operation == .infill)
            stream.rewrite = prepared.rewrite
            return HeldResult(result: .events(stream), finish: nil)
        }
        let collected: ByteBuffer
        do {
            collected = try await reply.body.collect(upTo: Self.maxResponseBytes)
        } catch {
            slot.finish(status: 503)
            throw engineStopped(exchange.model, error)
        }
        let status = reply.status
        var answer = status == 200 ? prepared.rewrite.map { $0.whole(collected) } ?? collected : collected
        if status >= 400 {
            answer = OpenAIErrorBody.normalizing(collected, status: status)
            contentType = Self.defaultContentType
        }
        if status == 200, let shape = prepared.embeddingShape {
            do { answer = try shape.shaped(answer) } catch {
                slot.finish(status: 400)
                throw error
            }
        }
        let delivered = answer
        return HeldResult(result: .complete(status: status, contentType: contentType, body: delivered), finish: {
            slot.finish(status: status, body: delivered)
        }, retryAfterSeconds: reply.retryAfterSeconds)
    }

    /// Serves a request for a router model: to its targets in the router's order, each request
    /// body naming the target, moving on when one fails before answering (no connection, a
    /// timeout, 429 or 5xx before the first byte of an answer) as far as breakers and retry
    /// budgets allow. Any other answer, 400s included, is the answer. When every target failed,
    /// the last failure is the answer; when every breaker is open, a 503 says for how long.
    /// The caller's allow-list was checked on the router's name, which is what it grants.
    private func route(_ operation: InferenceOperation, body: ByteBuffer, through router: ModelRouter) async throws -> HeldResult {
        guard var request = try? JSONSerialization.jsonObject(with: Data(buffer: body)) as? [String: Any] else {
            throw BodhiError.invalidRequest("The request body must be a JSON object.")
        }
        let caller = InferenceCaller.current
        let stickyKey = (request["user"] as? String).flatMap { $0.isEmpty ? nil : $0 } ?? caller.limitKey
        let cooldown = Duration.seconds(router.cooldownSeconds)
        var failure: (any Error)?
        var failedResult: HeldResult?
        var previous: String?
        for target in RouterBreakers.order(of: router, stickyKey: stickyKey) {
            guard breakers.admit(target) else { continue }
            if let previous {
                guard breakers.mayRetry(to: target) else {
                    logger.warning("router's retry budget spent; not falling back", metadata: ["router": "\(router.name)", "target": "\(target)"])
                    break
                }
                for observer in observers { observer.routerFellBack(router: router.name, from: previous, to: target) }
            } else {
                breakers.counted(target)
            }
            previous = target
            request["model"] = target
            let targetBody = ByteBuffer(data: try JSONSerialization.data(withJSONObject: request))
            do {
                let held = try await handleHoldingSlot(operation, body: targetBody)
                if case .complete(let status, _, _) = held.result, status == 429 || status >= 500 {
                    // A refusal or failure before any answer: the next target may do better.
                    noteBreaker(target, breakers.failed(target, cooldown: cooldown, retryAfter: held.retryAfterSeconds.map { .seconds($0) }))
                    failedResult?.release()
                    failedResult = held
                    failure = nil
                    continue
                }
                noteBreaker(target, breakers.succeeded(target))
                failedResult?.release()
                ServedBy.current?.record(target)
                return held
            } catch let error as BodhiError where error.status == 429 || error.status >= 500 {
                noteBreaker(target, breakers.failed(target, cooldown: cooldown, retryAfter: error.retryAfterSeconds.map { .seconds($0) }))
                failure = error
                failedResult?.release()
                failedResult = nil
            } catch let error as BodhiError {
                // The target answered, with a refusal that is the caller's to hear (a 400, a 404).
                noteBreaker(target, breakers.succeeded(target))
                failedResult?.release()
                throw error
            } catch {
                breakers.concludedNothing(target)
                failedResult?.release()
                throw error
            }
        }
        if let failedResult {
            ServedBy.current?.record(previous ?? router.name)
            return failedResult
        }
        if let failure { throw failure }
        let wait = router.targets.compactMap { breakers.reopensIn($0) }.min() ?? .seconds(1)
        let seconds = max(1, Int(wait.components.seconds) + (wait.components.attoseconds > 0 ? 1 : 0))
        throw BodhiError.engineUnavailable(
            "Every target of the router '\(router.name)' failed recently and is cooling down; retry in \(seconds) s.", retryAfterSeconds: seconds)
    }

    /// Tells the observers a target's breaker changed.
    private func noteBreaker(_ target: String, _ change: BreakerState?) {
        guard change != nil else { return }
        let state = breakers.state(of: target)
        for observer in observers { observer.breakerChanged(target: target, state: state) }
    }

    /// What serves `served`: this machine's engines, or the backend whose model it is.
    private func backend(serving served: ServedModel) throws -> any InferenceBackend {
        if case .router = served.source { throw BodhiError.internalError("A router reached a backend.") }
        guard let remote = served.remote else { return local }
        guard let backend = remotes?.backend(named: remote.backend) else {
            throw BodhiError.modelNotFound(served.name)
        }
        return backend
    }

    /// A request made ready for its engine, the same way whichever way it is served: the engine that
    /// serves its model, and the body it gets (with the alias's defaults where it left fields unset).
    struct PreparedRequest {
        let served: ServedModel
        let body: ByteBuffer
        let wantsEvents: Bool
        /// How Bodhi rewrites a local engine's answer: a tool choice it binds, legacy completions' shapes.
        var rewrite: (any ReplyRewrite)?
        /// The dimensions and encoding a local engine's embeddings are given here.
        var embeddingShape: EmbeddingShape?
    }

    /// The output limit a local engine refuses when it is more than a slot's context: OpenAI's own
    /// requests only. Anthropic's clients send the model family's maximum `max_tokens` as a matter
    /// of course and Ollama never refuses `num_predict`; their replies end when the context is full.
    static func refusedAboveContext(_ operation: InferenceOperation, _ head: RequestHead) -> RequestHead.OutputLimit? {
        operation.generates && !translatedFromOtherAPI ? head.outputLimit : nil
    }

    /// A 400 when `limit` is more than an engine's context per slot leaves room for.
    static func checkOutputLimit(_ limit: RequestHead.OutputLimit?, on endpoint: EngineEndpoint, model: String) throws {
        guard let limit, let context = endpoint.contextPerSlot, limit.tokens > context else { return }
        throw BodhiError.invalidRequest(
            "\(limit.field) is \(limit.tokens), more than the \(context) tokens of context that '\(model)' has per request (prompt and reply "
                + "together; a reply ends when it is full). Ask for at most \(context), or give the model a larger context (an alias's "
                + "context_size, or fewer slots with BODHI_PARALLEL).", param: limit.field)
    }

    /// The name a request's head gives its model; a 400 when it gives none.
    static func modelName(_ head: RequestHead) throws -> String {
        guard let name = head.model, !name.isEmpty else {
            throw BodhiError.invalidRequest("You must provide a model parameter.", param: "model")
        }
        return name
    }

    /// The steps between resolving a request's model (which `handleHoldingSlot` and `serveNow` each
    /// do their own way: looked up, or answered from what is known now) and admitting it.
    static func prepare(
        _ operation: InferenceOperation, body: ByteBuffer, head: RequestHead, served: ServedModel, maxOutputTokens: Int? = nil
    ) throws -> PreparedRequest {
        if head.readsImages, let entry = served.entry, entry.projector == nil {
            throw BodhiError.invalidRequest(
                "The model '\(served.name)' cannot read images: it has no vision projector (an mmproj GGUF file beside it in its "
                    + "Hugging Face repository, which Bodhi passes to its engine). Send text only, or use a vision model.", param: "messages")
        }
        var prepared = PreparedRequest(
            served: served, body: try served.alias.map { try $0.defaults.applied(to: body, for: operation) } ?? body,
            wantsEvents: operation.streams && head.stream == true)
        // With BODHI_MAX_OUTPUT_TOKENS set, a generation that names no limit gets that one.
        if let maxOutputTokens, operation.generates, !head.limitsOutput, var request = JSONBody.parsed(prepared.body),
           request["max_tokens"] == nil || request["max_tokens"] is NSNull {
            request[operation == .infill ? "n_predict" : "max_tokens"] = maxOutputTokens
            prepared = PreparedRequest(served: served, body: JSONBody.buffer(request), wantsEvents: prepared.wantsEvents)
        }
        // Backends' APIs follow tool choices, dimensions and encodings themselves.
        if operation == .chatCompletions, served.remote == nil, let reasoned = try ReasoningControl.apply(prepared.body) {
            prepared = PreparedRequest(served: served, body: reasoned, wantsEvents: prepared.wantsEvents)
        }
        if operation == .chatCompletions, served.remote == nil, let bound = try ToolChoiceBinding.bind(prepared.body) {
            prepared = PreparedRequest(served: served, body: bound.body, wantsEvents: prepared.wantsEvents, rewrite: bound.binding)
        }
        if operation == .completions, served.remote == nil, !translatedFromOtherAPI, let shaped = try LegacyCompletion.shape(prepared.body) {
            prepared = PreparedRequest(served: served, body: shaped.body, wantsEvents: prepared.wantsEvents, rewrite: shaped.shape)
        }
        if operation == .rerank {
            let taken = try RerankRequest.take(from: prepared.body)
            prepared = PreparedRequest(served: served, body: taken.body, wantsEvents: false, rewrite: taken.rewrite)
        }
        if operation == .embeddings, served.remote == nil {
            let taken = try EmbeddingShape.take(from: prepared.body)
            prepared = PreparedRequest(served: served, body: taken.body, wantsEvents: false, embeddingShape: taken.shape)
        }
        return prepared
    }

    /// The model `name` serves, if the caller's allow-list (nil: everything) has it. The list
    /// may name the model as the request does, by its id, or by the alias it came through. A
    /// name outside the list is refused whether or not it exists, so a token learns nothing
    /// about models it may not use.
    public func resolve(_ name: String, allowedBy allowed: [String]?) async throws -> ServedModel {
        guard let allowed else { return try await models.resolve(name) }
        let refusal = BodhiError(.forbidden, status: 403,
                                 "This API token may not use the model '\(name)'; it may use: \(allowed.joined(separator: ", ")).",
                                 param: "model")
        let served: ServedModel
        do {
            served = try await models.resolve(name)
        } catch {
            // A name the list grants may say it is missing; any other is simply refused.
            if allowed.contains(where: { $0.lowercased() == name.lowercased() }) { throw error }
            throw refusal
        }
        guard Self.allows(allowed, name, served) else { throw refusal }
        return served
    }

    /// Whether an allow-list (nil: everything) has `served`, named as the request did, by its id,
    /// or by the alias it came through.
    private static func allows(_ allowed: [String]?, _ name: String, _ served: ServedModel) -> Bool {
        guard let allowed else { return true }
        let names = Set([name, served.name, served.modelName].map { $0.lowercased() })
        return allowed.contains { names.contains($0.lowercased()) }
    }

    /// How a request that `serveNow` took on ended without an answer.
    public enum Unserved: Sendable {
        /// The engine never read it (a kept-alive connection it had just closed): serve it anew.
        case retry
        /// The error to answer with (or `CancellationError` when the client went away).
        case failed(any Error)
    }

    /// Serves a request that does not stream without a suspension, when nothing needs waiting
    /// for: its model resolved within the last second, a slot free, its engine ready, and a
    /// kept-alive connection to that on the client's event loop, where this runs. The request is
    /// then sent before this returns; the engine's answer goes to `deliver` where its reply is
    /// read, and then the slot is given back. A request (streamed or not) for a model known to be
    /// missing (`AliasRegistry.isMissingNow`) is refused through `unserved` before this returns.
    /// False, with nothing done, when none of that is so, or the request is refused otherwise:
    /// `handleHoldingSlot` then serves it, or says why not.
    ///
    /// Why: on a small machine, the task, the actors and the async exchange this skips cost a
    /// fifth of Bodhi's time on such a request (docs/PERFORMANCE.md).
    public func serveNow(
        _ operation: InferenceOperation, body: ByteBuffer, allowedModels: [String]?, caller: InferenceCaller,
        deliver: @escaping WholeAnswerReceiver, unserved: @escaping @Sendable (Unserved) -> Void
    ) -> Bool {
        let started = ContinuousClock.now
        guard let connection = caller.connection, let head = try? Self.parseHead(body, maxOutputTokens: maxOutputTokens),
              let name = try? Self.modelName(head)
        else { return false }
        guard let served = models.resolveNow(name) else {
            // A name known to be missing is refused now, as `resolve` would refuse it (a caller
            // with an allow-list is left to `resolve`, which words the refusal by the list).
            guard allowedModels == nil, models.isMissingNow(name) else { return false }
            unserved(.failed(BodhiError.modelNotFound(name)))
            return true
        }
        guard Self.allows(allowedModels, name, served),
              let prepared = try? Self.prepare(operation, body: body, head: head, served: served, maxOutputTokens: maxOutputTokens),
              !prepared.wantsEvents,
              prepared.rewrite == nil, !operation.pools,
              let model = EngineTarget(served)
        else { return false }
        let body = prepared.body
        guard let ticket = admission.admitNow(model.id, slots: supervisor.slots(for: model)) else { return false }
        guard let lease = supervisor.leaseNow(model) else {
            ticket.release()
            return false
        }
        // A request its engine's context cannot hold is refused on the task path, which says why.
        if (try? Self.checkOutputLimit(Self.refusedAboveContext(operation, head), on: lease.endpoint, model: served.name)) == nil {
            lease.release()
            ticket.release()
            return false
        }
        let slot = InferenceSlot(
            model: model.id, backend: local.name, queueWait: ticket.waited, release: { lease.release(); ticket.release() },
            operation: operation, caller: caller, started: started, observers: observers)
        // The reply is read outside the caller's scope: its log lines carry the request id again.
        let requestID = RequestScope.requestID
        let sent = engines.postNow(
            operation.rawValue, to: lease.endpoint, body: body, client: connection, wholeUpTo: Self.maxResponseBytes,
            onWhole: { status, contentType, body in
                if status >= 400 {
                    deliver(status, Self.defaultContentType, OpenAIErrorBody.normalizing(body, status: status))
                } else {
                    deliver(status, contentType ?? Self.defaultContentType, body)
                }
                slot.finish(status: status, body: body)
            },
            onFailure: { [self] error in
                if error as? EngineClientError == .connectionClosed(replyStarted: false) {
                    slot.giveBack()
                    unserved(.retry)
                } else {
                    slot.finish(status: 503)
                    unserved(.failed(RequestScope.$requestID.withValue(requestID) { engineStopped(model.id, error) }))
                }
            })
        if !sent { slot.giveBack() }
        return sent
    }

    /// What a failed engine exchange tells the caller: the engine stopped (503), or, when the
    /// caller itself went away and so stopped the exchange, just that.
    private func engineStopped(_ model: String, _ error: any Error) -> any Error {
        if error is CancellationError || error as? EngineClientError == .abandoned || Task.isCancelled {
            logger.debug("client went away before the engine replied; its request was stopped", metadata: ["model": "\(model)"])
            return CancellationError()
        }
        logger.warning("engine request failed", metadata: ["model": "\(model)", "error": "\(error)"])
        // A backend's own refusal or failure, said in its words.
        if let error = error as? BodhiError { return error }
        if (error as? EngineClientError)?.isUnreachable == true {
            return BodhiError.engineUnavailable("The engine for model '\(model)' cannot be reached; retry shortly.", retryAfterSeconds: 1)
        }
        return BodhiError.engineUnavailable(
            "The engine for model '\(model)' stopped while serving the request; it is being restarted. Retry shortly.",
            retryAfterSeconds: 1)
    }
}
