import BodhiCore
import BodhiEngine
import Foundation
import Hummingbird

/// Renders every error that escapes a route in the format of the API family the request
/// was for: OpenAI's error JSON under `/v1`, Bodhi's own JSON elsewhere. As router
/// middleware it also covers requests that match no route.
struct ErrorRenderingMiddleware: RouterMiddleware {
    typealias Context = BodhiRequestContext
    let maxRequestBodyBytes: Int

    func handle(
        _ request: Request, context: Context, next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        do {
            return try await next(request, context)
        } catch {
            let bodhiError = Self.bodhiError(from: error, method: request.method, path: request.uri.path, maxBodyBytes: maxRequestBodyBytes)
            return Self.render(bodhiError, path: request.uri.path)
        }
    }

    static func bodhiError(from error: any Error, method: HTTPRequest.Method, path: String, maxBodyBytes: Int) -> BodhiError {
        if let error = error as? BodhiError { return error }
        // Hummingbird's own errors: no route, body over the limit, ...
        if let error = error as? any HTTPResponseError {
            switch error.status {
            case .notFound: return .notFound("There is no route \(method) \(path).")
            case .contentTooLarge: return .payloadTooLarge(limitBytes: maxBodyBytes)
            case .methodNotAllowed: return BodhiError(.invalidRequest, status: 405, "\(method) is not allowed on \(path).")
            default:
                let message = (error as? HTTPError)?.body ?? error.status.reasonPhrase
                return BodhiError(.invalidRequest, status: Int(error.status.code), message)
            }
        }
        return .internalError("Internal error: \(error)")
    }

    static func render(_ error: BodhiError, path: String) -> Response {
        let (headers, body) = rendered(error, path: path)
        return Response(status: .init(code: error.status), headers: headers, body: .init(byteBuffer: body))
    }

    /// `render`'s headers and body, in the shape of the API `path` belongs to.
    static func rendered(_ error: BodhiError, path: String) -> (HTTPFields, ByteBuffer) {
        var headers: HTTPFields = [.contentType: "application/json"]
        if let retryAfter = error.retryAfterSeconds { headers[.retryAfter] = String(retryAfter) }
        let body: Data
        switch APIFamily.of(path: path) {
        case .anthropic: body = (try? JSONSerialization.data(withJSONObject: anthropicError(error))) ?? Data()
        case .openAI: body = (try? JSONEncoder().encode(OpenAIErrorBody(error))) ?? Data()
        // Ollama's shape: a bare message.
        case .ollama: body = (try? JSONEncoder().encode(["error": error.message])) ?? Data()
        case .gemini: body = (try? JSONSerialization.data(withJSONObject: googleError(error))) ?? Data()
        case .bodhi: body = (try? JSONEncoder().encode(BodhiErrorBody(error))) ?? Data()
        }
        return (headers, ByteBuffer(bytes: body))
    }
}

/// Anthropic's error JSON: `{"type": "error", "error": {"type", "message"}}`.
func anthropicError(_ error: BodhiError) -> [String: Any] {
    let type = switch error.status {
    case 400, 422: "invalid_request_error"
    case 401: "authentication_error"
    case 403: "permission_error"
    case 404: "not_found_error"
    case 413: "request_too_large"
    case 429: "rate_limit_error"
    case 503: "overloaded_error"
    default: "api_error"
    }
    return ["type": "error", "error": ["type": type, "message": error.message]]
}

/// Google's error JSON: `{"error": {"code", "message", "status"}}`, the status by gRPC's names.
func googleError(_ error: BodhiError) -> [String: Any] {
    let status = switch error.status {
    case 400, 413, 422: "INVALID_ARGUMENT"
    case 401: "UNAUTHENTICATED"
    case 403: "PERMISSION_DENIED"
    case 404: "NOT_FOUND"
    case 409: "ALREADY_EXISTS"
    case 429: "RESOURCE_EXHAUSTED"
    case 501: "UNIMPLEMENTED"
    case 503: "UNAVAILABLE"
    case 504: "DEADLINE_EXCEEDED"
    default: "INTERNAL"
    }
    return ["error": ["code": error.status, "message": error.message, "status": status]]
}

/// Bodhi's own error JSON: `{"error": {"code", "message"}}`.
struct BodhiErrorBody: Encodable {
    struct Detail: Encodable {
        let code: String
        let message: String
        /// The request field at fault, for forms to point at.
        let param: String?
    }
    let error: Detail

    init(_ error: BodhiError) {
        self.error = Detail(code: error.code.rawValue, message: error.message, param: error.param)
    }
}
