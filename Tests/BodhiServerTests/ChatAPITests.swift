import BodhiCore
import BodhiIdentity
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Testing
@testable import BodhiServer

/// `/bodhi/v1/chats` over HTTP: what a browser tab does with a conversation.
@Suite(.timeLimit(.minutes(2))) struct ChatAPITests {
    @Test func aConversationIsCreatedExtendedListedRenamedAndDeleted() async throws {
        try await TestApp.with(hub: try TestApp.emptyHub("chats")) { app, client in
            func call(_ method: HTTPRequest.Method, _ uri: String, _ body: String? = nil, as caller: TestApp.Client? = nil) async throws -> (Int, [String: Any]) {
                try await (caller ?? client).execute(uri: uri, method: method, body: body.map { ByteBuffer(string: $0) }) { response in
                    (Int(response.status.code), (try? JSONSerialization.jsonObject(with: Data(String(buffer: response.body).utf8)) as? [String: Any]) ?? [:])
                }
            }
            var (status, body) = try await call(.post, "/bodhi/v1/chats", #"{"model":"smol","system_prompt":"Be brief.","settings":{"temperature":0.4}}"#)
            #expect(status == 201 && body["title"] as? String == "" && (body["messages"] as? [Any])?.isEmpty == true)
            let id = try #require(body["id"] as? String)

            (status, body) = try await call(.post, "/bodhi/v1/chats/\(id)/messages", #"{"messages":[{"role":"user","content":"Hello there"}]}"#)
            #expect(status == 200 && body["title"] as? String == "Hello there" && body["message_count"] as? Int == 1)
            (status, body) = try await call(.post, "/bodhi/v1/chats/\(id)/messages",
                                            #"{"messages":[{"role":"assistant","content":"Hi!","model":"smol","stats":{"ttft_ms":12.5,"tokens_per_second":99}}]}"#)
            let messages = try #require(body["messages"] as? [[String: Any]])
            #expect(messages.count == 2 && (messages[1]["stats"] as? [String: Any])?["ttft_ms"] as? Double == 12.5)
            // Regenerate: the reply is replaced.
            (status, body) = try await call(.post, "/bodhi/v1/chats/\(id)/messages", #"{"replace_from":1,"messages":[{"role":"assistant","content":"Hello!"}]}"#)
            #expect((body["messages"] as? [[String: Any]])?.map { $0["content"] as? String } == ["Hello there", "Hello!"])

            (status, body) = try await call(.get, "/bodhi/v1/chats?q=hello&limit=10")
            #expect(status == 200 && (body["data"] as? [[String: Any]])?.count == 1 && body["has_more"] as? Bool == false)
            (status, body) = try await call(.patch, "/bodhi/v1/chats/\(id)", #"{"title":"Greetings"}"#)
            #expect(status == 200 && body["title"] as? String == "Greetings" && body["system_prompt"] as? String == "Be brief.")
            (status, body) = try await call(.get, "/bodhi/v1/chats/\(id)")
            #expect(body["title"] as? String == "Greetings" && (body["settings"] as? [String: Any])?["temperature"] as? Double == 0.4)

            // Bad input is refused with OpenAI's error shape, naming the field.
            (status, body) = try await call(.post, "/bodhi/v1/chats/\(id)/messages", #"{"messages":[{"role":"wizard","content":"x"}]}"#)
            #expect(status == 400)
            (status, body) = try await call(.patch, "/bodhi/v1/chats/\(id)", #"{"settings":{"top_p":7}}"#)
            #expect(status == 400 && (body["error"] as? [String: Any])?["param"] as? String == "settings.top_p")
            (status, _) = try await call(.get, "/bodhi/v1/chats?limit=lots")
            #expect(status == 400)

            // Another user sees none of it.
            let identity = app.services.identity
            _ = try await identity.register(username: "uma", password: "uma password")
            let root = try await identity.authenticate(
                sessionToken: identity.login(username: "root", password: "root password", client: "t").sessionToken)
            _ = try await identity.setRole(userID: "uma", role: .user, by: root)
            let umaToken = try await identity.createToken(forUser: "uma", name: "t", scope: .user, models: nil, expiresIn: nil).token
            let uma = client.with(authorization: "Bearer \(umaToken)")
            (status, body) = try await call(.get, "/bodhi/v1/chats", as: uma)
            #expect(status == 200 && (body["data"] as? [Any])?.isEmpty == true)
            (status, _) = try await call(.get, "/bodhi/v1/chats/\(id)", as: uma)
            #expect(status == 404)
            (status, _) = try await call(.delete, "/bodhi/v1/chats/\(id)", as: uma)
            #expect(status == 404)

            (status, _) = try await call(.delete, "/bodhi/v1/chats/\(id)")
            #expect(status == 204)
            (status, _) = try await call(.get, "/bodhi/v1/chats/\(id)")
            #expect(status == 404)
        }
    }
}
