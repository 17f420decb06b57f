/// The one error type that crosses module boundaries: a stable code, the HTTP status it maps
/// to, and a message written for the person who made the request. Each API family renders it
/// in its own format (OpenAI's error JSON on `/v1`, Bodhi's JSON on `/bodhi/v1`).
public struct BodhiError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Code: String, Sendable {
        case invalidRequest = "invalid_request"
        case modelNotFound = "model_not_found"
        case notFound = "not_found"
        case payloadTooLarge = "payload_too_large"
        case engineUnavailable = "engine_unavailable"
        case engineLoadFailed = "engine_load_failed"
        case engineFailed = "engine_failed"
        /// A remote server or cloud API could not be reached, or failed (502, 504).
        case backendFailed = "backend_failed"
        case invalidSetting = "invalid_setting"
        case conflict = "conflict"
        case unauthorized = "unauthorized"
        case forbidden = "forbidden"
        case rateLimited = "rate_limited"
        case hubError = "hub_error"
        case insufficientStorage = "insufficient_storage"
        case internalError = "internal_error"
    }

    public var code: Code
    public var status: Int
    public var message: String
    /// The request field the error is about, where there is one (OpenAI's `param`).
    public var param: String?
    /// Seconds after which a retry may succeed (sent as `Retry-After`).
    public var retryAfterSeconds: Int?

    public init(_ code: Code, status: Int, _ message: String, param: String? = nil, retryAfterSeconds: Int? = nil) {
        self.code = code
        self.status = status
        self.message = message
        self.param = param
        self.retryAfterSeconds = retryAfterSeconds
    }

    public var description: String { message }

    public static func invalidRequest(_ message: String, param: String? = nil) -> BodhiError {
        BodhiError(.invalidRequest, status: 400, message, param: param)
    }

    public static func modelNotFound(_ name: String) -> BodhiError {
        BodhiError(.modelNotFound, status: 404,
                   "The model '\(name)' does not exist or is not available. List the available models with GET /v1/models or `bodhi ls`.",
                   param: "model")
    }

    public static func notFound(_ message: String) -> BodhiError {
        BodhiError(.notFound, status: 404, message)
    }

    public static func payloadTooLarge(limitBytes: Int) -> BodhiError {
        BodhiError(.payloadTooLarge, status: 413, "The request body is larger than the limit of \(limitBytes) bytes.")
    }

    public static func engineUnavailable(_ message: String, retryAfterSeconds: Int = 1) -> BodhiError {
        BodhiError(.engineUnavailable, status: 503, message, retryAfterSeconds: retryAfterSeconds)
    }

    public static func engineLoadFailed(model: String, reason: String) -> BodhiError {
        BodhiError(.engineLoadFailed, status: 500, "The engine could not load model '\(model)': \(reason)")
    }

    public static func conflict(_ message: String) -> BodhiError {
        BodhiError(.conflict, status: 409, message)
    }

    public static func internalError(_ message: String) -> BodhiError {
        BodhiError(.internalError, status: 500, message)
    }
}
