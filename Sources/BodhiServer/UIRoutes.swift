import BodhiCore
import Foundation
import HTTPTypes
import Hummingbird

/// The browser UI at `/ui`: static HTML, CSS and JavaScript modules shipped with Bodhi (no
/// build step), read once at start. Paths without a file extension are the app's own pages
/// and get `index.html`, which routes in the browser. Everything the UI does goes through the
/// same APIs and access rules as any client.
struct UIRoutes {
    struct Asset: Sendable {
        let body: ByteBuffer
        let type: String
        let etag: String
    }

    let assets: [String: Asset]

    /// The UI shipped in this module's resources: the `bodhi_BodhiServer.resources` folder SwiftPM
    /// puts beside the executable. Looked up by hand, because `Bundle.module` stops the process
    /// when the folder is missing (a binary copied away alone); then the UI answers 404 instead.
    static let bundled: [String: Asset] = {
        let executable = Bundle.main.executableURL?.resolvingSymlinksInPath().deletingLastPathComponent()
        let candidates = [executable, Bundle.main.bundleURL].compactMap { $0?.appendingPathComponent("bodhi_BodhiServer.resources/UI").path }
        guard let directory = candidates.first(where: { FileManager.default.fileExists(atPath: $0 + "/index.html") }) else { return [:] }
        return load(directory: directory)
    }()

    static let types: [String: String] = [
        "html": "text/html; charset=utf-8", "js": "text/javascript; charset=utf-8", "css": "text/css; charset=utf-8",
        "svg": "image/svg+xml", "png": "image/png", "webmanifest": "application/manifest+json",
    ]

    /// Scripts, styles, images and requests only from Bodhi itself; no inline script or style,
    /// no plugins, no framing.
    static let contentSecurityPolicy = [
        "default-src 'none'", "script-src 'self'", "style-src 'self'", "img-src 'self' data:", "connect-src 'self'",
        "font-src 'self'", "manifest-src 'self'", "base-uri 'none'", "form-action 'self'", "frame-ancestors 'none'",
    ].joined(separator: "; ")

    /// Every file under `directory` by its path relative to it.
    static func load(directory: String) -> [String: Asset] {
        var assets: [String: Asset] = [:]
        guard let walker = FileManager.default.enumerator(atPath: directory) else { return assets }
        while let relative = walker.nextObject() as? String {
            let ext = (relative as NSString).pathExtension
            guard let type = types[ext], let data = FileManager.default.contents(atPath: directory + "/" + relative) else { continue }
            assets[relative] = Asset(body: ByteBuffer(data: data), type: type, etag: "\"\(fingerprint(data))\"")
        }
        return assets
    }

    /// FNV-1a over the bytes: a stable validator for caches, not a security measure.
    static func fingerprint(_ data: Data) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in data {
            hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3
        }
        return String(hash, radix: 16)
    }

    func register(on router: Router<BodhiRequestContext>) {
        let assets = assets
        @Sendable func serve(_ request: Request, _ relative: String) throws -> Response {
            // A path whose last part has no extension is one of the app's pages.
            let last = relative.split(separator: "/").last
            let name = last.map { $0.contains(".") } == true ? relative : "index.html"
            guard let asset = assets[name] else {
                throw BodhiError.notFound(assets.isEmpty
                    ? "This Bodhi has no UI files: keep the folder bodhi_BodhiServer.resources beside the bodhi binary."
                    : "There is no file /ui/\(relative).")
            }
            var headers: HTTPFields = [
                .contentType: asset.type, .contentSecurityPolicy: Self.contentSecurityPolicy, .eTag: asset.etag,
                // Revalidated on every load, so a new Bodhi never runs with an old script.
                .cacheControl: "no-cache",
                HTTPField.Name("X-Content-Type-Options")!: "nosniff",
                HTTPField.Name("Referrer-Policy")!: "no-referrer",
            ]
            if request.headers[.ifNoneMatch] == asset.etag {
                headers[.contentType] = nil
                return Response(status: .notModified, headers: headers)
            }
            return Response(status: .ok, headers: headers, body: .init(byteBuffer: asset.body))
        }
        router.get("/ui") { request, _ in try serve(request, "") }
        router.get("/ui/**") { request, _ in try serve(request, request.decodedPath(after: "/ui/")) }
    }
}
