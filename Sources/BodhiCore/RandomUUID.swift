import Foundation

extension UUID {
    /// A random (version 4) UUID from the standard library's generator (`getrandom`).
    /// Foundation's `UUID()` on Linux opens and reads `/dev/urandom` on every call, which was
    /// 2 % of Bodhi's CPU per request when each request took a fresh id.
    public static func random() -> UUID {
        var generator = SystemRandomNumberGenerator()
        var uuid: uuid_t = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        withUnsafeMutableBytes(of: &uuid) { bytes in
            bytes.storeBytes(of: generator.next() as UInt64, toByteOffset: 0, as: UInt64.self)
            bytes.storeBytes(of: generator.next() as UInt64, toByteOffset: 8, as: UInt64.self)
            bytes[6] = (bytes[6] & 0x0F) | 0x40  // version 4
            bytes[8] = (bytes[8] & 0x3F) | 0x80  // RFC 4122 variant
        }
        return UUID(uuid: uuid)
    }
}

extension UUID {
    /// The canonical form in lowercase (`8-4-4-4-12` hex digits), as ids are written, without
    /// Foundation's uppercase string and a second one to lower it (request ids are made per request).
    public var lowercaseString: String {
        withUnsafeBytes(of: uuid) { bytes in
            var text: [UInt8] = []
            text.reserveCapacity(36)
            for (index, byte) in bytes.enumerated() {
                if index == 4 || index == 6 || index == 8 || index == 10 { text.append(UInt8(ascii: "-")) }
                text.append(hexDigit(byte >> 4))
                text.append(hexDigit(byte & 0x0F))
            }
            return String(decoding: text, as: UTF8.self)
        }
    }

    /// The 32 hex digits alone, in lowercase.
    public var lowercaseHex: String {
        withUnsafeBytes(of: uuid) { $0.lowercaseHex }
    }
}
