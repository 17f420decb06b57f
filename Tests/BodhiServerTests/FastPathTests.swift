#if canImport(Glibc)
import Glibc
#endif
import BodhiCore
@testable import BodhiServer
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Testing

/// Inference requests with a token Bodhi has checked before are answered by the fast path, the
/// rest by the router: clients see the same answers either way, in the order they asked.
@Suite(.timeLimit(.minutes(2))) struct FastPathTests {
    let hub: String

    init() throws {
        hub = try TestApp.hubWithTinyModel("fast-path")
    }

    static let unknownModel = ByteBuffer(string: #"{"model":"nobody/nothing:Q4_0","messages":[{"role":"user","content":"hi"}]}"#)

    /// The names of the response's headers.
    static func headerNames(_ response: TestResponse) -> Set<String> {
        Set(response.headers.map { $0.name.canonicalName })
    }

    @Test func answersMatchTheRoutersWhicheverPathServesThem() async throws {
        try await TestApp.with(hub: hub) { _, client in
            // The first request checks the token (the router); the next ones find it remembered.
            var answers: [(status: HTTPResponse.Status, headers: Set<String>, body: NSDictionary)] = []
            for attempt in 0..<3 {
                answers.append(try await client.execute(
                    uri: "/v1/chat/completions", method: .post, headers: [HTTPField.Name("X-Request-Id")!: "trace-\(attempt)"],
                    body: Self.unknownModel
                ) { response in
                    let error = try #require(try JSONSerialization.jsonObject(with: Data(String(buffer: response.body).utf8)) as? NSDictionary)
                    let detail = try #require(error["error"] as? [String: Any])
                    #expect(detail["code"] as? String == "model_not_found")
                    #expect(response.headers[HTTPField.Name("X-Request-Id")!] == "trace-\(attempt)")
                    #expect(response.headers[HTTPField.Name("Bodhi-API-Version")!] == "1.0")
                    #expect(response.headers[.server] == "bodhi")
                    #expect(response.headers[.date]?.hasSuffix(" GMT") == true)
                    #expect(response.headers[.contentType] == "application/json")
                    return (response.status, Self.headerNames(response), error)
                })
            }
            for answer in answers.dropFirst() {
                #expect(answer.status == answers[0].status)
                #expect(answer.headers == answers[0].headers)
                #expect(answer.body == answers[0].body)
            }
        }
    }

    @Test func theFastPathTakesOnlyWhatNeedsNeitherTheDatabaseNorAnErrorPage() async throws {
        let limits = ["BODHI_RATE_LIMIT_POWER_USER": "inference=2/m management=1000/m"]
        try await TestApp.with(hub: hub, environment: limits) { app, client in
            let route = FastInferenceRoute(services: app.services)
            func head(_ method: HTTPRequest.Method = .post, _ path: String = "/v1/chat/completions", _ fields: HTTPFields? = nil) -> HTTPRequest {
                HTTPRequest(method: method, scheme: nil, authority: "localhost", path: path,
                            headerFields: fields ?? [.authorization: "Bearer \(app.rootToken)"])
            }
            #expect(route.candidate(head())?.operation == .chatCompletions)
            #expect(route.candidate(head(.post, "/v1/embeddings"))?.operation == .embeddings)
            #expect(route.candidate(head(.post, "/v1/completions?x=1")) == nil)
            #expect(route.candidate(head(.get, "/v1/models")) == nil)
            #expect(route.candidate(head(.post, "/api/chat")) == nil)
            #expect(route.candidate(head(.post, "/v1/chat/completions", [:])) == nil, "no token: a session, or a 401")
            #expect(route.candidate(head(.post, "/v1/chat/completions", [AccessMiddleware.apiKeyHeader: app.rootToken]))?.operation == .chatCompletions)
            #expect(route.candidate(head(.post, "/v1/chat/completions", [.authorization: "Bearer x", .connection: "close"])) == nil)
            #expect(route.candidate(head(.post, "/v1/chat/completions", [.authorization: "Bearer x", .expect: "100-continue"])) == nil)
            let chat = try #require(route.candidate(head()))
            var hashes = FastInferenceRoute.TokenHash()

            // A token is taken only once the router has checked it against the database (twice
            // here: the first check records the token's last use, a write that moves the marker).
            #expect(route.admit(chat, body: Self.unknownModel, clientAddress: "127.0.0.1", tokenHash: &hashes) == nil)
            for _ in 0..<2 {
                try await client.execute(uri: "/v1/models", method: .get) { response in #expect(response.status == .ok) }
            }
            let admitted = try #require(route.admit(chat, body: Self.unknownModel, clientAddress: "127.0.0.1", tokenHash: &hashes))
            #expect(admitted.principal.user.username == "root")
            // Taking it counted against the limit; a refusal is left to the router, which answers the 429.
            #expect(route.admit(chat, body: Self.unknownModel, clientAddress: "127.0.0.1", tokenHash: &hashes) != nil)
            #expect(route.admit(chat, body: Self.unknownModel, clientAddress: "127.0.0.1", tokenHash: &hashes) == nil)
            let stranger = try #require(route.candidate(head(.post, "/v1/chat/completions", [.authorization: "Bearer bodhi_nonsense"])))
            #expect(route.admit(stranger, body: Self.unknownModel, clientAddress: "127.0.0.1", tokenHash: &hashes) == nil)
        }
    }

    @Test func aConnectionHeaderMentionsCloseInAnyCase() {
        #expect(FastInferenceRoute.Headers.mentionsClose("close"))
        #expect(FastInferenceRoute.Headers.mentionsClose("Keep-Alive, CLOSE"))
        #expect(!FastInferenceRoute.Headers.mentionsClose("keep-alive"))
        #expect(!FastInferenceRoute.Headers.mentionsClose("clos"))
        #expect(!FastInferenceRoute.Headers.mentionsClose(""))
    }

    @Test func pipelinedRequestsAreAnsweredInTheOrderSent() async throws {
        try await TestApp.with(hub: hub) { app, client in
            // Have the token remembered (see above), so that the fast path takes the first two
            // requests, one after the other, while the rest wait behind them.
            for _ in 0..<2 {
                try await client.execute(uri: "/v1/chat/completions", method: .post, body: Self.unknownModel) { _ in }
            }
            let port = try #require(client.inner.port)
            let chat = String(buffer: Self.unknownModel)
            func post(_ id: String) -> String {
                "POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer \(app.rootToken)\r\n"
                    + "X-Request-Id: \(id)\r\nContent-Type: application/json\r\nContent-Length: \(chat.utf8.count)\r\n\r\n\(chat)"
            }
            let models = "GET /v1/models HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer \(app.rootToken)\r\nX-Request-Id: c\r\n\r\n"
            let responses = try RawHTTP.exchange(port: port, send: post("a") + post("b") + models + post("d"), responses: 4)
            #expect(responses.map(\.status) == [404, 404, 200, 404])
            #expect(responses.map { $0.headers["x-request-id"] } == ["a", "b", "c", "d"])
            #expect(responses[2].body.contains("tiny-GGUF:Q4_K_M"))
        }
    }

    @Test func requestsTheFastPathDeclinesGetTheRoutersAnswers() async throws {
        let limits = ["BODHI_RATE_LIMIT_POWER_USER": "inference=3/m management=1000/m"]
        try await TestApp.with(hub: hub, maxBody: 200, environment: limits) { _, client in
            try await client.execute(uri: "/v1/chat/completions", method: .post, body: Self.unknownModel) { response in
                #expect(response.status == .notFound)
            }
            // A body over the limit: the router's 413.
            let large = ByteBuffer(string: #"{"model":"nobody/nothing:Q4_0","prompt":""# + String(repeating: "x", count: 500) + "\"}")
            try await client.execute(uri: "/v1/completions", method: .post, body: large) { response in
                #expect(response.status == .contentTooLarge)
            }
            try await client.execute(uri: "/v1/chat/completions", method: .post, body: Self.unknownModel) { response in
                #expect(response.status == .notFound)
                #expect(response.headers[HTTPField.Name("RateLimit")!] == nil, "errors carry no RateLimit state, as from the router")
            }
            // The limit's third request was the last: the router's 429, with when to come back.
            try await client.execute(uri: "/v1/chat/completions", method: .post, body: Self.unknownModel) { response in
                #expect(response.status == .tooManyRequests)
                #expect(response.headers[.retryAfter] != nil)
                #expect(response.headers[HTTPField.Name("RateLimit-Policy")!]?.contains("inference") == true)
            }
            // A token nobody issued: the router's 401.
            try await client.with(authorization: "Bearer bodhi_nonsense").execute(
                uri: "/v1/chat/completions", method: .post, body: Self.unknownModel
            ) { response in
                #expect(response.status == .unauthorized)
            }
        }
    }
}

/// HTTP/1.1 over a plain socket, for what a client library will not do (pipelining).
enum RawHTTP {
    struct Reply {
        let status: Int
        let headers: [String: String]
        let body: String
    }

    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    /// Sends `text` in one write and reads `responses` replies with Content-Length bodies.
    static func exchange(port: Int, send text: String, responses: Int) throws -> [Reply] {
        let socket = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard socket >= 0 else { throw Failure(description: "socket: \(errno)") }
        defer { close(socket) }
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(socket, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(socket, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { throw Failure(description: "connect: \(errno)") }
        let bytes = Array(text.utf8)
        guard Glibc.send(socket, bytes, bytes.count, 0) == bytes.count else { throw Failure(description: "send: \(errno)") }
        var received: [UInt8] = []
        var replies: [Reply] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while replies.count < responses {
            if let (reply, length) = parse(received) {
                replies.append(reply)
                received.removeFirst(length)
                continue
            }
            let count = recv(socket, &buffer, buffer.count, 0)
            guard count > 0 else { throw Failure(description: "connection ended after \(replies.count) replies: \(errno)") }
            received += buffer[0..<count]
        }
        return replies
    }

    /// The first whole reply in `bytes`, and how many bytes it took.
    private static func parse(_ bytes: [UInt8]) -> (Reply, Int)? {
        let separator: [UInt8] = Array("\r\n\r\n".utf8)
        guard let end = (0...max(0, bytes.count - 4)).first(where: { bytes.count >= 4 && Array(bytes[$0..<$0 + 4]) == separator })
        else { return nil }
        let lines = String(decoding: bytes[0..<end], as: UTF8.self).components(separatedBy: "\r\n")
        guard let statusLine = lines.first, let status = Int(statusLine.split(separator: " ")[1]) else { return nil }
        var headers: [String: String] = [:]
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        let length = Int(headers["content-length"] ?? "0") ?? 0
        let total = end + 4 + length
        guard bytes.count >= total else { return nil }
        return (Reply(status: status, headers: headers, body: String(decoding: bytes[(end + 4)..<total], as: UTF8.self)), total)
    }
}

@Suite(.timeLimit(.minutes(2))) struct APITokenHeaderTests {
    @Test func tokensAreReadAsClientsSendThem() throws {
        #expect(try AccessMiddleware.apiToken(authorization: "Bearer bodhi_abc", apiKey: nil) == "bodhi_abc")
        #expect(try AccessMiddleware.apiToken(authorization: "bearer   bodhi_abc ", apiKey: nil) == "bodhi_abc")
        #expect(try AccessMiddleware.apiToken(authorization: "BEARER bodhi_abc", apiKey: "ignored") == "bodhi_abc")
        #expect(try AccessMiddleware.apiToken(authorization: nil, apiKey: " bodhi_key ") == "bodhi_key")
        #expect(try AccessMiddleware.apiToken(authorization: nil, apiKey: nil) == nil)
        for malformed in ["Basic dXNlcjpwYXNz", "Bearer", "Bearer ", "Bearerbodhi_abc", "Bearer\tbodhi_abc", "Token bodhi_abc"] {
            #expect(throws: BodhiError.self, "\(malformed)") { try AccessMiddleware.apiToken(authorization: malformed, apiKey: nil) }
        }
    }
}
