import BodhiChats
import BodhiCore
import BodhiEngine
import Foundation
import NIOCore

/// OpenAI's Responses API (`/v1/responses`) on Bodhi's models. A request's items (and, with
/// `previous_response_id`, the stored conversation before it) become a chat completion; its
/// answer comes back as output items, whole or as the Responses stream of events. Responses made
/// with `store` (the default, as OpenAI's) are kept per user to be read, listed, continued and
/// deleted; `store: false` keeps nothing.
public struct ResponsesService: Sendable {
    let inference: InferenceService
    let repository: any ResponseRepository
    let now: @Sendable () -> Date

    /// How many stored responses a conversation may go back through.
    static let maxChain = 1000

    public init(inference: InferenceService, repository: any ResponseRepository, now: @escaping @Sendable () -> Date = Date.init) {
        self.inference = inference
        self.repository = repository
        self.now = now
    }

    public func create(_ body: ByteBuffer, userID: String, allowed: [String]?) async throws -> TranslatedReply {
        let request = try ResponsesRequest(try JSONBody.object(from: body))
        let served = try await inference.resolve(request.model, allowedBy: allowed)
        var messages: [JSONObject] = []
        if let instructions = request.instructions { messages.append(["role": "system", "content": instructions]) }
        if let previous = request.previousResponseID {
            messages += ResponsesRequest.chatMessages(try await conversation(upTo: previous, userID: userID))
        }
        messages += ResponsesRequest.chatMessages(request.items)
        var chat = request.chatFields
        chat["model"] = served.name
        chat["messages"] = ChatMessages.leadingSystem(messages)
        chat["stream"] = request.stream
        if request.stream { chat["stream_options"] = ["include_usage": true] }

        let created = now()
        let id = ResponsesRequest.newID("resp_")
        let builder: @Sendable () -> ResponseBuilder = { ResponseBuilder(id: id, model: request.model, createdAt: Int(created.timeIntervalSince1970), request: request) }
        switch try await inference.handle(.chatCompletions, body: JSONBody.buffer(chat), allowedModels: nil) {
        case .complete(let status, _, let bytes):
            let object = JSONBody.parsed(bytes) ?? [:]
            guard status == 200 else { throw BodhiError.engineAnswered(status, object) }
            var builder = builder()
            builder.absorb(completion: object)
            let response = builder.response(status: builder.finalStatus)
            try await keep(response, of: request, userID: userID, at: created)
            return .json(JSONBody.buffer(response))
        case .events(let events):
            return .stream(ChunkStream { emit in
                var builder = builder()
                do {
                    for event in builder.start() { try await emit(NamedEvent.sse(event)) }
                    var failure: String?
                    var clientGone = false
                    await events.forward { event in
                        guard failure == nil, let object = Self.chunk(event) else { return }
                        if let error = object["error"] as? JSONObject {
                            failure = error["message"] as? String ?? "The engine failed."
                            return
                        }
                        do {
                            for translated in builder.absorb(chunk: object) { try await emit(NamedEvent.sse(translated)) }
                        } catch {
                            clientGone = true
                            throw error
                        }
                    }
                    // A response its client left before the end is not kept as if it were whole.
                    if clientGone { return }
                    if let failure { return try await emit(NamedEvent.sse(builder.failed(failure))) }
                    var ending = builder.finish()
                    let response = ending.last?["response"] as? JSONObject ?? [:]
                    do {
                        try await keep(response, of: request, userID: userID, at: created)
                    } catch {
                        ending[ending.count - 1] = builder.error("The response was made but could not be stored: \(error)")
                    }
                    for event in ending { try await emit(NamedEvent.sse(event)) }
                } catch {
                    return  // the client went away
                }
            })
        }
    }

    /// A stored response, as it was answered.
    public func retrieve(id: String, userID: String) async throws -> ByteBuffer {
        ByteBuffer(string: try await stored(id, userID: userID).response)
    }

