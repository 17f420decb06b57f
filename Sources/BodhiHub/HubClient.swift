import AsyncHTTPClient
import BodhiCore
import Foundation
import NIOCore
import NIOHTTP1

/// Talks to a Hugging Face Hub the way `huggingface_hub` does: `HF_ENDPOINT`, a bearer token
/// from `HF_TOKEN`, the model-info API for file lists, and `resolve/{revision}/{path}` for
/// file metadata (a HEAD) and content (a GET, usually redirected to a file host).
public struct HubClient: Sendable {
    public let endpoint: String
    let token: String?
    let http: HTTPClient

    /// `http` must not follow redirects itself: the token goes to the Hub only, never to the
    /// file host a download is redirected to.
    public init(endpoint: String, token: String?, http: HTTPClient) {
        self.endpoint = endpoint
        self.token = token
        self.http = http
    }

    /// A client for Hub traffic: no automatic redirects, no decompression, stalls time out.
    public static func makeHTTPClient() -> HTTPClient {
        var configuration = HTTPClient.Configuration()
        configuration.redirectConfiguration = .disallow
        configuration.timeout = .init(connect: .seconds(10), read: .seconds(60))
        configuration.decompression = .disabled
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }

    /// A file as the model-info API lists it.
    public struct RepoFile: Sendable, Equatable {
        public let path: String
        public let size: Int64?
        /// The LFS oid (SHA-256); nil for files kept in git rather than LFS.
        public let sha256: String?
    }

    /// A repository at one commit.
    public struct RepoSnapshot: Sendable {
        public let repo: String
        public let commit: String
        public let files: [RepoFile]
    }

    /// `GET /api/models/{repo}/revision/{revision}?blobs=true`: the commit a revision points at
    /// and every file with its size and LFS hash.
    public func snapshot(repo: String, revision: String) async throws -> RepoSnapshot {
        let url = "\(endpoint)/api/models/\(repo)/revision/\(Self.escape(revision))?blobs=true"
        let response = try await send(url: url, method: .GET, authorized: true, hubContext: (repo, revision, nil))
        let body = try await response.body.collect(upTo: 64 * 1024 * 1024)
        struct Info: Decodable {
            struct Sibling: Decodable {
                struct LFS: Decodable {
                    let sha256: String?
                    let oid: String?
                    let size: Int64?
                }
                let rfilename: String
                let size: Int64?
                let lfs: LFS?
            }
            let sha: String?
            let siblings: [Sibling]?
        }
        let info: Info
        do {
            info = try JSONDecoder().decode(Info.self, from: Data(body.readableBytesView))
        } catch {
            throw BodhiError(.hubError, status: 502, "The Hub at \(endpoint) sent an unreadable model info for \(repo): \(error)")
        }
        guard let commit = info.sha else {
            throw BodhiError(.hubError, status: 502, "The Hub at \(endpoint) did not say which commit \(repo)@\(revision) is.")
        }
        let files = (info.siblings ?? []).map { sibling in
            RepoFile(
                path: sibling.rfilename, size: sibling.lfs?.size ?? sibling.size,
                sha256: (sibling.lfs?.sha256 ?? sibling.lfs?.oid).map { $0.lowercased() })
        }
        return RepoSnapshot(repo: repo, commit: commit, files: files)
    }

    /// What `HEAD resolve/{revision}/{path}` says about a file.
    public struct FileMetadata: Sendable {
        /// The commit the revision resolved to (`X-Repo-Commit`).
        public let commit: String?
        /// `X-Linked-Etag` (LFS files: the SHA-256) or `ETag`, without quotes.
        public let etag: String?
        public let size: Int64?
        /// Where the content is: the file host the Hub redirects to, or the resolve URL itself.
        public let location: String
    }

    public func fileMetadata(repo: String, revision: String, path: String) async throws -> FileMetadata {
        var url = resolveURL(repo: repo, revision: revision, path: path)
        // Relative redirects (a renamed repository) stay on the Hub and are followed here;
        // an absolute one to another host is where the content is.
        for _ in 0..<10 {
            let response = try await send(
                url: url, method: .HEAD, authorized: true, hubContext: (repo, revision, path), allowRedirect: true)
            let headers = response.headers
            if (300..<400).contains(response.status.code), let location = headers.first(name: "location") {
                if location.hasPrefix("/") {
                    url = endpoint + location
                    continue
                }
                return metadata(headers, location: location)
            }
            return metadata(headers, location: url)
        }
        throw BodhiError(.hubError, status: 502, "Too many redirects resolving \(path) in \(repo).")
    }

    private func metadata(_ headers: HTTPHeaders, location: String) -> FileMetadata {
        let etag = (headers.first(name: "x-linked-etag") ?? headers.first(name: "etag")).map(Self.normalizeETag)
        let size = (headers.first(name: "x-linked-size") ?? headers.first(name: "content-length")).flatMap { Int64($0) }
        return FileMetadata(commit: headers.first(name: "x-repo-commit"), etag: etag, size: size, location: location)
    }

    /// `W/"abc"` → `abc`, as `huggingface_hub` normalizes ETags.
    static func normalizeETag(_ value: String) -> String {
        var text = value.trimmingCharacters(in: .whitespaces)
        if text.hasPrefix("W/") { text.removeFirst(2) }
        return text.trimmingCharacters(in: CharacterSet(charactersIn: "\""))
    }

