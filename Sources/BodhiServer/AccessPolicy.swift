import BodhiIdentity
import HTTPTypes

/// Who may call each route, as `RouteTable` says: one table for the whole server. A route missing
/// there is refused to everyone but admins, and a test fails until it gets a rule.
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
    static var rules: [String: Rule] { RouteTable.routes.mapValues(\.rule) }

    static func rule(method: HTTPRequest.Method, path: String) -> Rule? {
        RouteTable.routes["\(method.rawValue) \(path)"]?.rule
    }
}
