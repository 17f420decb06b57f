import BodhiChats
import Foundation
import SQLKit

/// Stored Responses API responses in `responses`; the JSON is kept as text and never read here.
extension Store: ResponseRepository {
    struct ResponseRow: Codable, Sendable {
        var id: String
        var user_id: String
        var previous_response_id: String?
        var response: String
        var input_items: String
        var created_at: Int64

        init(_ stored: StoredResponse) {
            id = stored.id
            user_id = stored.userID
            previous_response_id = stored.previousResponseID
            response = stored.response
            input_items = stored.inputItems
            created_at = millis(stored.createdAt)
        }

        var stored: StoredResponse {
            StoredResponse(
                id: id, userID: user_id, previousResponseID: previous_response_id, response: response,
                inputItems: input_items, createdAt: date(created_at))
        }
    }

    public func insertResponse(_ response: StoredResponse) async throws {
        let row = ResponseRow(response)
        try await session { try await $0.insert(into: "responses").model(row, nilEncodingStrategy: .asNil).run() }
    }

    public func response(id: String, userID: String) async throws -> StoredResponse? {
        try await session { database in
            try await database.select().column("*").from("responses")
                .where("id", .equal, id).where("user_id", .equal, userID)
                .first(decoding: ResponseRow.self)
        }?.stored
    }

    public func deleteResponse(id: String, userID: String) async throws -> Bool {
        try await session { database in
            let owned = try await database.select().column("id").from("responses")
                .where("id", .equal, id).where("user_id", .equal, userID).first() != nil
            guard owned else { return false }
            try await database.delete(from: "responses").where("id", .equal, id).where("user_id", .equal, userID).run()
            return true
        }
    }
}
