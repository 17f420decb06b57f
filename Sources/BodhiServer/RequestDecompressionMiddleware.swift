import BodhiCore
import CompressNIO
import HTTPTypes
import Hummingbird

/// Request bodies sent with `Content-Encoding: gzip` or `deflate` are decoded before any route
/// reads them (up to the body limit, decoded); any other encoding is a 415 that names it, not a
/// JSON error about bytes no route could read. After access control: nothing is inflated for a
/// caller who may not call.
struct RequestDecompressionMiddleware: RouterMiddleware {
    typealias Context = BodhiRequestContext
    let maxRequestBodyBytes: Int

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard let encoding = request.headers[.contentEncoding]?.trimmingCharacters(in: .whitespaces).lowercased(), encoding != "identity"
        else { return try await next(request, context) }
        let algorithms: [CompressionAlgorithm]
        switch encoding {
        case "gzip", "x-gzip": algorithms = [.gzip()]
        // HTTP's "deflate" is zlib's format; some clients send raw deflate under that name.
        case "deflate": algorithms = [.zlib(), .deflate()]
        default:
            throw BodhiError(.invalidRequest, status: 415, "Content-Encoding '\(encoding)' is not supported; send gzip, deflate or none.")
        }
        let compressed = try await request.body.collect(upTo: maxRequestBodyBytes)
        var decoded: ByteBuffer?
        for algorithm in algorithms where decoded == nil {
            var input = compressed
            do {
                decoded = try input.decompress(with: algorithm, maxSize: maxRequestBodyBytes)
            } catch let error as CompressNIOError where error == .bufferOverflow {
                throw BodhiError.payloadTooLarge(limitBytes: maxRequestBodyBytes)
            } catch {
                continue
            }
        }
        guard let decoded else { throw BodhiError.invalidRequest("The request body is not valid \(encoding) data.") }
        var head = request.head
        head.headerFields[.contentEncoding] = nil
        head.headerFields[.contentLength] = String(decoded.readableBytes)
        return try await next(Request(head: head, body: .init(buffer: decoded)), context)
    }
}
