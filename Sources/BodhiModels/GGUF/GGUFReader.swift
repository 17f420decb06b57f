import BodhiCore
import Foundation

/// What a GGUF file's header says: metadata and tensor shapes, without the tensor data.
public struct GGUFHeader: Sendable {
    public let version: UInt32
    public let metadata: [String: GGUFValue]
    public let tensorCount: UInt64
    /// Total number of weights, from the tensor shapes.
    public let parameterCount: UInt64
    /// Bytes of header before the tensor data (the reader reads no further).
    public let headerBytes: UInt64
}

public struct GGUFError: Error, Sendable, Equatable, CustomStringConvertible {
    public let message: String
    public var description: String { message }
}

/// Reads GGUF v2 and v3 headers. It reads sequentially and only the header, so multi-gigabyte
/// files cost a few megabytes of I/O (mostly the tokenizer vocabulary). Every count and length
/// is checked against what the file can still hold before anything is allocated, so a
/// truncated or hostile file gives a `GGUFError`, never a crash or a huge allocation.
public enum GGUFReader {
    /// Arrays longer than this are counted but their elements are not kept.
    public static let maxKeptArrayElements = 64
    static let maxNesting = 8
    static let maxDimensions: UInt32 = 8

    public static func read(path: String) throws -> GGUFHeader {
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw GGUFError(message: "cannot open \(path)")
        }
        defer { try? handle.close() }
        let size = (try? handle.seekToEnd()) ?? 0
        try? handle.seek(toOffset: 0)
        var source = ByteSource(size: size) { count in
            (try? handle.read(upToCount: count)) ?? Data()
        }
        return try read(&source)
    }

    public static func read(data: Data) throws -> GGUFHeader {
        var served = false
        var source = ByteSource(size: UInt64(data.count)) { _ in
            defer { served = true }
            return served ? Data() : data
        }
        return try read(&source)
    }

    static func read(_ source: inout ByteSource) throws -> GGUFHeader {
        guard try source.bytes(4).elementsEqual("GGUF".utf8) else {
            throw GGUFError(message: "not a GGUF file (bad magic)")
        }
        let version = try source.uint32()
        guard version == 2 || version == 3 else {
            throw GGUFError(message: "unsupported GGUF version \(version) (2 and 3 are supported)")
        }
        let tensorCount = try source.uint64()
        let metadataCount = try source.uint64()
        // A key-value pair takes at least 13 bytes, a tensor description at least 28.
        try source.require(count: metadataCount, each: 13, what: "metadata entries")
        try source.require(count: tensorCount, each: 28, what: "tensors")

        var metadata: [String: GGUFValue] = [:]
        for _ in 0..<metadataCount {
            let key = try source.string()
            let type = try valueType(try source.uint32())
            metadata[key] = try value(of: type, from: &source, depth: 0)
        }

        var parameters: UInt64 = 0
        for _ in 0..<tensorCount {
            _ = try source.string()
            let dimensions = try source.uint32()
            guard dimensions >= 1, dimensions <= maxDimensions else {
                throw GGUFError(message: "malformed tensor: \(dimensions) dimensions")
            }
            var elements: UInt64 = 1
            for _ in 0..<dimensions {
                let (product, overflow) = elements.multipliedReportingOverflow(by: try source.uint64())
                guard !overflow else { throw GGUFError(message: "malformed tensor: shape overflows") }
                elements = product
            }
            _ = try source.uint32()  // ggml type
            _ = try source.uint64()  // data offset
            let (sum, overflow) = parameters.addingReportingOverflow(elements)
            guard !overflow else { throw GGUFError(message: "malformed tensors: parameter count overflows") }
            parameters = sum
        }
        return GGUFHeader(
            version: version, metadata: metadata, tensorCount: tensorCount, parameterCount: parameters,
            headerBytes: source.offset)
    }

    private static func valueType(_ raw: UInt32) throws -> GGUFValueType {
        guard let type = GGUFValueType(rawValue: raw) else { throw GGUFError(message: "unknown metadata value type \(raw)") }
        return type
    }

    private static func value(of type: GGUFValueType, from source: inout ByteSource, depth: Int) throws -> GGUFValue {
        switch type {
        case .uint8: return .uint8(try source.byte())
        case .int8: return .int8(Int8(bitPattern: try source.byte()))
        case .uint16: return .uint16(UInt16(truncatingIfNeeded: try source.integer(2)))
        case .int16: return .int16(Int16(bitPattern: UInt16(truncatingIfNeeded: try source.integer(2))))
        case .uint32: return .uint32(try source.uint32())
        case .int32: return .int32(Int32(bitPattern: try source.uint32()))
        case .uint64: return .uint64(try source.uint64())
        case .int64: return .int64(Int64(bitPattern: try source.uint64()))
        case .float32: return .float32(Float(bitPattern: try source.uint32()))
        case .float64: return .float64(Double(bitPattern: try source.uint64()))
        case .bool:
            let byte = try source.byte()
            guard byte <= 1 else { throw GGUFError(message: "malformed bool value \(byte)") }
            return .bool(byte == 1)
        case .string: return .string(try source.string())
        case .array:
            guard depth < maxNesting else { throw GGUFError(message: "arrays nested deeper than \(maxNesting)") }
            let elementType = try valueType(try source.uint32())
            let count = try source.uint64()
            try source.require(count: count, each: minimumSize(of: elementType), what: "array elements")
            let keep = count <= UInt64(maxKeptArrayElements)
            var elements: [GGUFValue] = []
            for _ in 0..<count {
                let element = try value(of: elementType, from: &source, depth: depth + 1)
                if keep { elements.append(element) }
            }
            return .array(elementType: elementType, count: count, elements: keep ? elements : nil)
        }
    }

    private static func minimumSize(of type: GGUFValueType) -> UInt64 {
        switch type {
        case .uint8, .int8, .bool: return 1
        case .uint16, .int16: return 2
        case .uint32, .int32, .float32: return 4
        case .uint64, .int64, .float64, .string: return 8
        case .array: return 12
        }
    }
}

