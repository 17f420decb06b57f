@testable import BodhiHTTP
import HTTPTypes
import NIOHTTP1
import NIOHTTPTypesHTTP1
import Testing

/// Bodhi's request conversion gives the router what swift-nio-extras' codec would have given it,
/// for every form of request target.
@Suite(.timeLimit(.minutes(2))) struct OriginFormHTTPCodecTests {
    @Test(arguments: [
        "/v1/chat/completions", "/v1/models/QuantFactory%2FSmolLM2:Q4_1?x=1&y=%20", "/", "//host/path", "/a b", "/%zz",
        "http://example.com/v1/models?x=1", "http://example.com", "*",
    ])
    func requestsConvertAsTheLibraryConvertsThem(target: String) throws {
        var head = HTTPRequestHead(version: .http1_1, method: .POST, uri: target)
        head.headers.add(name: "Host", value: "127.0.0.1:1135")
        head.headers.add(name: "Authorization", value: "Bearer abc")
        head.headers.add(name: "Cookie", value: "a=1; b=2")
        let ours = try OriginFormHTTPCodec.request(head)
        let library = try HTTPRequest(head, secure: false, splitCookie: false)
        #expect(ours == library)
        #expect(ours.path == library.path)
    }
}
