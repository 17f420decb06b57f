import BodhiIdentity
import HTTPTypes

/// Who may call each route: one table for the whole server. A route missing here is refused
/// to everyone but admins, and a test fails until it gets a rule.
enum AccessPolicy {
    enum Level: Sendable, Equatable {
        /// Anyone, signed in or not.
        case open
        /// Anyone signed in, with a role or without (a newcomer can request access).
        case signedIn
        /// At least this role.
        case role(Role)
    }

    struct Rule: Sendable, Equatable {
        let level: Level
        /// Only a browser session, never an API token (token management, password changes).
        var sessionOnly = false

        static let open = Rule(level: .open)
        static let signedIn = Rule(level: .signedIn)
        static let user = Rule(level: .role(.user))
        static let powerUser = Rule(level: .role(.powerUser))
        static let manager = Rule(level: .role(.manager))
        static let admin = Rule(level: .role(.admin))

        var inSessionOnly: Rule { Rule(level: level, sessionOnly: true) }
    }

    /// `METHOD path` as the router prints it.
    static let rules: [String: Rule] = [
        // Liveness and first run.
        "GET /ping": .open,
        "GET /openapi.json": .open,
        "GET /docs": .open,
        "GET /docs/{file}": .open,
        // The browser UI's files; what it shows comes from the APIs below, under their rules.
        "GET /ui": .open,
        "GET /ui/**": .open,
        "GET /health": .open,
        "GET /health/live": .open,
        "GET /health/ready": .open,
        // Scrapers authenticate with a token, like any client.
        "GET /metrics": .user,
        "GET /bodhi/v1/setup": .open,
        "POST /bodhi/v1/setup": .open,
        // Sign-in.
        "POST /bodhi/v1/auth/login": .open,
        "POST /bodhi/v1/auth/register": .open,
        "POST /bodhi/v1/auth/logout": Rule.signedIn.inSessionOnly,
        // Who is signed in, if anyone: the UI asks on every load, and "nobody" is no error.
        "GET /bodhi/v1/auth/session": .open,
        "GET /bodhi/v1/users/me": .signedIn,
        "PUT /bodhi/v1/users/me/password": Rule.signedIn.inSessionOnly,
        "POST /bodhi/v1/access-requests": Rule.signedIn.inSessionOnly,
        // Ollama's probes: tools check them before anything else.
        "GET /": .open,
        "HEAD /": .open,
        "GET /api/version": .open,
        // Inference and reading models.
        "GET /api/tags": .user,
        "GET /api/ps": .user,
        "POST /api/show": .user,
        "POST /api/chat": .user,
        "POST /api/generate": .user,
        "POST /api/embed": .user,
        "POST /api/embeddings": .user,
        "GET /v1/models": .user,
        "GET /v1/models/**": .user,
        "POST /v1/chat/completions": .user,
        "POST /v1/completions": .user,
        "POST /v1/embeddings": .user,
        "POST /v1/messages": .user,
        "GET /bodhi/v1/models": .user,
        "GET /bodhi/v1/models/**": .user,
        "GET /bodhi/v1/engines": .user,
        "GET /bodhi/v1/aliases": .user,
        "GET /bodhi/v1/aliases/{name}": .user,
        // Own API tokens, from a browser session only.
        "GET /bodhi/v1/tokens": Rule.user.inSessionOnly,
        "POST /bodhi/v1/tokens": Rule.user.inSessionOnly,
        "DELETE /bodhi/v1/tokens/{id}": Rule.user.inSessionOnly,
        // Own conversations; another user's chats do not exist for the caller.
        "GET /bodhi/v1/chats": .user,
        "POST /bodhi/v1/chats": .user,
        "GET /bodhi/v1/chats/{id}": .user,
        "PATCH /bodhi/v1/chats/{id}": .user,
        "DELETE /bodhi/v1/chats/{id}": .user,
        "POST /bodhi/v1/chats/{id}/messages": .user,
        // Changing what is served.
        "DELETE /bodhi/v1/models/**": .powerUser,
        "POST /bodhi/v1/models/pull": .powerUser,
        "GET /bodhi/v1/models/pull": .powerUser,
        "GET /bodhi/v1/models/pull/{id}": .powerUser,
        "GET /bodhi/v1/models/pull/{id}/events": .powerUser,
        "POST /bodhi/v1/models/pull/{id}/cancel": .powerUser,
        "POST /bodhi/v1/models/pull/{id}/retry": .powerUser,
        "POST /api/pull": .powerUser,
        "DELETE /api/delete": .powerUser,
        "POST /api/copy": .powerUser,
        "POST /api/create": .powerUser,
        "HEAD /api/blobs/{digest}": .powerUser,
        "POST /api/blobs/{digest}": .powerUser,
        "POST /bodhi/v1/aliases": .powerUser,
        "PUT /bodhi/v1/aliases/{name}": .powerUser,
        "POST /bodhi/v1/aliases/{name}/copy": .powerUser,
        "DELETE /bodhi/v1/aliases/{name}": .powerUser,
        // People.
        "GET /bodhi/v1/users": .manager,
        "PUT /bodhi/v1/users/{id}/role": .manager,
        "PUT /bodhi/v1/users/{id}/disabled": .manager,
        "DELETE /bodhi/v1/users/{id}": .manager,
        "GET /bodhi/v1/access-requests": .manager,
        "POST /bodhi/v1/access-requests/{id}/approve": .manager,
        "POST /bodhi/v1/access-requests/{id}/reject": .manager,
        // Settings.
        "GET /bodhi/v1/settings": .admin,
        "PUT /bodhi/v1/settings/{key}": .admin,
        "DELETE /bodhi/v1/settings/{key}": .admin,
    ]

    static func rule(method: HTTPRequest.Method, path: String) -> Rule? {
        rules["\(method.rawValue) \(path)"]
    }
}
