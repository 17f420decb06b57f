import Foundation

/// A response of OpenAI's Responses API kept for its user (`store: true`), so that a later request
/// can continue from it (`previous_response_id`) and the user can read or delete it. The store
/// keeps the JSON as it was answered and never reads it.
public struct StoredResponse: Sendable, Equatable {
    public let id: String
    public let userID: String
    /// The response it continued from, if any.
    public let previousResponseID: String?
    /// The response object as it was answered (JSON).
    public let response: String
    /// The input items the request gave, each with its id (a JSON array).
    public let inputItems: String
    public let createdAt: Date

    public init(id: String, userID: String, previousResponseID: String?, response: String, inputItems: String, createdAt: Date) {
        self.id = id
        self.userID = userID
        self.previousResponseID = previousResponseID
        self.response = response
        self.inputItems = inputItems
        self.createdAt = createdAt
    }
}

/// Where stored responses live. Another user's responses do not exist for the caller.
public protocol ResponseRepository: Sendable {
    func insertResponse(_ response: StoredResponse) async throws
    func response(id: String, userID: String) async throws -> StoredResponse?
    /// False when the user has no such response.
    func deleteResponse(id: String, userID: String) async throws -> Bool
}
