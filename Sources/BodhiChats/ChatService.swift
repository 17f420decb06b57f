import BodhiCore
import Foundation

/// Users' conversations: create, list and search, rename and re-configure, delete, and the
/// message list edits a chat UI makes (append a turn, regenerate or edit from a point).
public struct ChatService: Sendable {
    let repository: any ChatRepository
    let now: @Sendable () -> Date

    public static let maxTitleLength = 200
    public static let maxPageSize = 200
    /// A title taken from the first user message is cut here.
    static let derivedTitleLength = 60

    public init(repository: any ChatRepository, now: @escaping @Sendable () -> Date = Date.init) {
        self.repository = repository
        self.now = now
    }

    /// The fields a client may set on a chat; absent ones are left as they are.
    public struct Changes: Decodable, Sendable {
        public var title: String?
        public var model: String?
        public var systemPrompt: String?
        public var settings: SamplingSettings?

        public init(title: String? = nil, model: String? = nil, systemPrompt: String? = nil, settings: SamplingSettings? = nil) {
            self.title = title
            self.model = model
            self.systemPrompt = systemPrompt
            self.settings = settings
        }

        enum CodingKeys: String, CodingKey {
            case title, model, settings
            case systemPrompt = "system_prompt"
        }
    }

    /// A message as a client sends it; the server gives it its id and time.
    public struct NewMessage: Decodable, Sendable {
        public let role: ChatMessage.Role
        public let content: String
        public let model: String?
        public let stats: ReplyStats?

        public init(role: ChatMessage.Role, content: String, model: String? = nil, stats: ReplyStats? = nil) {
            self.role = role
            self.content = content
            self.model = model
            self.stats = stats
        }
    }

    /// A chat with its messages, oldest first.
    public struct Conversation: Encodable, Sendable {
        public let chat: Chat
        public let messages: [ChatMessage]

        public func encode(to encoder: any Encoder) throws {
            try chat.encode(to: encoder)
            var container = encoder.container(keyedBy: Key.self)
            try container.encode(messages, forKey: .messages)
        }
        enum Key: String, CodingKey { case messages }
    }

    public func create(userID: String, changes: Changes, messages: [NewMessage] = []) async throws -> Conversation {
        let time = now()
        var chat = Chat(
            id: Self.newID("chat_"), userID: userID,
            title: "", model: nil, systemPrompt: nil, settings: .init(), createdAt: time, updatedAt: time)
        try apply(changes, to: &chat)
        try await repository.insertChat(chat)
        if messages.isEmpty { return Conversation(chat: chat, messages: []) }
        return try await replaceMessages(chatID: chat.id, userID: userID, from: nil, with: messages)
    }

    public func list(userID: String, query: ChatListQuery) async throws -> ChatPage {
        guard (1...Self.maxPageSize).contains(query.limit) else {
            throw BodhiError.invalidRequest("'limit' must be between 1 and \(Self.maxPageSize).", param: "limit")
        }
        var query = query
        query.search = query.search?.trimmingCharacters(in: .whitespacesAndNewlines).lowercased()
        if query.search?.isEmpty == true { query.search = nil }
        let found = try await repository.chats(userID: userID, query: query)
        let page = Array(found.prefix(query.limit))
        let hasMore = found.count > query.limit
        return ChatPage(data: page, hasMore: hasMore, nextCursor: hasMore ? page.last.map { ChatCursor(updatedAt: $0.updatedAt, id: $0.id).token } : nil)
    }

    public func conversation(id: String, userID: String) async throws -> Conversation {
        let chat = try await chat(id: id, userID: userID)
        return Conversation(chat: chat, messages: try await repository.messages(chatID: id))
    }

    public func update(id: String, userID: String, changes: Changes) async throws -> Chat {
        var chat = try await chat(id: id, userID: userID)
        try apply(changes, to: &chat)
        chat.updatedAt = now()
        try await repository.updateChat(chat)
        return chat
    }

    public func delete(id: String, userID: String) async throws {
        guard try await repository.deleteChat(id: id, userID: userID) else { throw Self.missing(id) }
    }

    /// Keeps the first `position` messages (all when nil) and appends `messages` after them:
    /// nil appends a turn, the index of a reply regenerates it, the index of a user message edits it.
    public func replaceMessages(chatID: String, userID: String, from position: Int?, with messages: [NewMessage]) async throws -> Conversation {
        var chat = try await chat(id: chatID, userID: userID)
        if let position, position < 0 {
            throw BodhiError.invalidRequest("'replace_from' must be 0 or more.", param: "replace_from")
        }
        let time = now()
        let stored = messages.map { message in
            ChatMessage(
                id: Self.newID("msg_"), role: message.role,
                content: message.content, model: message.model, stats: message.stats, createdAt: time)
        }
        if chat.title.isEmpty, let first = stored.first(where: { $0.role == .user }) {
            chat.title = Self.title(from: first.content)
        }
        chat.updatedAt = time
        let kept = try await repository.replaceMessages(of: chat, from: position, with: stored)
        chat.messageCount = kept.count
        return Conversation(chat: chat, messages: kept)
    }

    private func chat(id: String, userID: String) async throws -> Chat {
        guard let chat = try await repository.chat(id: id, userID: userID) else { throw Self.missing(id) }
        return chat
    }

    private func apply(_ changes: Changes, to chat: inout Chat) throws {
        if let title = changes.title {
            let trimmed = title.trimmingCharacters(in: .whitespacesAndNewlines)
            guard trimmed.count <= Self.maxTitleLength else {
                throw BodhiError.invalidRequest("'title' is longer than \(Self.maxTitleLength) characters.", param: "title")
            }
            chat.title = trimmed
        }
        if let model = changes.model { chat.model = model.isEmpty ? nil : model }
        if let systemPrompt = changes.systemPrompt { chat.systemPrompt = systemPrompt.isEmpty ? nil : systemPrompt }
        if let settings = changes.settings {
            try settings.validate()
            chat.settings = settings
        }
    }

    /// The first non-blank line of `text`, cut at a word near `derivedTitleLength` characters.
    static func title(from text: String) -> String {
        let line = text.split(whereSeparator: \.isNewline).lazy.map { $0.trimmingCharacters(in: .whitespaces) }.first { !$0.isEmpty } ?? ""
        guard line.count > derivedTitleLength else { return line }
        let cut = line.prefix(derivedTitleLength)
        let atWord = cut.lastIndex(of: " ").map { cut[..<$0] } ?? cut
        return atWord.trimmingCharacters(in: .whitespaces) + "…"
    }

    /// `prefix` and 32 random hex digits.
    static func newID(_ prefix: String) -> String {
        prefix + UUID.random().lowercaseHex
    }

    static func missing(_ id: String) -> BodhiError {
        BodhiError.notFound("You have no chat '\(id)'.")
    }
}
