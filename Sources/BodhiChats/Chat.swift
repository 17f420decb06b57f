import BodhiCore
import Foundation

/// A conversation kept on the server for one user, so that it follows them across browsers.
public struct Chat: Codable, Sendable, Equatable {
    public let id: String
    public let userID: String
    /// Empty until named, or until the first user message names it.
    public var title: String
    /// The model or alias the next reply should come from.
    public var model: String?
    public var systemPrompt: String?
    public var settings: SamplingSettings
    public let createdAt: Date
    public var updatedAt: Date
    public var messageCount: Int

    public init(
        id: String, userID: String, title: String, model: String?, systemPrompt: String?, settings: SamplingSettings,
        createdAt: Date, updatedAt: Date, messageCount: Int = 0
    ) {
        self.id = id
        self.userID = userID
        self.title = title
        self.model = model
        self.systemPrompt = systemPrompt
        self.settings = settings
        self.createdAt = createdAt
        self.updatedAt = updatedAt
        self.messageCount = messageCount
    }

    enum CodingKeys: String, CodingKey {
        case id, title, model, settings
        case userID = "user_id", systemPrompt = "system_prompt"
        case createdAt = "created_at", updatedAt = "updated_at", messageCount = "message_count"
    }
}

/// The sampling fields a chat sends with every request, as OpenAI and llama.cpp name them.
public struct SamplingSettings: Codable, Sendable, Equatable {
    public var temperature: Double?
    public var topP: Double?
    public var topK: Int?
    public var minP: Double?
    public var maxTokens: Int?
    public var seed: Int?
    public var presencePenalty: Double?
    public var frequencyPenalty: Double?

    public init(
        temperature: Double? = nil, topP: Double? = nil, topK: Int? = nil, minP: Double? = nil, maxTokens: Int? = nil,
        seed: Int? = nil, presencePenalty: Double? = nil, frequencyPenalty: Double? = nil
    ) {
        self.temperature = temperature
        self.topP = topP
        self.topK = topK
        self.minP = minP
        self.maxTokens = maxTokens
        self.seed = seed
        self.presencePenalty = presencePenalty
        self.frequencyPenalty = frequencyPenalty
    }

    enum CodingKeys: String, CodingKey {
        case temperature, seed
        case topP = "top_p", topK = "top_k", minP = "min_p", maxTokens = "max_tokens"
        case presencePenalty = "presence_penalty", frequencyPenalty = "frequency_penalty"
    }

    /// Refuses values no engine accepts, naming the field.
    public func validate() throws {
        func check(_ value: Double?, _ range: ClosedRange<Double>, _ name: String) throws {
            if let value, !range.contains(value) {
                throw BodhiError.invalidRequest("'settings.\(name)' must be between \(range.lowerBound) and \(range.upperBound).", param: "settings.\(name)")
            }
        }
        try check(temperature, 0...2, "temperature")
        try check(topP, 0...1, "top_p")
        try check(minP, 0...1, "min_p")
        try check(presencePenalty, -2...2, "presence_penalty")
        try check(frequencyPenalty, -2...2, "frequency_penalty")
        if let topK, topK < 0 { throw BodhiError.invalidRequest("'settings.top_k' must be 0 or more.", param: "settings.top_k") }
        if let maxTokens, maxTokens < 1 {
            throw BodhiError.invalidRequest("'settings.max_tokens' must be 1 or more.", param: "settings.max_tokens")
        }
    }
}

/// One turn of a conversation.
public struct ChatMessage: Codable, Sendable, Equatable {
    public enum Role: String, Codable, Sendable {
        case system, user, assistant
    }

    public let id: String
    public let role: Role
    public let content: String
    /// For a reply: the model that wrote it.
    public let model: String?
    /// For a reply: how fast it came.
    public let stats: ReplyStats?
    public let createdAt: Date

    public init(id: String, role: Role, content: String, model: String?, stats: ReplyStats?, createdAt: Date) {
        self.id = id
        self.role = role
        self.content = content
        self.model = model
        self.stats = stats
        self.createdAt = createdAt
    }

