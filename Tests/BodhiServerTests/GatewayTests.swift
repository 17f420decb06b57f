import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Testing
@testable import BodhiServer

@Suite(.timeLimit(.minutes(2))) struct GatewayTests {
    let hub: String

    init() throws {
        hub = try TestApp.emptyHub("gateway")
    }

    @Test func everyResponseCarriesTheVersionAndARequestID() async throws {
        try await TestApp.with(hub: hub) { _, client in
            for (uri, method) in [("/ping", HTTPRequest.Method.get), ("/v1/models", .get), ("/bodhi/v1/nothing", .get), ("/api/tags", .get)] {
                try await client.execute(uri: uri, method: method) { response in
                    #expect(response.headers[APIVersioning.versionHeader] == APIVersioning.version, "\(uri)")
                    #expect(response.headers[APIVersioning.requestIDHeader]?.isEmpty == false, "\(uri)")
                }
            }
            // Refused requests too, and a client's own id comes back.
            try await client.with(authorization: nil).execute(
                uri: "/v1/models", method: .get, headers: [APIVersioning.requestIDHeader: "trace-42"]
            ) { response in
                #expect(response.status == .unauthorized)
                #expect(response.headers[APIVersioning.requestIDHeader] == "trace-42")
                #expect(response.headers[APIVersioning.versionHeader] == APIVersioning.version)
            }
        }
    }

    @Test func deprecatedRoutesPointToTheirSuccessor() async throws {
        try await TestApp.with(hub: hub) { app, client in
            try await client.execute(uri: "/api/embeddings", method: .post, body: ByteBuffer(string: #"{"model":"x"}"#)) { response in
                #expect(response.headers[APIVersioning.deprecationHeader] == "@1795564800")
                #expect(response.headers[APIVersioning.sunsetHeader] == "Thu, 25 Nov 2027 00:00:00 GMT")
                #expect(response.headers[APIVersioning.linkHeader] == #"</api/embed>; rel="successor-version""#)
            }
            try await client.execute(uri: "/api/embed", method: .post, body: ByteBuffer(string: #"{"model":"x"}"#)) { response in
                #expect(response.headers[APIVersioning.deprecationHeader] == nil)
            }
            // Every deprecation names a registered route.
            let routes = Set(BodhiHTTPServer.router(services: app.services).routes.map { "\($0.method.rawValue) \($0.path)" })
            for key in APIVersioning.deprecations.keys { #expect(routes.contains(key), "\(key)") }
        }
    }

    @Test func healthSaysLiveReadyAndWhy() async throws {
        try await TestApp.with(hub: hub) { _, client in
            let anonymous = client.with(authorization: nil)
            try await anonymous.execute(uri: "/health/live", method: .get) { response in #expect(response.status == .ok) }
            try await anonymous.execute(uri: "/health/ready", method: .get) { response in
                #expect(response.status == .ok)
                let body = try #require(try JSONSerialization.jsonObject(with: Data(String(buffer: response.body).utf8)) as? [String: Any])
                #expect(body["status"] as? String == "ready")
                let components = try #require(body["components"] as? [String: [String: Any]])
                #expect(Set(components.keys) == ["database", "model_store", "disk", "engine_binary", "memory"])
                #expect(components.values.allSatisfy { $0["status"] as? String == "ok" })
            }
            try await anonymous.execute(uri: "/health", method: .get) { response in
                #expect(String(buffer: response.body) == #"{"status":"ready"}"#)
            }
        }
        // A model store that is not there: not ready, 503, and the reason.
        try await TestApp.with(hub: hub + "/missing") { _, client in
            try await client.with(authorization: nil).execute(uri: "/health/ready", method: .get) { response in
                #expect(response.status == .serviceUnavailable)
                #expect(String(buffer: response.body).contains("is not a readable directory"))
            }
        }
    }
}

@Suite(.timeLimit(.minutes(2))) struct OpenAPITests {
    @Test func theDocumentListsEveryRouteWithItsAccessRule() async throws {
        let hub = FileManager.default.temporaryDirectory.appendingPathComponent("bodhi-openapi-\(UUID().uuidString)").path
        try await TestApp.with(hub: hub) { app, client in
            let document: [String: Any] = try await client.with(authorization: nil).execute(uri: "/openapi.json", method: .get) { response in
                #expect(response.status == .ok)
                return try #require(try JSONSerialization.jsonObject(with: Data(String(buffer: response.body).utf8)) as? [String: Any])
            }
            #expect(document["openapi"] as? String == "3.1.0")
            let paths = try #require(document["paths"] as? [String: [String: Any]])
            for route in BodhiHTTPServer.router(services: app.services).routes {
                let path = "\(route.path)".replacingOccurrences(of: "**", with: "{model}")
                let operation = try #require(paths[path]?[route.method.rawValue.lowercased()] as? [String: Any], "\(route.method) \(path) is missing")
                let rule = try #require(AccessPolicy.rules["\(route.method.rawValue) \(route.path)"])
                #expect(operation["x-bodhi-access"] as? String == OpenAPIDocument.describe(rule))
            }
        }
    }

    @Test func engineMetricsGetAModelLabelAndNamesPromtoolAccepts() {
        let engine = """
            # HELP llamacpp:prompt_tokens_total Number of prompt tokens processed.
            # TYPE llamacpp:prompt_tokens_total counter
            llamacpp:prompt_tokens_total 12
            # HELP llamacpp:n_tokens_max Largest observed n_tokens.
            # TYPE llamacpp:n_tokens_max counter
            llamacpp:n_tokens_max{slot="0"} 42
            """
        let merged = EngineMetrics.relabel([(model: "a/b:Q4", text: engine), (model: "c\"d", text: engine)])
        #expect(merged == """
            # HELP llamacpp_prompt_tokens_total Number of prompt tokens processed.
            # TYPE llamacpp_prompt_tokens_total counter
            llamacpp_prompt_tokens_total{model="a/b:Q4"} 12
            llamacpp_prompt_tokens_total{model="c\\"d"} 12
            # HELP llamacpp_n_tokens_max Largest observed n_tokens.
            # TYPE llamacpp_n_tokens_max gauge
            llamacpp_n_tokens_max{model="a/b:Q4",slot="0"} 42
            llamacpp_n_tokens_max{model="c\\"d",slot="0"} 42

            """)
    }
}
