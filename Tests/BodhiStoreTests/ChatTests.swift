import BodhiChats
import BodhiCore
import BodhiIdentity
import Foundation
import Synchronization
import Testing
@testable import BodhiStore

/// Conversations kept per user, on each database.
@Suite(.timeLimit(.minutes(2))) struct ChatTests {
    /// A clock that moves one second per reading, so that every change has its own time.
    final class SteppingClock: Sendable {
        let seconds = Mutex<Double>(1_800_000_000)
        func now() -> Date { seconds.withLock { $0 += 1; return Date(timeIntervalSince1970: $0) } }
    }

    static func make(_ database: TestDatabase) async throws -> (Store, ChatService, @Sendable () async -> Void) {
        let (store, dispose) = try await database.makeStore()
        try await store.migrate()
        for name in ["ana", "ben"] {
            try await store.insertUser(User(id: name, username: name, passwordHash: "x", role: .user))
        }
        let clock = SteppingClock()
        return (store, ChatService(repository: store, now: { clock.now() }), dispose)
    }

    @Test(arguments: TestDatabase.available)
    func aConversationIsKeptWithItsSettingsAndNamedByItsFirstQuestion(database: TestDatabase) async throws {
        let (_, chats, dispose) = try await Self.make(database)
        defer { Task { await dispose() } }
        let created = try await chats.create(
            userID: "ana",
            changes: .init(model: "smol", systemPrompt: "Be brief.", settings: .init(temperature: 0.2, maxTokens: 64)))
        #expect(created.chat.title == "" && created.messages.isEmpty)

        _ = try await chats.replaceMessages(chatID: created.chat.id, userID: "ana", from: nil, with: [
            .init(role: .user, content: "What is the capital of France, and why is it that city rather than Lyon?\nSecond line"),
        ])
        let reply = ReplyStats(timeToFirstTokenMs: 41.5, tokensPerSecond: 180.2, completionTokens: 12, stopped: false)
        _ = try await chats.replaceMessages(chatID: created.chat.id, userID: "ana", from: nil, with: [
            .init(role: .assistant, content: "Paris.", model: "smol", stats: reply),
        ])
        let loaded = try await chats.conversation(id: created.chat.id, userID: "ana")
        #expect(loaded.chat.title == "What is the capital of France, and why is it that city…")
        #expect(loaded.chat.systemPrompt == "Be brief." && loaded.chat.settings.temperature == 0.2 && loaded.chat.settings.maxTokens == 64)
        #expect(loaded.chat.messageCount == 2)
        #expect(loaded.messages.map(\.role) == [.user, .assistant])
        #expect(loaded.messages[1].stats == reply && loaded.messages[1].model == "smol")
    }

    @Test(arguments: TestDatabase.available)
    func regenerateAndEditReplaceTheTailOfTheConversation(database: TestDatabase) async throws {
        let (_, chats, dispose) = try await Self.make(database)
        defer { Task { await dispose() } }
        let chat = try await chats.create(userID: "ana", changes: .init(), messages: [
            .init(role: .user, content: "one"), .init(role: .assistant, content: "first answer"),
            .init(role: .user, content: "two"), .init(role: .assistant, content: "second answer"),
        ]).chat
        // Regenerate the last reply.
        var now = try await chats.replaceMessages(chatID: chat.id, userID: "ana", from: 3, with: [.init(role: .assistant, content: "second again")])
        #expect(now.messages.map(\.content) == ["one", "first answer", "two", "second again"])
        // Edit the first question: everything after it goes.
        now = try await chats.replaceMessages(chatID: chat.id, userID: "ana", from: 0, with: [.init(role: .user, content: "uno")])
        #expect(now.messages.map(\.content) == ["uno"] && now.chat.messageCount == 1)
        // The title stays what the first question made it.
        #expect(now.chat.title == "one")
        await expectError(400) {
            _ = try await chats.replaceMessages(chatID: chat.id, userID: "ana", from: 5, with: [])
        }
    }

    @Test(arguments: TestDatabase.available)
    func chatsArePagedNewestFirstAndSearchedByTitleAndContent(database: TestDatabase) async throws {
        let (_, chats, dispose) = try await Self.make(database)
        defer { Task { await dispose() } }
        var ids: [String] = []
        for index in 0..<7 {
            ids.append(try await chats.create(userID: "ana", changes: .init(title: "Chat \(index)")).chat.id)
        }
        _ = try await chats.create(userID: "ana", changes: .init(title: "Recipes"), messages: [
            .init(role: .user, content: "How much SALT for 50% less sodium_free bread?"),
        ])
        var seen: [String] = []
        var cursor: ChatCursor?
        repeat {
            let page = try await chats.list(userID: "ana", query: .init(limit: 3, after: cursor))
            #expect(page.data.count <= 3)
            seen += page.data.map(\.title)
            cursor = try page.nextCursor.map(ChatCursor.init(token:))
            #expect(page.hasMore == (cursor != nil))
        } while cursor != nil
        #expect(seen == ["Recipes"] + (0..<7).reversed().map { "Chat \($0)" })

        // Renaming moves a chat to the top.
        _ = try await chats.update(id: ids[0], userID: "ana", changes: .init(title: "Renamed"))
        #expect(try await chats.list(userID: "ana", query: .init(limit: 1)).data.first?.title == "Renamed")

        #expect(try await chats.list(userID: "ana", query: .init(search: "salt")).data.map(\.title) == ["Recipes"])
        #expect(try await chats.list(userID: "ana", query: .init(search: " chat 3 ")).data.map(\.title) == ["Chat 3"])
        // Wildcards are literal characters in a search.
        #expect(try await chats.list(userID: "ana", query: .init(search: "50%")).data.map(\.title) == ["Recipes"])
        #expect(try await chats.list(userID: "ana", query: .init(search: "salt_for")).data.isEmpty)
        #expect(try await chats.list(userID: "ana", query: .init(search: "sodium_free")).data.map(\.title) == ["Recipes"])
        #expect(try await chats.list(userID: "ana", query: .init(search: "chat_")).data.isEmpty)
        await expectError(400) { _ = try await chats.list(userID: "ana", query: .init(limit: 0)) }
        await expectError(400) { _ = try ChatCursor(token: "not-a-cursor") }
    }

    @Test(arguments: TestDatabase.available)
    func anotherUsersChatsDoNotExistForYou(database: TestDatabase) async throws {
        let (store, chats, dispose) = try await Self.make(database)
        defer { Task { await dispose() } }
        let mine = try await chats.create(userID: "ana", changes: .init(title: "private"), messages: [.init(role: .user, content: "secret")])
        #expect(try await chats.list(userID: "ben", query: .init()).data.isEmpty)
        #expect(try await chats.list(userID: "ben", query: .init(search: "secret")).data.isEmpty)
        await expectError(404) { _ = try await chats.conversation(id: mine.chat.id, userID: "ben") }
        await expectError(404) { _ = try await chats.update(id: mine.chat.id, userID: "ben", changes: .init(title: "mine now")) }
        await expectError(404) {
            _ = try await chats.replaceMessages(chatID: mine.chat.id, userID: "ben", from: 0, with: [])
        }
        await expectError(404) { try await chats.delete(id: mine.chat.id, userID: "ben") }
        #expect(try await chats.conversation(id: mine.chat.id, userID: "ana").messages.count == 1)

        // Deleting removes the messages too; deleting a user removes their chats.
        try await chats.delete(id: mine.chat.id, userID: "ana")
        #expect(try await store.rowCount("chat_messages") == 0)
        _ = try await chats.create(userID: "ben", changes: .init(), messages: [.init(role: .user, content: "hi")])
        try await store.deleteUser(id: "ben")
        #expect(try await store.rowCount("chats") == 0)
        #expect(try await store.rowCount("chat_messages") == 0)
    }

    @Test(arguments: TestDatabase.available)
    func settingsOutOfRangeAreRefusedByName(database: TestDatabase) async throws {
        let (_, chats, dispose) = try await Self.make(database)
        defer { Task { await dispose() } }
        do {
            _ = try await chats.create(userID: "ana", changes: .init(settings: .init(temperature: 3)))
            Issue.record("accepted temperature 3")
        } catch let error as BodhiError {
            #expect(error.status == 400 && error.param == "settings.temperature")
        }
        await expectError(400) { _ = try await chats.create(userID: "ana", changes: .init(title: String(repeating: "x", count: 201))) }
    }

    @Test func chatsMoveWithTheRestOfTheDatabase() async throws {
        let (source, chats, disposeSource) = try await Self.make(.sqlite)
        let (target, disposeTarget) = try await TestDatabase.sqlite.makeStore()
        defer { Task { await disposeSource(); await disposeTarget() } }
        let chat = try await chats.create(userID: "ana", changes: .init(settings: .init(topK: 5)), messages: [
            .init(role: .user, content: "q"), .init(role: .assistant, content: "a", stats: .init(tokensPerSecond: 9)),
        ]).chat
        let counts = Dictionary(uniqueKeysWithValues: try await source.copy(into: target).map { ($0.table, $0.rows) })
        #expect(counts["chats"] == 1 && counts["chat_messages"] == 2)
        let copied = try await ChatService(repository: target).conversation(id: chat.id, userID: "ana")
        #expect(copied.chat.settings.topK == 5 && copied.messages.last?.stats?.tokensPerSecond == 9)
    }
}
