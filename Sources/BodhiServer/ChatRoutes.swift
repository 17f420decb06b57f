import BodhiChats
import BodhiCore
import Foundation
import Hummingbird

/// Each user's conversations under `/bodhi/v1/chats`: list (paged, searchable), create, read,
/// change, delete, and edit the message list.
struct ChatRoutes {
    let services: BodhiServices

    /// A chat's fields as a change makes them, and optionally its first messages.
    struct NewChat: Decodable {
        let changes: ChatService.Changes
        let messages: [ChatService.NewMessage]?

        init(from decoder: any Decoder) throws {
            changes = try ChatService.Changes(from: decoder)
            messages = try decoder.container(keyedBy: Key.self).decodeIfPresent([ChatService.NewMessage].self, forKey: .messages)
        }
        enum Key: String, CodingKey { case messages }
    }

    struct MessageEdit: Decodable {
        let messages: [ChatService.NewMessage]
        /// Keep only the messages before this index; absent to append.
        let replaceFrom: Int?
        enum CodingKeys: String, CodingKey {
            case messages
            case replaceFrom = "replace_from"
        }
    }

    func register(on router: Router<BodhiRequestContext>) {
        let chats = services.chats
        let limit = services.maxRequestBodyBytes
        let base = "/bodhi/v1/chats"
        router.get(RouterPath(base)) { request, context in
            let parameters = request.queryValues
            var query = ChatListQuery(search: parameters["q"])
            if let text = parameters["limit"] {
                guard let value = Int(text) else { throw BodhiError.invalidRequest("'limit' must be a whole number.", param: "limit") }
                query.limit = value
            }
            query.after = try parameters["cursor"].map(ChatCursor.init(token:))
            return try Response.json(try await chats.list(userID: try context.requirePrincipal().user.id, query: query))
        }
        router.post(RouterPath(base)) { request, context in
            let body = try await request.decodeJSON(NewChat.self, limit: limit)
            return try Response.json(
                try await chats.create(userID: try context.requirePrincipal().user.id, changes: body.changes, messages: body.messages ?? []),
                status: .created)
        }
        router.get(RouterPath(base + "/:id")) { _, context in
            try Response.json(try await chats.conversation(id: context.parameters.decoded("id"), userID: try context.requirePrincipal().user.id))
        }
        router.patch(RouterPath(base + "/:id")) { request, context in
            let changes = try await request.decodeJSON(ChatService.Changes.self, limit: limit)
            return try Response.json(try await chats.update(
                id: context.parameters.decoded("id"), userID: try context.requirePrincipal().user.id, changes: changes))
        }
        router.delete(RouterPath(base + "/:id")) { _, context in
            try await chats.delete(id: context.parameters.decoded("id"), userID: try context.requirePrincipal().user.id)
            return Response(status: .noContent)
        }
        router.post(RouterPath(base + "/:id/messages")) { request, context in
            let edit = try await request.decodeJSON(MessageEdit.self, limit: limit)
            return try Response.json(try await chats.replaceMessages(
                chatID: context.parameters.decoded("id"), userID: try context.requirePrincipal().user.id,
                from: edit.replaceFrom, with: edit.messages))
        }
    }
}