    public func resolveURL(repo: String, revision: String, path: String) -> String {
        let escapedPath = path.split(separator: "/", omittingEmptySubsequences: false).map { Self.escape(String($0)) }.joined(separator: "/")
        return "\(endpoint)/\(repo)/resolve/\(Self.escape(revision))/\(escapedPath)"
    }

    /// GETs content from `url` starting at byte `offset`, following redirects (the token only to
    /// the Hub). The response is 200 (from the start) or 206 (from `offset`).
    func download(url: String, offset: Int64, repo: String, path: String) async throws -> HTTPClientResponse {
        var current = url
        for _ in 0..<10 {
            var extra: [(String, String)] = [("Accept-Encoding", "identity")]
            if offset > 0 { extra.append(("Range", "bytes=\(offset)-")) }
            let response = try await send(
                url: current, method: .GET, authorized: isHub(current), hubContext: (repo, nil, path),
                allowRedirect: true, extraHeaders: extra, acceptRangeNotSatisfiable: true)
            if (300..<400).contains(response.status.code), let location = response.headers.first(name: "location") {
                current = location.hasPrefix("/") ? Self.origin(of: current) + location : location
                continue
            }
            return response
        }
        throw BodhiError(.hubError, status: 502, "Too many redirects downloading \(path) from \(repo).")
    }

    private func isHub(_ url: String) -> Bool {
        Self.origin(of: url) == Self.origin(of: endpoint)
    }

    private static func origin(of url: String) -> String {
        guard let components = URLComponents(string: url), let scheme = components.scheme, let host = components.host else { return url }
        return "\(scheme)://\(host)" + (components.port.map { ":\($0)" } ?? "")
    }

    static func escape(_ segment: String) -> String {
        segment.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed.subtracting(CharacterSet(charactersIn: "/"))) ?? segment
    }

    /// Sends one request and turns the Hub's error statuses into messages a person can act on.
    private func send(
        url: String, method: HTTPMethod, authorized: Bool, hubContext: (repo: String, revision: String?, path: String?),
        allowRedirect: Bool = false, extraHeaders: [(String, String)] = [], acceptRangeNotSatisfiable: Bool = false
    ) async throws -> HTTPClientResponse {
        var request = HTTPClientRequest(url: url)
        request.method = method
        request.headers.add(name: "User-Agent", value: "bodhi/\(Settings.engineVersion); huggingface_hub-compatible")
        if authorized, let token { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
        for (name, value) in extraHeaders { request.headers.add(name: name, value: value) }
        let response: HTTPClientResponse
        do {
            response = try await http.execute(request, timeout: .seconds(60))
        } catch {
            throw HubTransportError(message: "Could not reach \(Self.origin(of: url)): \(error)")
        }
        let code = Int(response.status.code)
        if (200..<300).contains(code) || (allowRedirect && (300..<400).contains(code))
            || (acceptRangeNotSatisfiable && code == 416) {
            return response
        }
        let errorCode = response.headers.first(name: "x-error-code")
        let serverMessage = response.headers.first(name: "x-error-message")
        _ = try? await response.body.collect(upTo: 1024 * 1024)
        let what = hubContext.path.map { "\($0) in \(hubContext.repo)" } ?? hubContext.repo
        let suffix = serverMessage.map { " (the Hub said: \($0))" } ?? ""
        switch code {
        case 401 where errorCode == "RepoNotFound" || errorCode == "RepositoryNotFound",
             404 where errorCode == "RepoNotFound" || errorCode == "RepositoryNotFound":
            throw BodhiError(.hubError, status: 404,
                             "Repository \(hubContext.repo) was not found on \(endpoint). If it is private, set HF_TOKEN to a token that can read it.\(suffix)")
        case 401:
            throw BodhiError(.hubError, status: 403,
                             token == nil
                                ? "\(endpoint) requires authentication for \(what): set HF_TOKEN to a Hugging Face token.\(suffix)"
                                : "\(endpoint) refused the HF_TOKEN for \(what): the token is invalid or expired.\(suffix)")
        case 403 where errorCode == "GatedRepo":
            throw BodhiError(.hubError, status: 403,
                             "\(hubContext.repo) is gated: accept its conditions at \(endpoint)/\(hubContext.repo) with the account whose HF_TOKEN Bodhi uses.\(suffix)")
        case 403:
            throw BodhiError(.hubError, status: 403, "\(endpoint) denied access to \(what).\(suffix)")
        case 404 where errorCode == "RevisionNotFound":
            throw BodhiError(.hubError, status: 404, "Revision '\(hubContext.revision ?? "")' does not exist in \(hubContext.repo).\(suffix)")
        case 404:
            throw BodhiError(.hubError, status: 404, "\(what) was not found on \(endpoint).\(suffix)")
        case 429, 500...599:
            throw HubTransportError(message: "\(Self.origin(of: url)) answered \(code) for \(what).\(suffix)")
        default:
            throw BodhiError(.hubError, status: 502, "\(Self.origin(of: url)) answered \(code) for \(what).\(suffix)")
        }
    }
}

/// A failure worth retrying: the connection dropped, timed out, or the server was briefly unwell.
struct HubTransportError: Error, CustomStringConvertible {
    let message: String
    var description: String { message }
}
