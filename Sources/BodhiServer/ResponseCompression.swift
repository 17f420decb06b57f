import CompressNIO
import HTTPTypes
import Hummingbird
import NIOCore

/// Compresses responses with gzip or deflate when the client's `Accept-Encoding` allows it:
/// whole bodies from `minimumBytes` up, and streams (SSE, NDJSON) event by event, each write
/// flushed so that a client sees every token when it is sent. Brotli is not offered: no
/// package in reach provides it. The first of `ResponseFinishing`'s steps.
enum ResponseCompression {
    enum Encoding: String {
        case gzip, deflate

        var algorithm: CompressionAlgorithm {
            switch self {
            case .gzip: .gzip()
            // HTTP's "deflate" is the zlib format (RFC 9110 §8.4.1.2), not raw deflate.
            case .deflate: .zlib()
            }
        }
    }

    /// Smaller bodies gain nothing worth the CPU (and can grow).
    static let minimumBytes = 1024

    /// `response`, compressed when the request's `Accept-Encoding` allows it and its body is worth it.
    static func compress(_ response: Response, accepting accepted: String?, method: HTTPRequest.Method) async throws -> Response {
        var response = response
        guard let encoding = encoding(for: response.status, response.headers, accepting: accepted, method: method) else { return response }
        if let length = response.body.contentLength {
            guard length >= Self.minimumBytes else { return response }
            let body = try await Self.collect(response.body, upTo: length)
            response.body = .init(byteBuffer: try compressWhole(body, &response.headers, encoding: encoding))
        } else {
            response.body = Self.streaming(response.body, encoding: encoding)
            labelStream(&response.headers, encoding)
        }
        return response
    }

    /// The headers of a stream compressed event by event.
    static func labelStream(_ headers: inout HTTPFields, _ encoding: Encoding) {
        headers[.contentLength] = nil
        label(&headers, encoding)
    }

    /// How a response with `status` and `headers` is to be compressed for a request's
    /// `Accept-Encoding` and method; nil: not at all.
    static func encoding(
        for status: HTTPResponse.Status, _ headers: HTTPFields, accepting accepted: String?, method: HTTPRequest.Method
    ) -> Encoding? {
        guard let accepted, let encoding = Self.negotiate(accepted),
              headers[.contentEncoding] == nil, status != .noContent, status != .notModified,
              method != .head, Self.isCompressible(headers[.contentType])
        else { return nil }
        return encoding
    }

    /// A whole body, compressed when it is large enough to gain from it, with its headers to match.
    static func compressWhole(_ body: ByteBuffer, _ headers: inout HTTPFields, encoding: Encoding) throws -> ByteBuffer {
        guard body.readableBytes >= Self.minimumBytes else { return body }
        var body = body
        let compressed = try body.compress(with: encoding.algorithm)
        headers[.contentLength] = String(compressed.readableBytes)
        label(&headers, encoding)
        return compressed
    }

    private static func label(_ headers: inout HTTPFields, _ encoding: Encoding) {
        headers[.contentEncoding] = encoding.rawValue
        headers[values: .vary].append("Accept-Encoding")
    }

    /// The client's choice: gzip before deflate, neither when refused with `q=0`. What common
    /// clients send (httpx, the OpenAI SDKs, curl, browsers) is answered without parsing.
    static func negotiate(_ header: String) -> Encoding? {
        switch header {
        case "identity": return nil
        case "gzip", "gzip, deflate", "gzip, deflate, br", "gzip, deflate, br, zstd", "gzip, deflate, zstd", "deflate, gzip": return .gzip
        default: return parse(header)
        }
    }

    private static func parse(_ header: String) -> Encoding? {
        var weights: [String: Double] = [:]
        for item in header.split(separator: ",") {
            let parts = item.split(separator: ";").map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
            guard let name = parts.first, !name.isEmpty else { continue }
            var weight = 1.0
            for parameter in parts.dropFirst() where parameter.hasPrefix("q=") {
                weight = Double(parameter.dropFirst(2)) ?? 0
            }
            weights[name] = weight
        }
        func weight(_ name: String) -> Double { weights[name] ?? weights["*"] ?? 0 }
        let candidates = [(Encoding.gzip, weight("gzip")), (.deflate, weight("deflate"))].filter { $0.1 > 0 }
        return candidates.max { $0.1 < $1.1 }?.0
    }

    /// Text and JSON compress well; already-compressed and binary bodies (model files) do not.
    static func isCompressible(_ contentType: String?) -> Bool {
        guard let type = contentType?.lowercased() else { return false }
        return type.hasPrefix("text/") || type.hasPrefix("application/json") || type.hasPrefix("application/x-ndjson")
            || type.hasPrefix("application/javascript") || type.hasPrefix("application/problem+json")
            || type.hasPrefix("image/svg+xml")
    }

    private static func collect(_ body: ResponseBody, upTo length: Int) async throws -> ByteBuffer {
        let collected = CollectedBody()
        collected.buffer.reserveCapacity(length)
        try await body.write(CollectingWriter(collected: collected))
        return collected.buffer
    }

    private static func streaming(_ body: ResponseBody, encoding: Encoding) -> ResponseBody {
        ResponseBody { writer in
            try await body.write(CompressingWriter(parent: writer, compressor: try StreamCompressor(encoding)))
        }
    }

    /// `input` deflated into a fresh buffer, grown until it fits.
    static func deflate(_ compressor: any NIOCompressor, _ input: ByteBuffer, flush: CompressNIOFlush) throws -> ByteBuffer {
        var source = input
        var result = ByteBuffer()
        result.reserveCapacity(max(64, compressor.maxSize(from: source)))
        while true {
            do {
                try compressor.streamDeflate(from: &source, to: &result, flush: flush)
                return result
            } catch let error as CompressNIOError where error == .bufferOverflow {
                result.reserveCapacity(result.capacity * 2)
            }
        }
    }
}

/// One stream's compression, part by part, each part flushed so that it can be decompressed as
/// soon as it arrives (an event reaches the client when it is sent).
final class StreamCompressor {
    private let compressor: any NIOCompressor

    init(_ encoding: ResponseCompression.Encoding) throws {
        compressor = encoding.algorithm.compressor
        try compressor.startStream()
    }

    func compress(_ part: ByteBuffer) throws -> ByteBuffer {
        try ResponseCompression.deflate(compressor, part, flush: .sync)
    }

    /// The stream's last bytes.
    func finish() throws -> ByteBuffer {
        let tail = try ResponseCompression.deflate(compressor, ByteBuffer(), flush: .finish)
        try compressor.finishStream()
        return tail
    }
}

/// Where `CollectingWriter` leaves the bytes: the writer itself is consumed by the body it collects.
private final class CollectedBody {
    var buffer = ByteBuffer()
}

/// Collects a body written whole.
private struct CollectingWriter: ResponseBodyWriter {
    let collected: CollectedBody

    mutating func write(_ part: ByteBuffer) async throws {
        var part = part
        collected.buffer.writeBuffer(&part)
    }

    consuming func finish(_ trailingHeaders: HTTPFields?) async throws {}
}

/// Compresses each write and flushes it, so that a stream's events reach the client as they come.
private struct CompressingWriter: ResponseBodyWriter {
    var parent: any ResponseBodyWriter
    let compressor: StreamCompressor

    mutating func write(_ part: ByteBuffer) async throws {
        try await parent.write(compressor.compress(part))
    }

    consuming func finish(_ trailingHeaders: HTTPFields?) async throws {
        try await parent.write(compressor.finish())
        try await parent.finish(trailingHeaders)
    }
}
