extension Sequence where Element == UInt8 {
    /// The bytes in lowercase hex, two digits each (digests, the SQLite WAL index header).
    public var lowercaseHex: String {
        let digits = Hex.digits
        var text: [UInt8] = []
        text.reserveCapacity(underestimatedCount * 2)
        for byte in self {
            text.append(digits[Int(byte >> 4)])
            text.append(digits[Int(byte & 0x0F)])
        }
        return String(decoding: text, as: UTF8.self)
    }
}

private enum Hex {
    static let digits = Array("0123456789abcdef".utf8)
}
