import BodhiCore
import BodhiModels
import NIOCore

/// The seam between "a request for model X" and whatever serves X: a local engine
/// (`LocalBackend`), another OpenAI-compatible server, or a cloud API (BodhiBackends). Each gets
/// the request in OpenAI's shape, already prepared (the alias's defaults applied), and answers in
/// OpenAI's shape, streams as OpenAI's Server-Sent Events; Bodhi's other APIs translate from and
/// to that shape above the seam.
public protocol InferenceBackend: Sendable {
    /// How metrics and logs name it: `local`, or the backend's name.
    var name: String { get }
    func send(_ request: BackendRequest) async throws -> BackendExchange
}

/// A prepared request for one backend.
public struct BackendRequest: Sendable {
    public let operation: InferenceOperation
    /// OpenAI's shape; `model` is the name the request used.
    public let body: ByteBuffer
    public let served: ServedModel
    /// Whether the caller asked for a stream (and the operation streams).
    public let wantsEvents: Bool
    public let caller: InferenceCaller
    /// Where a whole answer goes as soon as it is read, on the client connection's event loop, if
    /// wanted (local engines only; the others' answers go back the usual way).
    public let onWhole: WholeReplyReceiver?
    /// What the request asks to generate, where a local engine refuses more than its context.
    var outputLimit: RequestHead.OutputLimit?
}

/// A backend's answer, and what the exchange holds (a local engine's slot) until `release`.
public struct BackendExchange: Sendable {
    public let reply: EngineReply
    /// The model's name as metrics count it: the local engine's id, or `prefix/model`.
    public let model: String
    /// How long the request waited for its turn.
    public let queueWait: Duration
    /// Gives back what the exchange held; called once, when the answer has been delivered.
    public let release: @Sendable () -> Void

    public init(reply: EngineReply, model: String, queueWait: Duration = .zero, release: @escaping @Sendable () -> Void = {}) {
        self.reply = reply
        self.model = model
        self.queueWait = queueWait
        self.release = release
    }
}

/// The backends that are not this machine's engines, by name (BodhiBackends keeps them).
public protocol RemoteBackends: Sendable {
    func backend(named name: String) -> (any InferenceBackend)?
}

/// Today's supervised `llama-server` children: a request waits for its turn (`AdmissionQueue`),
/// then for its model's engine (loaded if need be), and is sent again when the engine it went to
/// was gone before it answered.
struct LocalBackend: InferenceBackend {
    let supervisor: EngineSupervisor
    let engines: EngineClient
    let admission: AdmissionQueue

    var name: String { "local" }

    func send(_ request: BackendRequest) async throws -> BackendExchange {
        guard let entry = request.served.entry else { throw BodhiError.internalError("A backend's model reached the local engines.") }
        let served = EngineTarget(request.served, entry: entry)
        // Embeddings and reranking have an engine of their own each (`EngineTarget.role`).
        let model = served.companion(for: request.operation)
        if model.role == .rerank, await supervisor.declares("rerank", model) == false {
            throw BodhiError.invalidRequest(
                "The model '\(request.served.name)' is not a reranker: its GGUF file declares no rank pooling (a reranker such as "
                    + "bge-reranker or jina-reranker does).", param: "model")
        }
        // The engine answers tokenizer requests at once, beside its slots: they never queue for one.
        let ticket = request.operation.takesSlot
            ? try await admission.admit(model.id, slots: supervisor.slots(for: model), caller: request.caller) : nil
        var lease = try await acquire(model, holding: ticket)
        do {
            try InferenceService.checkOutputLimit(request.outputLimit, on: lease.endpoint, model: request.served.name)
        } catch {
            lease.release()
            ticket?.release()
            throw error
        }
        var resends = 0
        var diedWithIt = false
        var body = request.body
        if model.role == .embeddings {
            do {
                body = try await fitEmbeddingInputs(body, model: model, on: lease.endpoint, client: request.caller.connection)
            } catch {
                lease.release()
                ticket?.release()
                throw error
            }
        }
        while true {
            do {
                let reply = try await engines.post(
                    request.operation.rawValue, to: lease.endpoint, body: body, client: request.caller.connection,
                    wholeUpTo: request.wantsEvents ? nil : InferenceService.maxResponseBytes, onWhole: request.onWhole)
                let held = lease
                return BackendExchange(reply: reply, model: model.id, queueWait: ticket?.waited ?? .zero) {
                    held.release()
                    ticket?.release()
                }
            } catch {
                var resend = false
                if resends < Self.maxResends, let failure = error as? EngineClientError, Self.noAnswer(failure) {
                    lease.release()
                    // The supervisor restarts a dead engine now, and `acquire` waits for the new one.
                    let died = await supervisor.engineFailed(lease)
                    // A request that reached no engine is safe to send again. One an engine had when
                    // it died is sent again once only: it may be what kills it.
                    if failure.isUnreachable {
                        resend = true
                    } else if died, !diedWithIt {
                        diedWithIt = true
                        resend = true
                    }
                }
                guard resend else {
                    lease.release()
                    ticket?.release()
                    throw BackendFailure(model: model.id, waited: ticket?.waited ?? .zero, underlying: error)
                }
                resends += 1
                lease = try await acquire(model, holding: ticket)
            }
        }
    }

    /// `body` with inputs fitted to the embeddings engine's context, counted by that engine.
    private func fitEmbeddingInputs(_ body: ByteBuffer, model: EngineTarget, on endpoint: EngineEndpoint, client: ClientConnection?) async throws -> ByteBuffer {
        let context = await supervisor.embeddingContext(model)
        return try await EmbeddingInputs.fit(body, context: context) { text in
            let reply = try await engines.post(
                InferenceOperation.tokenize.rawValue, to: endpoint, body: JSONBody.buffer(["content": text, "add_special": true]),
                client: client, wholeUpTo: InferenceService.maxResponseBytes)
            let answer = JSONBody.parsed(try await reply.body.collect(upTo: InferenceService.maxResponseBytes))
            guard reply.status == 200, let tokens = answer?["tokens"] as? [Int] else {
                throw BodhiError.engineAnswered(reply.status == 200 ? 500 : reply.status, answer ?? [:])
            }
            return tokens
        }
    }

    /// Times a request that got no answer because its engine was gone is sent again, each time to
    /// the model's engine as the supervisor then has it.
    static let maxResends = 3

    /// Whether `failure` ended an exchange before any answer: no connection, or one closed first.
    private static func noAnswer(_ failure: EngineClientError) -> Bool {
        failure.isUnreachable || failure == .connectionClosed(replyStarted: false)
    }

    /// `model`'s engine, loaded if need be, for a request that holds `ticket` (given back when
    /// there is none to be had).
    private func acquire(_ model: EngineTarget, holding ticket: AdmissionTicket?) async throws -> EngineLease {
        do { return try await supervisor.acquire(model) } catch {
            // Those queued behind this request wait for the same load: they hear of its failure now.
            if (error as? BodhiError)?.code == .engineLoadFailed { admission.failWaiting(model.id, with: error) }
            ticket?.release()
            throw error
        }
    }
}

/// An exchange that failed after the request was admitted: counted as a failed request of `model`.
struct BackendFailure: Error {
    let model: String
    let waited: Duration
    let underlying: any Error
}
