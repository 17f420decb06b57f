import BodhiBackends
import BodhiCore
import BodhiModels
@testable import BodhiServer
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing

/// An OpenAI-compatible server on a free loopback port that answers the same bytes every time:
/// a backend whose answers are fixed, so that Bodhi's two ways of serving can be compared.
enum FixedOpenAIServer {
    static let whole = #"{"choices":[{"finish_reason":"stop","index":0,"message":{"content":"Hello there, a long enough answer to be worth compressing. "# +
        String(repeating: "More words here. ", count: 80) + #"","role":"assistant"}}],"created":1,"id":"chatcmpl-1","model":"m","object":"chat.completion","usage":{"completion_tokens":2,"prompt_tokens":3,"total_tokens":5}}"#
    static let events = (0..<5).map { #"data: {"choices":[{"delta":{"content":"w\#($0) "},"index":0}],"id":"c","model":"m"}"# + "\n\n" }
        + [#"data: {"choices":[{"delta":{},"finish_reason":"stop","index":0}],"id":"c","model":"m"}"# + "\n\n", "data: [DONE]\n\n"]

    static func with(_ body: @Sendable (_ url: String) async throws -> Void) async throws {
        let router = Router()
        router.get("/v1/models") { _, _ in
            Response(status: .ok, headers: [.contentType: "application/json"],
                     body: .init(byteBuffer: ByteBuffer(string: #"{"object":"list","data":[{"id":"m","object":"model","created":1,"owned_by":"t"}]}"#)))
        }
        router.post("/v1/chat/completions") { request, _ in
            let sent = String(buffer: try await request.body.collect(upTo: 1 << 20))
            if sent.contains(#""stream":true"#) {
                return Response(status: .ok, headers: [.contentType: "text/event-stream"], body: ResponseBody { writer in
                    for event in events { try await writer.write(ByteBuffer(string: event)) }
                    try await writer.finish(nil)
                })
            }
            return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: whole)))
        }
        let (ports, port) = AsyncStream<Int>.makeStream()
        let app = Application(
            router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
            onServerRunning: { channel in port.yield(channel.localAddress?.port ?? 0) })
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await app.run() }
            var listening = ports.makeAsyncIterator()
            guard let bound = await listening.next() else { return }
            do {
                try await body("http://127.0.0.1:\(bound)")
            } catch {
                group.cancelAll()
                throw error
            }
            group.cancelAll()
        }
    }
}

/// The fast path and the router give the same answers: the same status, headers and bytes (ids
/// and times aside), whole and streamed, compressed or not; the metrics say which way served each.
@Suite(.timeLimit(.minutes(2))) struct ParityTests {
    struct Answer: Equatable {
        let status: HTTPResponse.Status
        let headers: [String: String]
        let body: String
    }

    /// What differs between any two answers: their ids, times and the quota left.
    static let varying: Set<String> = ["x-request-id", "date", "ratelimit"]

    static func fastPathCount(_ client: TestApp.Client) async throws -> Int {
        try await client.execute(uri: "/metrics", method: .get) { response in
            let line = String(buffer: response.body).split(separator: "\n")
                .first { $0.hasPrefix(#"bodhi_fast_path_requests_total{route="/v1/chat/completions"}"#) }
            return line.flatMap { Int($0.split(separator: " ").last ?? "") } ?? 0
        }
    }

    @Test func aWholeAnswerAndAStreamAreTheSameWhicheverWayServesThem() async throws {
        let hub = try TestApp.emptyHub("parity")
        try await FixedOpenAIServer.with { url in
            try await TestApp.with(hub: hub) { app, client in
                _ = try await app.services.backends.add(BackendConfig(name: "fixed", url: url, format: .openai), apiKey: nil)
                for (body, encoding) in [
                    (#"{"model":"fixed/m","messages":[{"role":"user","content":"hi"}]}"#, nil), (#"{"model":"fixed/m","messages":[{"role":"user","content":"hi"}]}"#, "gzip"),
                    (#"{"model":"fixed/m","messages":[{"role":"user","content":"hi"}],"stream":true}"#, nil), (#"{"model":"fixed/m","messages":[{"role":"user","content":"hi"}],"stream":true}"#, "gzip"),
                ] as [(String, String?)] {
                    var router: Answer?
                    var fast: Answer?
                    // A token of its own per case: its first requests go the router's way.
                    let token = try await app.services.identity.createToken(
                        forUser: "root", name: "parity-\(UUID().uuidString)", scope: .powerUser, models: nil, expiresIn: nil).token
                    let client = client.with(authorization: "Bearer \(token)")
                    // The token's first requests are checked against the database, by the router;
                    // once it is remembered, the fast path takes them.
                    for _ in 0..<6 where fast == nil {
                        let before = try await Self.fastPathCount(client)
                        var headers: HTTPFields = [.contentType: "application/json"]
                        if let encoding { headers[.acceptEncoding] = encoding }
                        let answer = try await client.execute(
                            uri: "/v1/chat/completions", method: .post, headers: headers, body: ByteBuffer(string: body)
                        ) { response in
                            Answer(
                                status: response.status,
                                headers: Dictionary(response.headers.filter { !Self.varying.contains($0.name.canonicalName) }
                                    .map { ($0.name.canonicalName, $0.value) }, uniquingKeysWith: { a, b in a + ", " + b }),
                                body: String(buffer: response.body))
                        }
                        #expect(answer.status == .ok, "\(answer.body)")
                        if try await Self.fastPathCount(client) > before { fast = answer } else if router == nil { router = answer }
                    }
                    let (byRouter, byFastPath) = (try #require(router, "no answer by the router"), try #require(fast, "no answer by the fast path"))
                    #expect(byRouter == byFastPath, "\(body) \(encoding ?? "identity")")
                    if encoding != nil { #expect(byFastPath.headers["content-encoding"] == "gzip") }
                    if body.contains("stream") { #expect(byFastPath.headers["content-type"] == "text/event-stream") }
                }
            }
        }
    }
}
