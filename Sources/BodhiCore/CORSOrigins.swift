/// The browser origins that may call Bodhi's inference APIs from pages of their own
/// (`BODHI_CORS_ORIGINS`): origins as a browser sends them, each a scheme and host, where `*`
/// stands for any run of characters (`http://localhost:*` is every port), or `*` alone for any
/// origin. The default, as Ollama's, is this machine's own pages and desktop apps' schemes.
public struct CORSOrigins: Sendable, Equatable, CustomStringConvertible {
    public let patterns: [String]

    public static let defaultText = [
        "http://localhost", "https://localhost", "http://localhost:*", "https://localhost:*",
        "http://127.0.0.1", "https://127.0.0.1", "http://127.0.0.1:*", "https://127.0.0.1:*",
        "http://[::1]", "https://[::1]", "http://[::1]:*", "https://[::1]:*",
        "app://*", "tauri://*", "vscode-webview://*",
    ].joined(separator: ",")

    /// Patterns separated by commas or spaces; nil for one that is not an origin pattern.
    public init?(parsing text: String) {
        let patterns = text.split(whereSeparator: { $0 == "," || $0 == " " }).map(String.init)
        for pattern in patterns where pattern != "*" {
            guard let scheme = pattern.range(of: "://"), scheme.lowerBound > pattern.startIndex, !pattern.hasSuffix("/") || pattern.hasSuffix("://*")
            else { return nil }
        }
        self.patterns = patterns
    }

    /// Whether `origin` (an `Origin` header's value) is allowed.
    public func allows(_ origin: String) -> Bool {
        patterns.contains { Self.matches(origin.lowercased()[...], $0.lowercased()[...]) }
    }

    public var description: String { patterns.joined(separator: ",") }

    /// Glob matching where `*` is any run of characters.
    private static func matches(_ text: Substring, _ pattern: Substring) -> Bool {
        guard let star = pattern.firstIndex(of: "*") else { return text == pattern }
        let prefix = pattern[..<star]
        guard text.hasPrefix(prefix) else { return false }
        let rest = pattern[pattern.index(after: star)...]
        var tail = text.dropFirst(prefix.count)
        while true {
            if matches(tail, rest) { return true }
            guard !tail.isEmpty else { return false }
            tail = tail.dropFirst()
        }
    }
}
