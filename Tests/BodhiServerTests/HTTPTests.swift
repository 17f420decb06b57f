import AsyncHTTPClient
import BodhiCore
import BodhiEngine
import BodhiHub
import BodhiModels
@testable import BodhiServer
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import Testing

/// In-process HTTP tests of the routes that need no engine.
@Suite(.timeLimit(.minutes(2))) struct HTTPTests {
    let hub: String

    init() throws {
        hub = try TestApp.hubWithTinyModel("http")
    }

    func withApp(maxBody: Int = 1024, _ test: @Sendable (TestApp.Client) async throws -> Void) async throws {
        try await TestApp.with(hub: hub, maxBody: maxBody) { _, client in try await test(client) }
    }

    func json(_ buffer: ByteBuffer) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(String(buffer: buffer).utf8)) as? [String: Any])
    }

    func openAIError(_ buffer: ByteBuffer) throws -> [String: Any] {
        try #require(try json(buffer)["error"] as? [String: Any])
    }

    @Test func pingAnswersPong() async throws {
        try await withApp { client in
            try await client.execute(uri: "/ping", method: .get) { response in
                #expect(response.status == .ok)
                let value = try json(response.body)["message"] as? String
                #expect(value == "pong")
            }
        }
    }

    @Test func modelsAreListedAndRetrievableEncodedOrNot() async throws {
        try await withApp { client in
            try await client.execute(uri: "/v1/models", method: .get) { response in
                let data = try #require(try json(response.body)["data"] as? [[String: Any]])
                #expect(data.map { $0["id"] as? String } == ["org/tiny-GGUF:Q4_K_M"])
                #expect(data.first?["owned_by"] as? String == "org")
                #expect(data.first?["object"] as? String == "model")
            }
            for path in ["/v1/models/org/tiny-GGUF:Q4_K_M", "/v1/models/org%2Ftiny-GGUF%3AQ4_K_M"] {
                try await client.execute(uri: path, method: .get) { response in
                    #expect(response.status == .ok)
                    let value = try json(response.body)["id"] as? String
                    #expect(value == "org/tiny-GGUF:Q4_K_M")
                }
            }
            try await client.execute(uri: "/v1/models/org/none:Q4_0", method: .get) { response in
                #expect(response.status == .notFound)
                let value = try openAIError(response.body)["code"] as? String
                #expect(value == "model_not_found")
            }
        }
    }

    @Test func everyPathAnswersAMethodItLacksWith405AndItsMethodsInAllow() async throws {
        try await withApp { client in
            var byPath: [String: Set<String>] = [:]
            for key in RouteTable.routes.keys {
                let parts = key.split(separator: " ", maxSplits: 1).map(String.init)
                byPath[parts[1], default: []].insert(parts[0])
            }
            for (pattern, methods) in byPath {
                let path = pattern.replacingOccurrences(of: "**", with: "a/b")
                    .replacingOccurrences(of: #"\{[a-z_]+\}"#, with: "x", options: .regularExpression)
                let missing = ["PUT", "PATCH", "DELETE", "POST", "GET"].first { !methods.contains($0) && !(methods.contains("GET") && $0 == "HEAD") }
                guard let missing else { continue }
                try await client.execute(uri: path, method: HTTPRequest.Method(missing)!) { response in
                    #expect(response.status == .methodNotAllowed, "\(missing) \(path)")
                    // Other routes may match the same path (`/bodhi/v1/models/**` and `.../pull/{id}`).
                    let allow = Set((response.headers[HTTPField.Name("Allow")!] ?? "").split(separator: ", ").map(String.init))
                    #expect(allow.isSuperset(of: methods) && !allow.contains(missing), "\(missing) \(path): \(allow)")
                    #expect(!allow.contains("GET") || allow.contains("HEAD"), "\(path)")
                }
            }
            // HEAD is GET without the body.
            try await client.execute(uri: "/v1/models", method: .head) { response in
                #expect(response.status == .ok && response.body.readableBytes == 0)
                #expect(response.headers[.contentType] == "application/json")
            }
        }
    }

    @Test func badRequestsGetOpenAIErrors() async throws {
        try await withApp { client in
            let cases: [(String, HTTPResponse.Status, String?)] = [
                (#"{"model":"#, .badRequest, nil),
                (#"[1,2]"#, .badRequest, nil),
                (#"{"messages":[{"role":"user","content":"hi"}]}"#, .badRequest, "model"),
                (#"{"model":42}"#, .badRequest, "model"),
                (#"{"model":"org/tiny-GGUF:Q4_K_M","stream":"yes"}"#, .badRequest, "stream"),
                (#"{"model":"nobody/nothing:Q4_0","messages":[{"role":"user","content":"hi"}]}"#, .notFound, "model"),
                // Checked before any engine is asked, whatever the model.
                (#"{"model":"org/tiny-GGUF:Q4_K_M","messages":[]}"#, .badRequest, "messages"),
                (#"{"model":"org/tiny-GGUF:Q4_K_M","messages":[{"role":"user","content":"hi"}],"temperature":-1}"#, .badRequest, "temperature"),
            ]
            for (body, status, param) in cases {
                try await client.execute(uri: "/v1/chat/completions", method: .post, body: ByteBuffer(string: body)) { response in
                    #expect(response.status == status, "\(body)")
                    let error = try openAIError(response.body)
                    #expect((error["message"] as? String)?.isEmpty == false)
                    #expect(error["type"] as? String == "invalid_request_error")
                    #expect(error["param"] as? String == param, "\(body)")
                }
            }
        }
    }

    @Test func oversizedBodiesAre413() async throws {
        try await withApp(maxBody: 100) { client in
            let body = ByteBuffer(string: #"{"model":"org/tiny-GGUF:Q4_K_M","prompt":""# + String(repeating: "x", count: 500) + "\"}")
            try await client.execute(uri: "/v1/completions", method: .post, body: body) { response in
                #expect(response.status == .contentTooLarge)
                let value = try openAIError(response.body)["code"] as? String
                #expect(value == "payload_too_large")
            }
        }
    }

    @Test func engineThatCannotStartIsAClearServerError() async throws {
        try await withApp { client in
            let body = ByteBuffer(string: #"{"model":"org/tiny-GGUF:Q4_K_M","input":"hi"}"#)
            try await client.execute(uri: "/v1/embeddings", method: .post, body: body) { response in
                #expect(response.status == .internalServerError)
                let message = try #require(try openAIError(response.body)["message"] as? String)
                #expect(message.contains("org/tiny-GGUF:Q4_K_M"))
                #expect(message.contains("/nonexistent"))
            }
        }
    }

    @Test func unknownRoutesAre404InTheirFamilysFormat() async throws {
        try await withApp { client in
            try await client.execute(uri: "/v1/nothing", method: .get) { response in
                #expect(response.status == .notFound)
                let value = try openAIError(response.body)["type"] as? String
                #expect(value == "invalid_request_error")
            }
            try await client.execute(uri: "/bodhi/v1/nothing", method: .get) { response in
                #expect(response.status == .notFound)
                let value = try openAIError(response.body)["code"] as? String
                #expect(value == "not_found")
            }
        }
    }

    @Test func bodhiModelsListsDetailsAndRefusesBadQueries() async throws {
        try await withApp { client in
            try await client.execute(uri: "/bodhi/v1/models?quant=q4_k_m&sort=size&order=desc&page=1&page_size=10", method: .get) { response in
                #expect(response.status == .ok)
                let page = try json(response.body)
                #expect(page["total"] as? Int == 1)
                let model = try #require((page["data"] as? [[String: Any]])?.first)
                #expect(model["id"] as? String == "org/tiny-GGUF:Q4_K_M")
                #expect(model["size_bytes"] as? Int == 64)
                // The file is not a real GGUF: the listing says so instead of failing.
                #expect((model["header_error"] as? String)?.contains("GGUF") == true)
                #expect(model["aliases"] as? [String] == [])
            }
            for path in ["/bodhi/v1/models/org/tiny-GGUF:Q4_K_M", "/bodhi/v1/models/org%2Ftiny-GGUF%3AQ4_K_M"] {
                try await client.execute(uri: path, method: .get) { response in
                    #expect(response.status == .ok)
                    let id = try json(response.body)["id"] as? String
                    #expect(id == "org/tiny-GGUF:Q4_K_M")
                }
            }
            try await client.execute(uri: "/bodhi/v1/models?sort=date", method: .get) { response in
                #expect(response.status == .badRequest)
                let code = try openAIError(response.body)["code"] as? String
                #expect(code == "invalid_request")
            }
            try await client.execute(uri: "/bodhi/v1/models/org/none:Q4_0", method: .get) { response in
                #expect(response.status == .notFound)
            }
        }
    }

    @Test func deletingAModelRemovesItFromEveryList() async throws {
        try await withApp { client in
            try await client.execute(uri: "/bodhi/v1/models/org%2Ftiny-GGUF%3AQ4_K_M", method: .delete) { response in
                #expect(response.status == .ok)
                let deleted = try json(response.body)
                #expect(deleted["id"] as? String == "org/tiny-GGUF:Q4_K_M")
                #expect(deleted["deleted"] as? Bool == true)
            }
            try await client.execute(uri: "/v1/models", method: .get) { response in
                let data = try json(response.body)["data"] as? [Any]
                #expect(data?.isEmpty == true)
            }
            try await client.execute(uri: "/bodhi/v1/models/org/tiny-GGUF:Q4_K_M", method: .delete) { response in
                #expect(response.status == .notFound)
            }
        }
    }

    @Test func enginesListIsEmptyBeforeAnyRequest() async throws {
        try await withApp { client in
            try await client.execute(uri: "/bodhi/v1/engines", method: .get) { response in
                #expect(response.status == .ok)
                let engines = try json(response.body)["engines"] as? [Any]
                #expect(engines?.isEmpty == true)
            }
        }
    }

    func send(_ client: TestApp.Client, _ method: HTTPRequest.Method, _ uri: String, _ body: String? = nil) async throws -> (HTTPResponse.Status, [String: Any]) {
        try await client.execute(uri: uri, method: method, body: body.map { ByteBuffer(string: $0) }) { response in
            (response.status, (try? json(response.body)) ?? [:])
        }
    }

    @Test func aliasesAreManagedListedWithModelsAndGuardTheirModel() async throws {
        try await withApp(maxBody: 64 * 1024) { client in
            var (status, body) = try await send(client, .post, "/bodhi/v1/aliases",
                #"{"name":"tiny","model":"org/tiny-GGUF:Q4_K_M","defaults":{"temperature":0.1,"system":"Be brief."},"engine":{"parallel":1}}"#)
            #expect(status == .created)
            #expect(body["model"] as? String == "org/tiny-GGUF:Q4_K_M")
            (status, body) = try await send(client, .post, "/bodhi/v1/aliases", #"{"name":"bad","model":"org/tiny-GGUF:Q4_K_M","engine":{"extra_args":["--port","1"]}}"#)
            #expect(status == .badRequest)
            #expect((body["error"] as? [String: Any])?["message"] as? String == "'--port' is not an engine flag an alias may set. Allowed: " + EngineOverrides.allowedFlags.keys.filter { $0.hasPrefix("--") }.sorted().joined(separator: ", ") + ".")
            (status, _) = try await send(client, .post, "/bodhi/v1/aliases/tiny/copy", #"{"name":"tiny-copy"}"#)
            #expect(status == .created)
            (status, body) = try await send(client, .put, "/bodhi/v1/aliases/tiny-copy", #"{"model":"org/tiny-GGUF:Q4_K_M","defaults":{"top_k":5}}"#)
            #expect(status == .ok)
            #expect((body["defaults"] as? [String: Any])?["top_k"] as? Int == 5)
            #expect((body["defaults"] as? [String: Any])?["temperature"] == nil)

            (_, body) = try await send(client, .get, "/v1/models")
            let ids = (body["data"] as? [[String: Any]])?.compactMap { $0["id"] as? String }
            #expect(ids == ["org/tiny-GGUF:Q4_K_M", "tiny", "tiny-copy"])
            (status, body) = try await send(client, .get, "/v1/models/tiny")
            #expect(status == .ok && body["owned_by"] as? String == "bodhi")
            (_, body) = try await send(client, .get, "/bodhi/v1/models/tiny")
            #expect(body["id"] as? String == "org/tiny-GGUF:Q4_K_M")
            #expect(body["aliases"] as? [String] == ["tiny", "tiny-copy"])

            // The model is guarded while aliases serve it; force removes both.
            (status, body) = try await send(client, .delete, "/bodhi/v1/models/org%2Ftiny-GGUF%3AQ4_K_M")
            #expect(status == .conflict)
            #expect(((body["error"] as? [String: Any])?["message"] as? String)?.contains("tiny, tiny-copy") == true)
            (status, _) = try await send(client, .delete, "/bodhi/v1/aliases/tiny")
            #expect(status == .ok)
            (status, _) = try await send(client, .get, "/bodhi/v1/aliases/tiny")
            #expect(status == .notFound)
            (status, _) = try await send(client, .delete, "/bodhi/v1/models/org%2Ftiny-GGUF%3AQ4_K_M?force=true")
            #expect(status == .ok)
            (_, body) = try await send(client, .get, "/bodhi/v1/aliases")
            #expect((body["data"] as? [Any])?.isEmpty == true)
        }
    }
}
