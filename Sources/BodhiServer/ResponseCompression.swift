import CBrotli
import CompressNIO
import CZstd
import HTTPTypes
import Hummingbird
import NIOCore

/// Compresses responses with gzip, deflate, Zstandard or Brotli when the client's
/// `Accept-Encoding` allows it: whole bodies from `minimumBytes` up, and streams (SSE, NDJSON)
/// event by event, each write flushed so that a client sees every token when it is sent. The first
/// of `ResponseFinishing`'s steps.
enum ResponseCompression {
    enum Encoding: String, CaseIterable {
        // In the order a choice between equally welcome encodings takes: gzip first, which every
        // client decodes and which costs the least per event here.
        case gzip, zstd, br, deflate

        func encoder() throws -> any PartEncoder {
            switch self {
            case .gzip: try ZlibPartEncoder(.gzip())
            // HTTP's "deflate" is the zlib format (RFC 9110 §8.4.1.2), not raw deflate.
            case .deflate: try ZlibPartEncoder(.zlib())
            case .zstd: try ZstdPartEncoder()
            case .br: try BrotliPartEncoder()
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
        let compressed = try encoding.encoder().finished(body)
        headers[.contentLength] = String(compressed.readableBytes)
        label(&headers, encoding)
        return compressed
    }

    private static func label(_ headers: inout HTTPFields, _ encoding: Encoding) {
        headers[.contentEncoding] = encoding.rawValue
        headers[values: .vary].append("Accept-Encoding")
    }

    /// The client's choice by its weights (`q`), none when each is refused with `q=0`. What common
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
        // The most welcome; of equals, the first in `Encoding`'s order.
        var chosen: (encoding: Encoding, weight: Double)?
        for encoding in Encoding.allCases where weight(encoding.rawValue) > (chosen?.weight ?? 0) {
            chosen = (encoding, weight(encoding.rawValue))
        }
        return chosen?.encoding
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
}

/// One stream's compression, part by part, each part flushed so that it can be decompressed as
/// soon as it arrives (an event reaches the client when it is sent).
final class StreamCompressor {
    private let encoder: any PartEncoder

    init(_ encoding: ResponseCompression.Encoding) throws {
        encoder = try encoding.encoder()
    }

    func compress(_ part: ByteBuffer) throws -> ByteBuffer { try encoder.flushed(part) }

    /// The stream's last bytes.
    func finish() throws -> ByteBuffer { try encoder.finished(ByteBuffer()) }
}

/// One compressed stream: parts in, each flushed, and the last one ending it.
protocol PartEncoder: AnyObject {
    /// `part` compressed and flushed: what came so far decodes whole.
    func flushed(_ part: ByteBuffer) throws -> ByteBuffer
    /// `part` compressed as the stream's end.
    func finished(_ part: ByteBuffer) throws -> ByteBuffer
}

struct CompressionFailed: Error, CustomStringConvertible {
    let description: String
}

/// gzip and deflate (zlib), through compress-nio.
final class ZlibPartEncoder: PartEncoder {
    private let compressor: any NIOCompressor

    init(_ algorithm: CompressionAlgorithm) throws {
        compressor = algorithm.compressor
        try compressor.startStream()
    }

    func flushed(_ part: ByteBuffer) throws -> ByteBuffer { try deflate(part, flush: .sync) }

    func finished(_ part: ByteBuffer) throws -> ByteBuffer {
        let tail = try deflate(part, flush: .finish)
        try compressor.finishStream()
        return tail
    }

    /// `input` deflated into a fresh buffer, grown until it fits.
    private func deflate(_ input: ByteBuffer, flush: CompressNIOFlush) throws -> ByteBuffer {
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

/// Zstandard (RFC 8878) at level 3, its own default: fast, and smaller than gzip.
final class ZstdPartEncoder: PartEncoder {
    private let context: OpaquePointer

    init() throws {
        guard let context = ZSTD_createCCtx() else { throw CompressionFailed(description: "zstd: no memory for a context") }
        ZSTD_CCtx_setParameter(context, ZSTD_c_compressionLevel, 3)
        self.context = context
    }

    deinit { ZSTD_freeCCtx(context) }

    func flushed(_ part: ByteBuffer) throws -> ByteBuffer { try run(part, ZSTD_e_flush) }
    func finished(_ part: ByteBuffer) throws -> ByteBuffer { try run(part, ZSTD_e_end) }

    private func run(_ part: ByteBuffer, _ directive: ZSTD_EndDirective) throws -> ByteBuffer {
        var output = ByteBuffer()
        let chunk = max(ZSTD_compressBound(part.readableBytes), 256)
        try part.withUnsafeReadableBytes { input in
            var source = ZSTD_inBuffer(src: input.baseAddress, size: input.count, pos: 0)
            var remaining = 1
            while remaining != 0 || source.pos < source.size {
                try output.writeWithUnsafeMutableBytes(minimumWritableBytes: chunk) { space in
                    var target = ZSTD_outBuffer(dst: space.baseAddress, size: space.count, pos: 0)
                    remaining = ZSTD_compressStream2(context, &target, &source, directive)
                    if ZSTD_isError(remaining) != 0 { throw CompressionFailed(description: "zstd: " + String(cString: ZSTD_getErrorName(remaining))) }
                    return target.pos
                }
            }
        }
        return output
    }
}

/// Brotli (RFC 7932) at quality 5: of its levels, one that keeps up with a stream on one core and
/// still beats gzip's size.
final class BrotliPartEncoder: PartEncoder {
    private let state: OpaquePointer

    init() throws {
        guard let state = BrotliEncoderCreateInstance(nil, nil, nil) else { throw CompressionFailed(description: "brotli: no memory for an encoder") }
        BrotliEncoderSetParameter(state, BROTLI_PARAM_QUALITY, 5)
        self.state = state
    }

    deinit { BrotliEncoderDestroyInstance(state) }

    func flushed(_ part: ByteBuffer) throws -> ByteBuffer { try run(part, BROTLI_OPERATION_FLUSH) }
    func finished(_ part: ByteBuffer) throws -> ByteBuffer { try run(part, BROTLI_OPERATION_FINISH) }

    private func run(_ part: ByteBuffer, _ operation: BrotliEncoderOperation) throws -> ByteBuffer {
        var output = ByteBuffer()
        try part.withUnsafeReadableBytes { input in
            var available = input.count
            var next = input.baseAddress?.assumingMemoryBound(to: UInt8.self)
            while true {
                var room = 0
                guard BrotliEncoderCompressStream(state, operation, &available, &next, &room, nil, nil) != 0 else {
                    throw CompressionFailed(description: "brotli: the encoder failed")
                }
                // The encoder's own buffer: taken without copying twice.
                var size = 0
                if let produced = BrotliEncoderTakeOutput(state, &size), size > 0 {
                    output.writeBytes(UnsafeRawBufferPointer(start: produced, count: size))
                }
                let done = operation == BROTLI_OPERATION_FINISH
                    ? BrotliEncoderIsFinished(state) != 0
                    : available == 0 && BrotliEncoderHasMoreOutput(state) == 0
                if done { return }
            }
        }
        return output
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
