import BodhiHTTP
import BodhiCore
import BodhiEngine
import Foundation
import HTTPTypes
import Hummingbird

/// The API's version, the routes on their way out, and request ids: one table, one middleware.
enum APIVersioning {
    /// The version of every stable surface (`/v1`, `/api`, `/bodhi/v1`); see docs/API-VERSIONING.md.
    static let version = "1.0"

    struct Deprecation: Sendable {
        /// When the route was deprecated.
        let since: Date
        /// When it stops answering.
        let sunset: Date
        /// What to use instead.
        let successor: String
    }

    /// Deprecated routes, by `METHOD path` as the router prints it.
    static let deprecations: [String: Deprecation] = [
        // Ollama replaced it with /api/embed (batch input, `embeddings`).
        "POST /api/embeddings": Deprecation(
            since: Date(timeIntervalSince1970: 1_795_564_800),  // 2026-11-25
            sunset: Date(timeIntervalSince1970: 1_827_100_800),  // 2027-11-25, a year after Bodhi deprecated it
            successor: "/api/embed"),
    ]

    /// The paths of `deprecations`, whatever the method.
    static let deprecatedPaths = Set(deprecations.keys.compactMap { $0.split(separator: " ", maxSplits: 1).last.map(String.init) })

    static let versionHeader = HTTPField.Name("Bodhi-API-Version")!
    static let requestIDHeader = HTTPField.Name("X-Request-Id")!
    static let deprecationHeader = HTTPField.Name("Deprecation")!
    static let sunsetHeader = HTTPField.Name("Sunset")!
    static let linkHeader = HTTPField.Name("Link")!
    /// The target of a router model that answered.
    static let servedByHeader = HTTPField.Name("Bodhi-Served-By")!

    /// RFC 9110's IMF-fixdate, as `Sunset` carries it.
    static func httpDate(_ date: Date) -> String {
        HTTPDate.format(epochSeconds: Int(date.timeIntervalSince1970.rounded(.down)))
    }
}

extension APIVersioning {
    /// The request's id: the client's `X-Request-Id` when it is sane, else a fresh one.
    static func requestID(sentByClient sent: String?) -> String {
        sent.flatMap { $0.count <= 128 && $0.allSatisfy { $0.isASCII && !$0.isWhitespace } ? $0 : nil }
            ?? UUID.random().lowercaseString
    }

    /// `Bodhi-API-Version` and `X-Request-Id` on every response, and on a deprecated route's
    /// `Deprecation`, `Sunset` and a `Link` to its successor (RFC 9745, RFC 8594).
    static func stamp(_ headers: inout HTTPFields, requestID: String, method: HTTPRequest.Method, path: String) {
        headers[versionHeader] = version
        headers[requestIDHeader] = requestID
        // The table's key is built only for the few deprecated paths, not for every request.
        if deprecatedPaths.contains(path), let deprecation = deprecations["\(method.rawValue) \(path)"] {
            headers[deprecationHeader] = "@\(Int(deprecation.since.timeIntervalSince1970))"
            headers[sunsetHeader] = httpDate(deprecation.sunset)
            headers[linkHeader] = "<\(deprecation.successor)>; rel=\"successor-version\""
        }
    }
}
