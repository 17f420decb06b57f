import BodhiChats
import BodhiCore
import Foundation
import PostgresKit
import SQLKit

/// Chats in `chats`, their messages in `chat_messages` (ordered by `position`); sampling
/// settings and reply stats are JSON columns.
extension Store: ChatRepository {
    struct ChatRow: Codable, Sendable {
        var id: String
        var user_id: String
        var title: String
        var model: String?
        var system_prompt: String?
        var settings: String
        var message_count: Int
        var created_at: Int64
        var updated_at: Int64

        init(_ chat: Chat) throws {
            id = chat.id
            user_id = chat.userID
            title = chat.title
            model = chat.model
            system_prompt = chat.systemPrompt
            settings = try jsonColumn(chat.settings)
            message_count = chat.messageCount
            created_at = millis(chat.createdAt)
            updated_at = millis(chat.updatedAt)
        }

        func chat() throws -> Chat {
            Chat(
                id: id, userID: user_id, title: title, model: model, systemPrompt: system_prompt,
                settings: try fromJSONColumn(settings, as: SamplingSettings.self),
                createdAt: date(created_at), updatedAt: date(updated_at), messageCount: message_count)
        }
    }

    struct ChatMessageRow: Codable, Sendable {
        var id: String
        var chat_id: String
        var position: Int
        var role: String
        var content: String
        var model: String?
        var stats: String?
        var created_at: Int64

        init(_ message: ChatMessage, chatID: String, position: Int) throws {
            id = message.id
            chat_id = chatID
            self.position = position
            role = message.role.rawValue
            content = message.content
            model = message.model
            stats = try message.stats.map { try jsonColumn($0) }
            created_at = millis(message.createdAt)
        }

        func message() throws -> ChatMessage {
            ChatMessage(
                id: id, role: ChatMessage.Role(rawValue: role) ?? .user, content: content, model: model,
                stats: try stats.map { try fromJSONColumn($0, as: ReplyStats.self) },
                createdAt: date(created_at))
        }
    }

    public func insertChat(_ chat: Chat) async throws {
        let row = try ChatRow(chat)
        try await session { try await $0.insert(into: "chats").model(row, nilEncodingStrategy: .asNil).run() }
    }

    public func updateChat(_ chat: Chat) async throws {
        let row = try ChatRow(chat)
        try await session { database in
            try await database.update("chats")
                .set("title", to: row.title).set("model", to: row.model).set("system_prompt", to: row.system_prompt)
                .set("settings", to: row.settings).set("updated_at", to: row.updated_at)
                .where("id", .equal, row.id).where("user_id", .equal, row.user_id)
                .run()
        }
    }

    public func deleteChat(id: String, userID: String) async throws -> Bool {
        try await transaction { database in
            let owned = try await database.select().column("id").from("chats")
                .where("id", .equal, id).where("user_id", .equal, userID).first() != nil
            guard owned else { return false }
            try await database.delete(from: "chat_messages").where("chat_id", .equal, id).run()
            try await database.delete(from: "chats").where("id", .equal, id).run()
            return true
        }
    }

    public func chat(id: String, userID: String) async throws -> Chat? {
        try await session { database in
            try await database.select().column("*").from("chats")
                .where("id", .equal, id).where("user_id", .equal, userID)
                .first(decoding: ChatRow.self)
        }?.chat()
    }

    public func chats(userID: String, query: ChatListQuery) async throws -> [Chat] {
        try await session { database in
            var select = database.select().column("*").from("chats").where("user_id", .equal, userID)
            if let search = query.search {
                // `!` escapes LIKE's wildcards, so a search for "50%" means those characters.
                let pattern = "%" + search.replacingOccurrences(of: "!", with: "!!").replacingOccurrences(of: "%", with: "!%")
                    .replacingOccurrences(of: "_", with: "!_") + "%"
                // Messages are searched only within this user's chats.
                select = select.where(SQLQueryString("""
                    (LOWER(title) LIKE \(bind: pattern) ESCAPE '!' OR id IN \
                    (SELECT m.chat_id FROM chat_messages m JOIN chats c ON c.id = m.chat_id \
                    WHERE c.user_id = \(bind: userID) AND LOWER(m.content) LIKE \(bind: pattern) ESCAPE '!'))
                    """))
            }
            if let after = query.after {
                let time = millis(after.updatedAt)
                select = select.where(SQLQueryString(
                    "(updated_at < \(bind: time) OR (updated_at = \(bind: time) AND id < \(bind: after.id)))"))
            }
            return try await select.orderBy("updated_at", .descending).orderBy("id", .descending)
                .limit(query.limit + 1).all(decoding: ChatRow.self)
        }.map { try $0.chat() }
    }

    public func messages(chatID: String) async throws -> [ChatMessage] {
        try await session { try await Self.messageRows(chatID: chatID, in: $0) }.map { try $0.message() }
    }

    public func replaceMessages(of chat: Chat, from position: Int?, with messages: [ChatMessage]) async throws -> [ChatMessage] {
        let chatRow = try ChatRow(chat)
        do {
            return try await transaction { database in
                // Positions run 0..<count; the count is read here, in the transaction that writes.
                let count = try await database.select().column(SQLFunction("COUNT", args: SQLLiteral.all), as: "count")
                    .from("chat_messages").where("chat_id", .equal, chat.id).first(decodingColumn: "count", as: Int.self) ?? 0
                if let position, position > count {
                    throw BodhiError.invalidRequest(
                        "'replace_from' must be between 0 and \(count), the number of messages in the chat.", param: "replace_from")
                }
                let start = position ?? count
                if start < count {
                    try await database.delete(from: "chat_messages")
                        .where("chat_id", .equal, chat.id).where("position", .greaterThanOrEqual, start).run()
                }
                let rows = try messages.enumerated().map { try ChatMessageRow($1, chatID: chat.id, position: start + $0) }
                if !rows.isEmpty {
                    try await database.insert(into: "chat_messages").models(rows, nilEncodingStrategy: .asNil).run()
                }
                let kept = try await Self.messageRows(chatID: chat.id, in: database)
                try await database.update("chats")
                    .set("title", to: chatRow.title).set("updated_at", to: chatRow.updated_at).set("message_count", to: kept.count)
                    .where("id", .equal, chat.id).run()
                return kept
            }.map { try $0.message() }
        } catch let error as PSQLError where error.serverInfo?[.sqlState] == "23505" {
            // Another writer added messages at the same place first (two tabs on one chat).
            throw BodhiError.conflict("The chat changed while this was saved; reload it and try again.")
        }
    }

    private static func messageRows(chatID: String, in database: any SQLDatabase) async throws -> [ChatMessageRow] {
        try await database.select().column("*").from("chat_messages").where("chat_id", .equal, chatID)
            .orderBy("position").all(decoding: ChatMessageRow.self)
    }
}
