import BodhiCore
import HTTPTypes
import Hummingbird

/// A path that has routes, but none for the method asked, is a 405 that lists the methods it
/// has in `Allow` (the router alone says 404).
struct MethodMiddleware: RouterMiddleware {
    typealias Context = BodhiRequestContext

    static var allowHeader: HTTPField.Name { HTTPField.Name("Allow")! }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as HTTPError where error.status == .notFound {
            var methods = RouteTable.methods(for: request.uri.path)
            guard !methods.isEmpty, !methods.contains(request.method.rawValue) else { throw error }
            if methods.contains("GET") { methods.insert("HEAD") }
            let allowed = methods.sorted().joined(separator: ", ")
            var response = ErrorRenderingMiddleware.render(
                BodhiError(.invalidRequest, status: 405, "\(request.method) is not allowed on \(request.uri.path); it takes \(allowed)."),
                path: request.uri.path)
            response.headers[Self.allowHeader] = allowed
            return response
        }
    }
}

/// `HEAD` on a route that only has `GET` answered as `GET` is, without the body. Around the router,
/// not inside it: the router picks a route by method before its middleware runs.
struct HeadAsGetResponder<Inner: HTTPResponder>: HTTPResponder {
    typealias Context = Inner.Context
    let inner: Inner

    func respond(to request: Request, context: Context) async throws -> Response {
        guard request.method == .head else { return try await inner.respond(to: request, context: context) }
        let methods = RouteTable.methods(for: request.uri.path)
        guard !methods.contains("HEAD"), methods.contains("GET") else { return try await inner.respond(to: request, context: context) }
        var head = request.head
        head.method = .get
        var response = try await inner.respond(to: Request(head: head, body: request.body), context: context)
        if response.headers[.contentLength] == nil, let length = response.body.contentLength {
            response.headers[.contentLength] = String(length)
        }
        response.body = ResponseBody()
        return response
    }
}

extension RouteTable {
    /// Each route's method and path pattern, split into segments once.
    private static let patterns: [(method: String, segments: [Substring])] = routes.keys.map { key in
        let parts = key.split(separator: " ", maxSplits: 1)
        return (String(parts[0]), parts[1].split(separator: "/"))
    }

    /// The methods whose routes match `path` (`{name}` one segment, `**` one or more).
    static func methods(for path: String) -> Set<String> {
        let segments = path.split(separator: "/")
        var found = Set<String>()
        for pattern in patterns where matches(segments[...], pattern.segments[...]) {
            found.insert(pattern.method)
        }
        return found
    }

    private static func matches(_ path: ArraySlice<Substring>, _ pattern: ArraySlice<Substring>) -> Bool {
        guard let head = pattern.first else { return path.isEmpty }
        if head == "**" { return !path.isEmpty }
        guard let segment = path.first else { return false }
        guard head.hasPrefix("{") || head == segment else { return false }
        return matches(path.dropFirst(), pattern.dropFirst())
    }
}
