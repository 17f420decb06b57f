import Foundation

/// `BODHI_DATABASE_URL`: `sqlite:PATH` (the default, `sqlite:$BODHI_HOME/bodhi.sqlite`) or
/// `postgres://user:password@host:port/database` (`postgresql://` too).
public struct DatabaseURL: Sendable, Equatable, CustomStringConvertible {
    public enum Kind: String, Sendable { case sqlite, postgres }

    public let kind: Kind
    /// The SQLite file path, or the PostgreSQL URL as given.
    public let location: String

    public init?(_ text: String, relativeTo directory: String) {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        if trimmed.hasPrefix("sqlite:") {
            var path = String(trimmed.dropFirst("sqlite:".count))
            if path.hasPrefix("//") { path.removeFirst(2) }
            guard !path.isEmpty else { return nil }
            kind = .sqlite
            location = path.hasPrefix("/") ? path : directory + "/" + path
        } else if let scheme = URLComponents(string: trimmed)?.scheme?.lowercased(),
                  ["postgres", "postgresql", "postgres+tcp", "postgres+uds"].contains(scheme) {
            kind = .postgres
            location = scheme == "postgresql" ? "postgres" + trimmed.dropFirst("postgresql".count) : trimmed
        } else {
            return nil
        }
    }

    /// The URL without its password, for messages and logs.
    public var description: String {
        kind == .sqlite ? "sqlite:\(location)" : Self.redacted(location)
    }

    public static func redacted(_ url: String) -> String {
        guard var components = URLComponents(string: url), components.password != nil else { return url }
        components.password = "***"
        return components.string ?? url
    }
}