    public func delete(id: String, userID: String) async throws -> ByteBuffer {
        guard try await repository.deleteResponse(id: id, userID: userID) else { throw Self.missing(id) }
        return JSONBody.buffer(["id": id, "object": "response", "deleted": true])
    }

    /// Which input items to list, OpenAI's way: `limit` (1–100, default 20), `order` (`desc`,
    /// the default, or `asc`), and `after` / `before` an item id.
    public struct ItemQuery: Sendable {
        public var limit = 20
        public var ascending = false
        public var after: String?
        public var before: String?

        public init(limit: Int = 20, ascending: Bool = false, after: String? = nil, before: String? = nil) {
            self.limit = limit
            self.ascending = ascending
            self.after = after
            self.before = before
        }
    }

    /// The input items a stored response was given, a page at a time.
    public func inputItems(id: String, userID: String, query: ItemQuery) async throws -> ByteBuffer {
        guard (1...100).contains(query.limit) else { throw BodhiError.invalidRequest("limit must be between 1 and 100.", param: "limit") }
        var items = Self.items(in: try await stored(id, userID: userID).inputItems)
        if !query.ascending { items.reverse() }
        if let after = query.after {
            guard let position = items.firstIndex(where: { $0["id"] as? String == after }) else {
                throw BodhiError.invalidRequest("after: no item '\(after)' in this response's input.", param: "after")
            }
            items.removeSubrange(...position)
        }
        if let before = query.before {
            guard let position = items.firstIndex(where: { $0["id"] as? String == before }) else {
                throw BodhiError.invalidRequest("before: no item '\(before)' in this response's input.", param: "before")
            }
            items.removeSubrange(position...)
        }
        let page = Array(items.prefix(query.limit))
        return JSONBody.buffer([
            "object": "list", "data": page, "has_more": items.count > page.count,
            "first_id": page.first?["id"] ?? NSNull(), "last_id": page.last?["id"] ?? NSNull(),
        ] as JSONObject)
    }

    // MARK: Storage

    private func keep(_ response: JSONObject, of request: ResponsesRequest, userID: String, at created: Date) async throws {
        guard request.store, let id = response["id"] as? String else { return }
        try await repository.insertResponse(StoredResponse(
            id: id, userID: userID, previousResponseID: request.previousResponseID,
            response: String(buffer: JSONBody.buffer(response)), inputItems: String(buffer: JSONBody.buffer(request.items)),
            createdAt: created))
    }

    private func stored(_ id: String, userID: String) async throws -> StoredResponse {
        guard let stored = try await repository.response(id: id, userID: userID) else { throw Self.missing(id) }
        return stored
    }

    /// The items of a stored conversation up to and including response `id`, oldest first: each
    /// response's input, then its output.
    private func conversation(upTo id: String, userID: String) async throws -> [JSONObject] {
        var turns: [[JSONObject]] = []
        var next: String? = id
        while let current = next {
            guard turns.count < Self.maxChain else {
                throw BodhiError.invalidRequest("The conversation goes back more than \(Self.maxChain) responses.", param: "previous_response_id")
            }
            guard let stored = try await repository.response(id: current, userID: userID) else {
                throw BodhiError(.notFound, status: 404, "Previous response with id '\(current)' not found.", param: "previous_response_id")
            }
            let output = (JSONBody.parsed(ByteBuffer(string: stored.response))?["output"] as? [JSONObject]) ?? []
            turns.append(Self.items(in: stored.inputItems) + output)
            next = stored.previousResponseID
        }
        return turns.reversed().flatMap { $0 }
    }

    private static func items(in json: String) -> [JSONObject] {
        (try? JSONSerialization.jsonObject(with: Data(json.utf8))) as? [JSONObject] ?? []
    }

    private static func missing(_ id: String) -> BodhiError {
        BodhiError.notFound("Response with id '\(id)' not found.")
    }

    // MARK: Wire

    private static func chunk(_ event: ByteBuffer) -> JSONObject? {
        guard let data = SSEFramer.data(of: event), data != "[DONE]" else { return nil }
        return JSONBody.parsed(ByteBuffer(string: data))
    }
}
