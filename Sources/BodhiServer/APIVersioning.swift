import BodhiCore
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

    /// RFC 9110's IMF-fixdate, as `Sunset` carries it.
    static func httpDate(_ date: Date) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss 'GMT'"
        return formatter.string(from: date)
    }
}

/// Stamps every response with `Bodhi-API-Version` and the request's id (`X-Request-Id`, the
/// client's when it sent a sane one), and deprecated routes with `Deprecation`, `Sunset` and a
/// `Link` to their successor (RFC 9745, RFC 8594).
struct APIVersioningMiddleware: RouterMiddleware {
    typealias Context = BodhiRequestContext

    func handle(
        _ request: Request, context: Context, next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        let requestID = request.headers[APIVersioning.requestIDHeader]
            .flatMap { $0.count <= 128 && $0.allSatisfy { $0.isASCII && !$0.isWhitespace } ? $0 : nil }
            ?? UUID.random().lowercaseString
        var context = context
        context.logger[metadataKey: "request_id"] = .string(requestID)
        var response = try await RequestScope.$requestID.withValue(requestID) { try await next(request, context) }
        response.headers[APIVersioning.versionHeader] = APIVersioning.version
        response.headers[APIVersioning.requestIDHeader] = requestID
        let path = context.endpointPath ?? request.uri.path
        // The table's key is built only for the few deprecated paths, not for every request.
        if APIVersioning.deprecatedPaths.contains(path),
           let deprecation = APIVersioning.deprecations["\(request.method.rawValue) \(path)"] {
            response.headers[APIVersioning.deprecationHeader] = "@\(Int(deprecation.since.timeIntervalSince1970))"
            response.headers[APIVersioning.sunsetHeader] = APIVersioning.httpDate(deprecation.sunset)
            response.headers[APIVersioning.linkHeader] = "<\(deprecation.successor)>; rel=\"successor-version\""
        }
        return response
    }
}
