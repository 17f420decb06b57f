import BodhiCore
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Testing
@testable import BodhiServer

@Suite(.timeLimit(.minutes(2))) struct SettingsAPITests {
    @Test func adminsSeeEverySettingAndChangeTheEditableOnes() async throws {
        let hub = FileManager.default.temporaryDirectory.appendingPathComponent("bodhi-settings-\(UUID().uuidString)").path
        try await TestApp.with(hub: hub) { app, client in
            let signIn = try await app.services.identity.login(username: "root", password: "root password", client: "t")
            let admin = client.with(authorization: nil)
            let session: HTTPFields = [.cookie: "bodhi_session=\(signIn.sessionToken)", AccessMiddleware.csrfHeader: signIn.csrfToken]
            func call(_ method: HTTPRequest.Method, _ uri: String, _ body: String? = nil) async throws -> (Int, [String: Any]) {
                try await admin.execute(uri: uri, method: method, headers: session, body: body.map { ByteBuffer(string: $0) }) { response in
                    (Int(response.status.code), (try? JSONSerialization.jsonObject(with: Data(String(buffer: response.body).utf8)) as? [String: Any]) ?? [:])
                }
            }
            var (status, body) = try await call(.get, "/bodhi/v1/settings")
            #expect(status == 200)
            let list = try #require(body["data"] as? [[String: Any]])
            #expect(list.count == SettingKey.allCases.count)
            let keepAlive = try #require(list.first { $0["key"] as? String == "BODHI_KEEP_ALIVE" })
            #expect(keepAlive["value"] as? String == "5m" && keepAlive["default"] as? String == "5m")
            #expect(keepAlive["source"] as? String == "default" && keepAlive["editable"] as? Bool == true)
            let engine = try #require(list.first { $0["key"] as? String == "BODHI_LLAMA_SERVER" })
            #expect(engine["source"] as? String == "environment" && engine["editable"] as? Bool == false)

            (status, body) = try await call(.put, "/bodhi/v1/settings/BODHI_KEEP_ALIVE", #"{"value":"90s"}"#)
            #expect(status == 200 && body["value"] as? String == "90s")
            #expect((body["source"] as? String)?.hasPrefix("settings file") == true)
            (status, body) = try await call(.put, "/bodhi/v1/settings/BODHI_MAX_LOADED_MODELS", #"{"value":"lots"}"#)
            #expect(status == 400)
            #expect(((body["error"] as? [String: Any])?["message"] as? String)?.contains("BODHI_MAX_LOADED_MODELS") == true)
            (status, _) = try await call(.put, "/bodhi/v1/settings/BODHI_PORT", #"{"value":"80"}"#)
            #expect(status == 400)
            (status, _) = try await call(.put, "/bodhi/v1/settings/NO_SUCH", #"{"value":"1"}"#)
            #expect(status == 404)

            // The change is in the file, so a restart keeps it; reset removes it.
            let file = try String(contentsOfFile: app.home + "/settings.yaml", encoding: .utf8)
            #expect(file.contains("BODHI_KEEP_ALIVE: 90s") && !file.contains("lots"))
            (status, body) = try await call(.delete, "/bodhi/v1/settings/BODHI_KEEP_ALIVE")
            #expect(status == 200 && body["value"] as? String == "5m" && body["source"] as? String == "default")

            // A power_user token is not an admin.
            try await client.execute(uri: "/bodhi/v1/settings", method: .get) { response in #expect(response.status == .forbidden) }
        }
    }
}