/// Sequential little-endian reads over chunks of a file, with bounds checked against its size.
struct ByteSource {
    let size: UInt64
    private(set) var offset: UInt64 = 0
    private var buffer: [UInt8] = []
    private var position = 0
    private let nextChunk: (Int) -> Data
    static let chunkSize = 1 << 20
    /// Longer strings than this are refused: real keys and values (chat templates) are far smaller.
    static let maxStringBytes: UInt64 = 64 << 20

    init(size: UInt64, nextChunk: @escaping (Int) -> Data) {
        self.size = size
        self.nextChunk = nextChunk
    }

    var remaining: UInt64 { size - offset }

    /// Fails unless `count` items of at least `each` bytes fit in what is left of the file.
    func require(count: UInt64, each: UInt64, what: String) throws {
        let (needed, overflow) = count.multipliedReportingOverflow(by: each)
        guard !overflow, needed <= remaining else {
            throw GGUFError(message: "malformed or truncated file: \(count) \(what) cannot fit in the \(remaining) bytes left")
        }
    }

    mutating func bytes(_ count: Int) throws -> ArraySlice<UInt8> {
        guard UInt64(count) <= remaining else {
            throw GGUFError(message: "truncated file: needed \(count) more bytes at offset \(offset), \(remaining) left")
        }
        while buffer.count - position < count {
            let chunk = nextChunk(max(Self.chunkSize, count))
            guard !chunk.isEmpty else { throw GGUFError(message: "truncated file at offset \(offset)") }
            buffer.removeFirst(position)
            position = 0
            buffer.append(contentsOf: chunk)
        }
        defer {
            position += count
            offset += UInt64(count)
        }
        return buffer[position..<(position + count)]
    }

    mutating func integer(_ width: Int) throws -> UInt64 {
        var value: UInt64 = 0
        for (index, byte) in try bytes(width).enumerated() {
            value |= UInt64(byte) << (8 * UInt64(index))
        }
        return value
    }

    mutating func byte() throws -> UInt8 {
        var value: UInt8 = 0
        for byte in try bytes(1) { value = byte }
        return value
    }

    mutating func uint32() throws -> UInt32 { UInt32(truncatingIfNeeded: try integer(4)) }
    mutating func uint64() throws -> UInt64 { try integer(8) }

    mutating func string() throws -> String {
        let length = try uint64()
        guard length <= Self.maxStringBytes else { throw GGUFError(message: "string of \(length) bytes is too long") }
        try require(count: length, each: 1, what: "string bytes")
        return String(decoding: try bytes(Int(length)), as: UTF8.self)
    }
}
