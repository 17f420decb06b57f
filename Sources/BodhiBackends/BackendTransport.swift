import AsyncHTTPClient
import BodhiCore
import BodhiEngine
import Foundation
import NIOCore
import NIOHTTP1

/// One HTTP exchange with a backend, the way every kind needs it: the answer's head as soon as it
/// comes, its body as it streams, the exchange stopped when the caller hangs up or stops reading,
/// and failures said as the backend's (which the caller's API renders).
struct BackendTransport: Sendable {
    let http: HTTPClient
    /// The backend's name, for messages.
    let backend: String

    /// How long a backend may take to start answering (a whole answer comes at once, after generation).
    static let headTimeout: TimeAmount = .minutes(10)

    func send(
        _ method: HTTPMethod, _ url: String, headers: HTTPHeaders, body: ByteBuffer? = nil, client: ClientConnection? = nil,
        headTimeout: TimeAmount = Self.headTimeout
    ) async throws -> EngineReply {
        var request = HTTPClientRequest(url: url)
        request.method = method
        request.headers = headers
        if let body {
            request.headers.replaceOrAdd(name: "Content-Type", value: "application/json")
            request.body = .bytes(body)
        }
        let (chunks, continuation) = AsyncThrowingStream<ByteBuffer, any Error>.makeStream()
        let head = AsyncThrowingStream<(Int, String?, Int?), any Error>.makeStream()
        // The exchange runs in a task of its own so that a hang-up or a reader that stops ends it
        // (cancelling the task cancels the HTTP request), whoever waits on it.
        let exchange = Task {
            do {
                let response = try await http.execute(request, timeout: headTimeout)
                head.continuation.yield((
                    Int(response.status.code), response.headers.first(name: "Content-Type"),
                    response.headers.first(name: "Retry-After").flatMap { Int($0.trimmingCharacters(in: .whitespaces)) }))
                head.continuation.finish()
                for try await chunk in response.body { continuation.yield(chunk) }
                continuation.finish()
            } catch {
                head.continuation.finish(throwing: error)
                continuation.finish(throwing: error)
            }
        }
        continuation.onTermination = { _ in exchange.cancel() }
        let watch = client?.onHangUp { exchange.cancel() }
        do {
            var heads = head.stream.makeAsyncIterator()
            guard let (status, contentType, retryAfter) = try await withTaskCancellationHandler(
                operation: { try await heads.next() }, onCancel: { exchange.cancel() })
            else { throw CancellationError() }
            let body = EngineReplyBody(chunks: chunks, cancel: {
                watch?.end()
                exchange.cancel()
            })
            return EngineReply(status: status, contentType: contentType, body: body, retryAfterSeconds: retryAfter)
        } catch {
            watch?.end()
            exchange.cancel()
            throw failure(error, url: url)
        }
    }

    /// A whole JSON answer of a management call (a model list), refused unless 2xx.
    func getJSON(_ url: String, headers: HTTPHeaders) async throws -> Any {
        let reply = try await send(.GET, url, headers: headers, headTimeout: .seconds(30))
        let bytes = try await reply.body.collect(upTo: 32 << 20)
        guard (200..<300).contains(reply.status) else {
            throw refusal(status: reply.status, body: bytes, url: url)
        }
        guard let object = try? JSONSerialization.jsonObject(with: Data(buffer: bytes)) else {
            throw BodhiError(.backendFailed, status: 502, "The backend '\(backend)' answered \(url) with something that is not JSON.")
        }
        return object
    }

    /// What a refused management call says: the backend's own message, and what the status means.
    func refusal(status: Int, body: ByteBuffer, url: String) -> BodhiError {
        let message = Self.errorMessage(in: body) ?? String(buffer: body).prefix(300).description
        let meaning: String
        switch status {
        case 401, 403: meaning = "the API key was refused"
        case 404: meaning = "there is no such endpoint; check the URL and --format"
        case 429: meaning = "the backend is rate limiting"
        default: meaning = "it answered \(status)"
        }
        return BodhiError(.backendFailed, status: 502, "The backend '\(backend)' refused \(url) (\(status)): \(meaning). It said: \(message)")
    }

    /// The message of an error answer in any of the shapes backends use (OpenAI's, Anthropic's,
    /// Google's, or a plain `error` string).
    static func errorMessage(in body: ByteBuffer) -> String? {
        guard let object = try? JSONSerialization.jsonObject(with: Data(buffer: body)) as? [String: Any] else { return nil }
        if let error = object["error"] as? [String: Any], let message = error["message"] as? String { return message }
        if let message = object["error"] as? String { return message }
        return object["message"] as? String
    }

    /// A failed exchange as the caller hears it: cancelled stays cancelled; an address that
    /// cannot be reached or does not answer in time is a 502 or 504 naming the backend.
    private func failure(_ error: any Error, url: String) -> any Error {
        if error is CancellationError || (error as? HTTPClientError) == .cancelled { return CancellationError() }
        if (error as? HTTPClientError) == .deadlineExceeded || (error as? HTTPClientError) == .readTimeout {
            return BodhiError(.backendFailed, status: 504, "The backend '\(backend)' did not answer \(url) in time.")
        }
        return BodhiError(.backendFailed, status: 502, "The backend '\(backend)' could not be reached at \(url): \(error)")
    }
}

extension HTTPHeaders {
    /// Headers with `Authorization: Bearer KEY` when there is a key.
    static func bearer(_ key: String?) -> HTTPHeaders {
        var headers = HTTPHeaders()
        if let key, !key.isEmpty { headers.add(name: "Authorization", value: "Bearer \(key)") }
        return headers
    }
}
