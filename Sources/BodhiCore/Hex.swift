extension Sequence where Element == UInt8 {
    /// The bytes in lowercase hex, two digits each (digests, ids). Inlinable, so that callers get
    /// a loop specialised to their sequence: a token's hash is written on every request.
    @inlinable
    public var lowercaseHex: String {
        var text: [UInt8] = []
        text.reserveCapacity(underestimatedCount * 2)
        for byte in self {
            text.append(hexDigit(byte >> 4))
            text.append(hexDigit(byte & 0x0F))
        }
        return String(decoding: text, as: UTF8.self)
    }
}

@inlinable
func hexDigit(_ value: UInt8) -> UInt8 {
    value < 10 ? UInt8(ascii: "0") + value : UInt8(ascii: "a") + value - 10
}
