import BodhiCore
import Foundation

/// Every route Bodhi serves, written once: who may call it (`AccessPolicy`) and how the rate
/// limiter counts it (`RateLimitMiddleware`). The API family a path belongs to, which decides
/// its error format (`ErrorRenderingMiddleware`) and its documentation's section
/// (`OpenAPIDocument`), is `APIFamily.of(path:)`, beside it. A test walks every route the router
/// has against this table.
enum RouteTable {
    struct Route: Sendable {
        let rule: AccessPolicy.Rule
        /// How the limiter counts it; nil for probes, which are never limited.
        let limit: RouteClass?

        init(_ rule: AccessPolicy.Rule, _ limit: RouteClass? = .management) {
            self.rule = rule
            self.limit = limit
        }
    }

    /// By `METHOD path` as the router prints it.
    static let routes: [String: Route] = [
        // Liveness and first run.
        "GET /ping": .init(.open, nil),
        "GET /openapi.json": .init(.open),
        "GET /docs": .init(.open),
        "GET /docs/{file}": .init(.open),
        // The browser UI's files; what it shows comes from the APIs below, under their rules.
        "GET /ui": .init(.open),
        "GET /ui/**": .init(.open),
        "GET /health": .init(.open, nil),
        "GET /health/live": .init(.open, nil),
        "GET /health/ready": .init(.open, nil),
        // Scrapers authenticate with a token, like any client.
        "GET /metrics": .init(.user),
        "GET /bodhi/v1/setup": .init(.open, .auth),
        "POST /bodhi/v1/setup": .init(.open, .auth),
        // Sign-in.
        "POST /bodhi/v1/auth/login": .init(.open, .auth),
        "POST /bodhi/v1/auth/register": .init(.open, .auth),
        "POST /bodhi/v1/auth/logout": .init(AccessPolicy.Rule.signedIn.inSessionOnly),
        // Who is signed in, if anyone: the UI asks on every load, and "nobody" is no error.
        "GET /bodhi/v1/auth/session": .init(.open),
        "GET /bodhi/v1/users/me": .init(.signedIn),
        "PUT /bodhi/v1/users/me/password": .init(AccessPolicy.Rule.signedIn.inSessionOnly),
        "POST /bodhi/v1/access-requests": .init(AccessPolicy.Rule.signedIn.inSessionOnly),
        // Ollama's probes: tools check them before anything else.
        "GET /": .init(.open),
        "HEAD /": .init(.open),
        "GET /api/version": .init(.open),
        // Inference and reading models.
        "GET /api/tags": .init(.user),
        "GET /api/ps": .init(.user),
        "POST /api/show": .init(.user),
        "POST /api/chat": .init(.user, .inference),
        "POST /api/generate": .init(.user, .inference),
        "POST /api/embed": .init(.user, .inference),
        "POST /api/embeddings": .init(.user, .inference),
        "GET /v1/models": .init(.user),
        "GET /v1/models/**": .init(.user),
        "POST /v1/chat/completions": .init(.user, .inference),
        "POST /v1/completions": .init(.user, .inference),
        "POST /v1/embeddings": .init(.user, .inference),
        "POST /v1/messages": .init(.user, .inference),
        "POST /v1/messages/count_tokens": .init(.user, .inference),
        // Reranking (Jina's and Cohere's shape), also at llama-server's path.
        "POST /v1/rerank": .init(.user, .inference),
        "POST /rerank": .init(.user, .inference),
        // llama-server's tokenizer, per model.
        "POST /tokenize": .init(.user, .inference),
        "POST /detokenize": .init(.user, .inference),
        // Responses API answers kept for their user; another user's do not exist for the caller.
        "POST /v1/responses": .init(.user, .inference),
        "GET /v1/responses/{id}": .init(.user),
        "DELETE /v1/responses/{id}": .init(.user),
        "GET /v1/responses/{id}/input_items": .init(.user),
        // Google's Gemini API.
        "GET /v1beta/models": .init(.user),
        "GET /v1beta/models/**": .init(.user),
        "POST /v1beta/models/**": .init(.user, .inference),
        "GET /bodhi/v1/models": .init(.user),
        "GET /bodhi/v1/models/**": .init(.user),
        "GET /bodhi/v1/engines": .init(.user),
        "GET /bodhi/v1/aliases": .init(.user),
        "GET /bodhi/v1/aliases/{name}": .init(.user),
        // Own API tokens, from a browser session only.
        "GET /bodhi/v1/tokens": .init(AccessPolicy.Rule.user.inSessionOnly),
        "POST /bodhi/v1/tokens": .init(AccessPolicy.Rule.user.inSessionOnly),
        "DELETE /bodhi/v1/tokens/{id}": .init(AccessPolicy.Rule.user.inSessionOnly),
        // Own conversations; another user's chats do not exist for the caller.
        "GET /bodhi/v1/chats": .init(.user),
        "POST /bodhi/v1/chats": .init(.user),
        "GET /bodhi/v1/chats/{id}": .init(.user),
        "PATCH /bodhi/v1/chats/{id}": .init(.user),
        "DELETE /bodhi/v1/chats/{id}": .init(.user),
        "POST /bodhi/v1/chats/{id}/messages": .init(.user),
        // Changing what is served.
        "DELETE /bodhi/v1/models/**": .init(.powerUser),
        "POST /bodhi/v1/models/pull": .init(.powerUser),
        "GET /bodhi/v1/models/pull": .init(.powerUser),
        "GET /bodhi/v1/models/pull/{id}": .init(.powerUser),
        "GET /bodhi/v1/models/pull/{id}/events": .init(.powerUser),
        "POST /bodhi/v1/models/pull/{id}/cancel": .init(.powerUser),
        "POST /bodhi/v1/models/pull/{id}/retry": .init(.powerUser),
        "POST /api/pull": .init(.powerUser),
        "DELETE /api/delete": .init(.powerUser),
        "POST /api/copy": .init(.powerUser),
        "POST /api/create": .init(.powerUser),
        "HEAD /api/blobs/{digest}": .init(.powerUser),
        "POST /api/blobs/{digest}": .init(.powerUser),
        "POST /bodhi/v1/aliases": .init(.powerUser),
        "PUT /bodhi/v1/aliases/{name}": .init(.powerUser),
        "POST /bodhi/v1/aliases/{name}/copy": .init(.powerUser),
        "DELETE /bodhi/v1/aliases/{name}": .init(.powerUser),
        "GET /bodhi/v1/routers": .init(.user),
        "GET /bodhi/v1/routers/{name}": .init(.user),
        "PUT /bodhi/v1/routers/{name}": .init(.powerUser),
        "DELETE /bodhi/v1/routers/{name}": .init(.powerUser),
        // Remote servers and cloud APIs: their keys are the admin's to give.
        "GET /bodhi/v1/backends": .init(.powerUser),
        "GET /bodhi/v1/backends/{name}": .init(.powerUser),
        "POST /bodhi/v1/backends/{name}/test": .init(.powerUser),
        "POST /bodhi/v1/backends": .init(.admin),
        "DELETE /bodhi/v1/backends/{name}": .init(.admin),
        // People.
        "GET /bodhi/v1/users": .init(.manager),
        "PUT /bodhi/v1/users/{id}/role": .init(.manager),
        "PUT /bodhi/v1/users/{id}/disabled": .init(.manager),
        "DELETE /bodhi/v1/users/{id}": .init(.manager),
        "GET /bodhi/v1/access-requests": .init(.manager),
        "POST /bodhi/v1/access-requests/{id}/approve": .init(.manager),
        "POST /bodhi/v1/access-requests/{id}/reject": .init(.manager),
        // Settings.
        "GET /bodhi/v1/settings": .init(.admin),
        "PUT /bodhi/v1/settings/{key}": .init(.admin),
        "DELETE /bodhi/v1/settings/{key}": .init(.admin),
    
    ]

    /// The paths whose requests the limiter counts as `routeClass` (nil: never limited), whatever
    /// their method.
    static func paths(limitedAs routeClass: RouteClass?) -> Set<String> {
        Set(routes.filter { $0.value.limit == routeClass }.keys.map { String($0.split(separator: " ", maxSplits: 1)[1]) })
    }
}

/// The API a path belongs to: its error format and its section of the API document.
enum APIFamily: String, Sendable {
    case openAI = "OpenAI"
    case anthropic = "Anthropic"
    case ollama = "Ollama"
    case gemini = "Gemini"
    case bodhi = "Bodhi"

    static func of(path: String) -> APIFamily {
        if path == "/v1beta" || path.hasPrefix("/v1beta/") { return .gemini }
        if path == "/v1/messages" || path.hasPrefix("/v1/messages/") { return .anthropic }
        if path == "/v1" || path.hasPrefix("/v1/") || ["/tokenize", "/detokenize", "/rerank"].contains(path) { return .openAI }
        if path == "/api" || path.hasPrefix("/api/") || path == "/" { return .ollama }
        return .bodhi
    }
}
