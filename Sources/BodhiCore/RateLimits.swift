import Foundation

/// The kinds of route a rate limit counts separately.
public enum RouteClass: String, Sendable, CaseIterable {
    /// Generation and embeddings: what costs engine time.
    case inference
    /// Everything else a signed-in caller does: model lists, pulls, aliases, tokens, settings.
    case management
    /// Setup, sign-in, registration: what an attacker guessing passwords calls.
    case auth
}

/// `N` per `window`, as a token bucket that holds `N` and refills `N` every window.
public struct RateLimitRule: Sendable, Equatable, CustomStringConvertible {
    public let limit: Int
    public let windowSeconds: Int

    public init(limit: Int, windowSeconds: Int) {
        self.limit = limit
        self.windowSeconds = windowSeconds
    }

    public var description: String {
        let unit = switch windowSeconds {
        case 1: "s"
        case 60: "m"
        case 3600: "h"
        default: "\(windowSeconds)s"
        }
        return "\(limit)/\(unit)"
    }

    /// `600/m`, `10/s`, `5000/h`.
    init?(parsing text: Substring) {
        let parts = text.split(separator: "/")
        guard parts.count == 2, let limit = Int(parts[0]), limit > 0 else { return nil }
        switch parts[1] {
        case "s", "sec", "second": windowSeconds = 1
        case "m", "min", "minute": windowSeconds = 60
        case "h", "hour": windowSeconds = 3600
        default: return nil
        }
        self.limit = limit
    }
}

/// What one kind of caller may do: requests per route class (`all` covers classes not named),
/// inference tokens (prompt + completion), or no limit at all.
public struct RateLimitPlan: Sendable, Equatable, CustomStringConvertible {
    public var requests: [RouteClass: RateLimitRule] = [:]
    /// Requests of any class not named in `requests`.
    public var all: RateLimitRule?
    public var tokens: RateLimitRule?
    public var unlimited = false

    public init(requests: [RouteClass: RateLimitRule] = [:], all: RateLimitRule? = nil, tokens: RateLimitRule? = nil, unlimited: Bool = false) {
        self.requests = requests
        self.all = all
        self.tokens = tokens
        self.unlimited = unlimited
    }

    public static let unlimitedPlan = RateLimitPlan(unlimited: true)

    /// The rule for requests of `routeClass`; nil when they are not limited.
    public func rule(for routeClass: RouteClass) -> RateLimitRule? {
        scopedRule(for: routeClass)?.rule
    }

    /// The rule for requests of `routeClass` and the bucket it counts in: the class's own, or
    /// `all` shared by the classes not named.
    public func scopedRule(for routeClass: RouteClass) -> (rule: RateLimitRule, scope: String)? {
        if unlimited { return nil }
        if let rule = requests[routeClass] { return (rule, routeClass.rawValue) }
        return all.map { ($0, "all") }
    }

    /// Parses `inference=600/m management=1200/m tokens=1000000/m`, `all=6000/m`, or `unlimited`
    /// (items separated by spaces or commas). Nil for anything else.
    public init?(parsing text: String) {
        let items = text.split(whereSeparator: { $0 == " " || $0 == "," || $0 == "\t" })
        guard !items.isEmpty else { return nil }
        for item in items {
            if item == "unlimited" {
                unlimited = true
                continue
            }
            let pair = item.split(separator: "=", maxSplits: 1)
            guard pair.count == 2, let rule = RateLimitRule(parsing: pair[1]) else { return nil }
            switch pair[0] {
            case "all": all = rule
            case "tokens": tokens = rule
            default:
                guard let routeClass = RouteClass(rawValue: String(pair[0])) else { return nil }
                requests[routeClass] = rule
            }
        }
        if unlimited, items.count > 1 { return nil }
    }

    public var description: String {
        if unlimited { return "unlimited" }
        var parts = RouteClass.allCases.compactMap { routeClass in requests[routeClass].map { "\(routeClass.rawValue)=\($0)" } }
        if let all { parts.append("all=\(all)") }
        if let tokens { parts.append("tokens=\(tokens)") }
        return parts.joined(separator: " ")
    }
}

/// Every rate limit Bodhi applies, from settings: one plan per role (for sessions and the
/// tokens of users with that role), per client address, overrides per API token, and callers
/// who are never limited.
public struct RateLimitSettings: Sendable, Equatable {
    public var enabled: Bool
    /// By role name (`user`, `power_user`, `manager`, `admin`).
    public var roles: [String: RateLimitPlan]
    /// Every request from one client address, signed in or not.
    public var address: RateLimitPlan
    /// By API token id, in place of its role's plan.
    public var tokens: [String: RateLimitPlan]
    /// User names and token ids that bypass every limit and go first in the queue.
    public var unlimited: Set<String>

    public init(enabled: Bool, roles: [String: RateLimitPlan], address: RateLimitPlan, tokens: [String: RateLimitPlan], unlimited: Set<String>) {
        self.enabled = enabled
        self.roles = roles
        self.address = address
        self.tokens = tokens
        self.unlimited = unlimited
    }

    /// Defaults a person in a browser never meets and a runaway script soon does: a user may
    /// send 10 inference requests a second for a minute on end (a burst of 600), higher roles more.
    public static let defaultRoles: [String: String] = [
        "user": "inference=600/m management=1200/m tokens=1000000/m",
        "power_user": "inference=1200/m management=2400/m tokens=2000000/m",
        "manager": "inference=2400/m management=4800/m tokens=4000000/m",
        "admin": "inference=2400/m management=4800/m tokens=4000000/m",
    ]
    public static let defaultAddress = "all=6000/m auth=60/m"

    /// `ID=PLAN; ID=PLAN`, e.g. `3f2a...=inference=60/m tokens=20000/m; 9c1d...=unlimited`.
    public static func parseTokenPlans(_ text: String) -> [String: RateLimitPlan]? {
        var plans: [String: RateLimitPlan] = [:]
        for entry in text.split(separator: ";") {
            let trimmed = entry.trimmingCharacters(in: .whitespaces)
            if trimmed.isEmpty { continue }
            let pair = trimmed.split(separator: "=", maxSplits: 1)
            guard pair.count == 2, let plan = RateLimitPlan(parsing: String(pair[1])) else { return nil }
            plans[pair[0].trimmingCharacters(in: .whitespaces)] = plan
        }
        return plans
    }

    /// A comma- or space-separated list of names.
    public static func parseNames(_ text: String) -> Set<String> {
        Set(text.split(whereSeparator: { $0 == "," || $0 == " " }).map(String.init))
    }
}
