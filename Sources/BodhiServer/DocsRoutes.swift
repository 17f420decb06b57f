import BodhiCore
import Foundation
import HTTPTypes
import Hummingbird

/// Interactive API docs at `/docs`: Swagger UI, from assets that `scripts/bootstrap` takes
/// from PyPI, reading `/openapi.json`. Served offline, with no inline script.
struct DocsRoutes {
    let assetsDirectory: String?

    /// The files taken from Swagger UI, with their types.
    static let assets: [String: String] = [
        "swagger-ui-bundle.js": "application/javascript; charset=utf-8",
        "swagger-ui.css": "text/css; charset=utf-8",
        "favicon-32x32.png": "image/png",
        "LICENSE": "text/plain; charset=utf-8",
    ]

    static let page = """
        <!doctype html>
        <html lang="en">
        <head>
          <meta charset="utf-8">
          <meta name="viewport" content="width=device-width, initial-scale=1">
          <title>Bodhi API</title>
          <link rel="stylesheet" href="/docs/swagger-ui.css">
          <link rel="icon" type="image/png" href="/docs/favicon-32x32.png">
        </head>
        <body>
          <div id="swagger-ui"></div>
          <script src="/docs/swagger-ui-bundle.js"></script>
          <script src="/docs/bodhi-docs.js"></script>
        </body>
        </html>
        """

    static let initializer = """
        window.ui = SwaggerUIBundle({ url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true });
        """

    /// Scripts only from Bodhi itself; Swagger UI sets element styles, so inline styles stay allowed.
    static let contentSecurityPolicy =
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; object-src 'none'; frame-ancestors 'none'"

    func register(on router: Router<BodhiRequestContext>) {
        var files: [String: ByteBuffer] = [:]
        if let assetsDirectory {
            for name in Self.assets.keys {
                if let data = FileManager.default.contents(atPath: assetsDirectory + "/" + name) { files[name] = ByteBuffer(data: data) }
            }
        }
        let available = files
        router.get("/docs") { _, _ in
            guard available["swagger-ui-bundle.js"] != nil else { throw Self.missing }
            return Self.response(ByteBuffer(string: Self.page), type: "text/html; charset=utf-8")
        }
        router.get("/docs/:file") { _, context in
            let name = try context.parameters.require("file")
            if name == "bodhi-docs.js" { return Self.response(ByteBuffer(string: Self.initializer), type: "application/javascript; charset=utf-8") }
            guard let type = Self.assets[name] else { throw BodhiError.notFound("There is no file /docs/\(name).") }
            guard let body = available[name] else { throw Self.missing }
            return Self.response(body, type: type)
        }
    }

    static let missing = BodhiError.notFound(
        "The API docs' assets are not installed: run scripts/bootstrap (or `make run`). The document itself is at /openapi.json.")

    static func response(_ body: ByteBuffer, type: String) -> Response {
        Response(
            status: .ok,
            headers: [.contentType: type, .contentSecurityPolicy: contentSecurityPolicy, .cacheControl: "public, max-age=3600"],
            body: .init(byteBuffer: body))
    }
}
