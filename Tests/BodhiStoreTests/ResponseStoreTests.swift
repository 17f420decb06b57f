import BodhiChats
import BodhiIdentity
import Foundation
import Testing
@testable import BodhiStore

/// Stored Responses API answers, on each database: kept per user, gone with their user.
@Suite(.timeLimit(.minutes(2))) struct ResponseStoreTests {
    @Test(arguments: TestDatabase.available)
    func aResponseIsKeptForItsUserAlone(database: TestDatabase) async throws {
        let (store, dispose) = try await database.makeStore()
        defer { Task { await dispose() } }
        try await store.migrate()
        for name in ["ana", "ben"] {
            try await store.insertUser(User(id: name, username: name, passwordHash: "x", role: .user))
        }
        let first = StoredResponse(
            id: "resp_1", userID: "ana", previousResponseID: nil, response: #"{"id":"resp_1","output":[]}"#,
            inputItems: #"[{"id":"msg_1","type":"message"}]"#, createdAt: Date(timeIntervalSince1970: 1_800_000_000))
        let second = StoredResponse(
            id: "resp_2", userID: "ana", previousResponseID: "resp_1", response: #"{"id":"resp_2"}"#, inputItems: "[]",
            createdAt: Date(timeIntervalSince1970: 1_800_000_001))
        try await store.insertResponse(first)
        try await store.insertResponse(second)

        #expect(try await store.response(id: "resp_1", userID: "ana") == first)
        #expect(try await store.response(id: "resp_2", userID: "ana")?.previousResponseID == "resp_1")
        #expect(try await store.response(id: "resp_1", userID: "ben") == nil)
        #expect(try await store.deleteResponse(id: "resp_1", userID: "ben") == false)
        #expect(try await store.deleteResponse(id: "resp_1", userID: "ana") == true)
        #expect(try await store.response(id: "resp_1", userID: "ana") == nil)
        #expect(try await store.deleteResponse(id: "resp_1", userID: "ana") == false)

        try await store.deleteUser(id: "ana")
        #expect(try await store.rowCount("responses") == 0)
    }
}
