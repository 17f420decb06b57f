import Hummingbird

extension Request {
    /// The path after `prefix`, percent-decoded: model ids contain `/`, and clients send them
    /// either encoded as one segment or as plain segments.
    func decodedPath(after prefix: String) -> String {
        let raw = String(uri.path.dropFirst(prefix.count))
        return raw.removingPercentEncoding ?? raw
    }
}

extension Parameters {
    /// A path parameter, percent-decoded (clients encode `:` and other characters in names).
    func decoded(_ name: String) throws -> String {
        let raw = try require(name)
        return raw.removingPercentEncoding ?? raw
    }
}
