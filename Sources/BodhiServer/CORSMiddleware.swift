import BodhiCore
import HTTPTypes
import Hummingbird

/// Lets pages on other origins call the inference APIs (OpenAI's, Anthropic's, Ollama's,
/// Gemini's) with a token, as browsers ask: a preflight `OPTIONS` is answered here, and answers
/// to an allowed origin carry `Access-Control-Allow-Origin`. Only `BODHI_CORS_ORIGINS` are
/// allowed (a preflight from another is a 403); credentials are never allowed, so the session
/// cookie never rides a cross-origin request. Bodhi's own API (`/bodhi/v1`) gets no CORS at all.
struct CORSMiddleware<Context: RequestContext>: RouterMiddleware {
    let origins: CORSOrigins

    static var originHeader: HTTPField.Name { HTTPField.Name("Origin")! }
    static var requestMethodHeader: HTTPField.Name { HTTPField.Name("Access-Control-Request-Method")! }
    static var requestHeadersHeader: HTTPField.Name { HTTPField.Name("Access-Control-Request-Headers")! }
    static var allowOriginHeader: HTTPField.Name { HTTPField.Name("Access-Control-Allow-Origin")! }
    static var allowMethodsHeader: HTTPField.Name { HTTPField.Name("Access-Control-Allow-Methods")! }
    static var allowHeadersHeader: HTTPField.Name { HTTPField.Name("Access-Control-Allow-Headers")! }
    static var exposeHeadersHeader: HTTPField.Name { HTTPField.Name("Access-Control-Expose-Headers")! }
    static var maxAgeHeader: HTTPField.Name { HTTPField.Name("Access-Control-Max-Age")! }

    /// What a page may read of an answer besides the basics: ids, versions, limits, retries.
    static var exposed: String { "X-Request-Id, Bodhi-API-Version, Bodhi-Served-By, Retry-After, RateLimit, RateLimit-Policy" }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard let origin = request.headers[Self.originHeader], APIFamily.of(path: request.uri.path) != .bodhi else {
            return try await next(request, context)
        }
        let allowed = origins.allows(origin)
        if request.method == .options, let method = request.headers[Self.requestMethodHeader] {
            guard allowed else {
                return ErrorRenderingMiddleware.render(BodhiError(
                    .forbidden, status: 403,
                    "The origin \(origin) may not call this server from a browser; an admin can add it to BODHI_CORS_ORIGINS."),
                    path: request.uri.path)
            }
            var headers: HTTPFields = [
                Self.allowOriginHeader: origin, .vary: "Origin",
                Self.allowMethodsHeader: "GET, HEAD, POST, DELETE, OPTIONS, " + method.uppercased(),
                Self.allowHeadersHeader: request.headers[Self.requestHeadersHeader] ?? "Authorization, Content-Type",
                Self.maxAgeHeader: "600",
            ]
            headers[.contentLength] = "0"
            return Response(status: .noContent, headers: headers)
        }
        var response = try await next(request, context)
        if allowed {
            response.headers[Self.allowOriginHeader] = origin
            response.headers[Self.exposeHeadersHeader] = Self.exposed
            response.headers.append(HTTPField(name: .vary, value: "Origin"))
        }
        return response
    }
}
