import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Testing
@testable import BodhiServer

/// The browser UI's files: pages route to the app, assets keep their types, a strict CSP, caching.
@Suite(.timeLimit(.minutes(2))) struct UIRoutesTests {
    @Test func pagesGetTheAppAndAssetsTheirTypeUnderAStrictPolicy() async throws {
        try await TestApp.with(hub: try TestApp.emptyHub("ui"), setUp: false) { _, client in
            for path in ["/ui", "/ui/chat", "/ui/chat/chat_0123abcd", "/ui/settings"] {
                try await client.execute(uri: path, method: .get) { response in
                    #expect(response.status == .ok, "\(path)")
                    #expect(response.headers[.contentType] == "text/html; charset=utf-8")
                    #expect(String(buffer: response.body).contains(#"<script type="module" src="/ui/app.js"></script>"#))
                    let policy = response.headers[.contentSecurityPolicy] ?? ""
                    #expect(policy.contains("script-src 'self'") && !policy.contains("unsafe"))
                }
            }
            let etag = try await client.execute(uri: "/ui", method: .get) { $0.headers[.eTag] ?? "" }
            #expect(etag.hasPrefix("\""))
            try await client.execute(uri: "/ui/views/chat.js", method: .get) { response in
                #expect(response.status == .ok && response.headers[.contentType] == "text/javascript; charset=utf-8")
                #expect(response.headers[HTTPField.Name("X-Content-Type-Options")!] == "nosniff")
            }
            try await client.execute(uri: "/ui/style.css", method: .get) { response in
                #expect(response.headers[.contentType] == "text/css; charset=utf-8")
            }
            // An unchanged file is not sent again.
            try await client.execute(uri: "/ui", method: .get, headers: [.ifNoneMatch: etag]) { response in
                #expect(response.status == .notModified && response.body.readableBytes == 0)
            }
            try await client.execute(uri: "/ui/missing.js", method: .get) { response in
                #expect(response.status == .notFound)
            }
            // Odd paths are pages, or files that do not exist; never a crash, never a file elsewhere.
            for (path, status) in [("/ui/%2F", HTTPResponse.Status.ok), ("/ui/%2F%2F", .ok), ("/ui/%2E%2E%2FPackage.swift", .notFound)] {
                try await client.execute(uri: path, method: .get) { response in
                    #expect(response.status == status, "\(path)")
                }
            }
        }
    }

    @Test func noShippedFileRunsInlineScriptOrStyle() throws {
        let assets = UIRoutes.bundled
        #expect(assets["index.html"] != nil && assets["app.js"] != nil && assets["lib/markdown.js"] != nil)
        for (name, asset) in assets where name.hasSuffix(".html") {
            let html = String(buffer: asset.body)
            #expect(!html.contains("<script>") && !html.contains(" style=") && !html.contains(" onclick="), "\(name)")
        }
        // Model text never becomes HTML: the UI builds nodes, it does not parse markup.
        for (name, asset) in assets where name.hasSuffix(".js") {
            let script = String(buffer: asset.body)
            #expect(!script.contains("innerHTML") && !script.contains("insertAdjacentHTML") && !script.contains("eval("), "\(name)")
        }
    }
}