    enum CodingKeys: String, CodingKey {
        case id, role, content, model, stats
        case createdAt = "created_at"
    }
}

/// What the browser measured for one reply.
public struct ReplyStats: Codable, Sendable, Equatable {
    public var timeToFirstTokenMs: Double?
    public var tokensPerSecond: Double?
    public var promptTokens: Int?
    public var completionTokens: Int?
    public var durationMs: Double?
    /// The reply was stopped before the model finished it.
    public var stopped: Bool?

    public init(
        timeToFirstTokenMs: Double? = nil, tokensPerSecond: Double? = nil, promptTokens: Int? = nil,
        completionTokens: Int? = nil, durationMs: Double? = nil, stopped: Bool? = nil
    ) {
        self.timeToFirstTokenMs = timeToFirstTokenMs
        self.tokensPerSecond = tokensPerSecond
        self.promptTokens = promptTokens
        self.completionTokens = completionTokens
        self.durationMs = durationMs
        self.stopped = stopped
    }

    enum CodingKeys: String, CodingKey {
        case stopped
        case timeToFirstTokenMs = "ttft_ms", tokensPerSecond = "tokens_per_second"
        case promptTokens = "prompt_tokens", completionTokens = "completion_tokens", durationMs = "duration_ms"
    }
}

/// A page of a user's chats, newest change first.
public struct ChatPage: Encodable, Sendable {
    public let data: [Chat]
    public let hasMore: Bool
    /// Pass as `cursor` for the next page; nil on the last one.
    public let nextCursor: String?

    enum CodingKeys: String, CodingKey {
        case data
        case hasMore = "has_more", nextCursor = "next_cursor"
    }
}

/// Which chats to list: a search over titles and messages, and a position in the list.
public struct ChatListQuery: Sendable, Equatable {
    public var search: String?
    public var limit: Int
    /// Chats changed before this point: (updated_at, id) of the last chat of the previous page.
    public var after: ChatCursor?

    public init(search: String? = nil, limit: Int = 50, after: ChatCursor? = nil) {
        self.search = search
        self.limit = limit
        self.after = after
    }
}

/// A position in the list of chats, which is ordered by last change, then id, descending.
public struct ChatCursor: Sendable, Equatable {
    public let updatedAt: Date
    public let id: String

    public init(updatedAt: Date, id: String) {
        self.updatedAt = updatedAt
        self.id = id
    }

    /// `<milliseconds>_<id>`, opaque to clients.
    public var token: String { "\(Int64((updatedAt.timeIntervalSince1970 * 1000).rounded()))_\(id)" }

    public init(token: String) throws {
        let parts = token.split(separator: "_", maxSplits: 1)
        guard parts.count == 2, let millis = Int64(parts[0]) else {
            throw BodhiError.invalidRequest("'cursor' is not one this server gave out; pass the next_cursor of the previous page.", param: "cursor")
        }
        updatedAt = Date(timeIntervalSince1970: Double(millis) / 1000)
        id = String(parts[1])
    }
}

/// Where chats are kept. Every call names the owner: another user's chat does not exist.
public protocol ChatRepository: Sendable {
    func insertChat(_ chat: Chat) async throws
    func updateChat(_ chat: Chat) async throws
    /// Deletes the chat and its messages; false when the user has no such chat.
    func deleteChat(id: String, userID: String) async throws -> Bool
    func chat(id: String, userID: String) async throws -> Chat?
    /// Up to `query.limit + 1` chats, so the caller can tell whether more follow.
    func chats(userID: String, query: ChatListQuery) async throws -> [Chat]
    func messages(chatID: String) async throws -> [ChatMessage]
    /// In one transaction: drops the messages from `position` on (none when nil; a position past
    /// the last message is a 400), appends `messages`, and saves `chat` (its title, time and
    /// count). A concurrent writer that took the same places first makes this a 409. Returns the
    /// messages now kept.
    func replaceMessages(of chat: Chat, from position: Int?, with messages: [ChatMessage]) async throws -> [ChatMessage]
}
