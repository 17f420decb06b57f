import BodhiCore
import Crypto
import Foundation

/// Random secrets and their hashes, compared in constant time.
public enum Secrets {
    static let alphabet = Array("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")

    /// `count` characters of base62 from the system's CSPRNG.
    public static func randomBase62(_ count: Int) -> String {
        var generator = SystemRandomNumberGenerator()
        // 62 × 4 = 248 ≤ 256: rejecting bytes ≥ 248 keeps every character equally likely.
        var result = ""
        while result.count < count {
            let byte = UInt8.random(in: 0...255, using: &generator)
            if byte < 248 { result.append(alphabet[Int(byte) % 62]) }
        }
        return result
    }

    /// Lowercase hex SHA-256 of `text`, hashed from its UTF-8 in place (an API token's, on every request).
    public static func sha256(_ text: String) -> String {
        var text = text
        return text.withUTF8 { utf8 in
            SHA256.hash(data: UnsafeRawBufferPointer(utf8)).withUnsafeBytes { $0.lowercaseHex }
        }
    }

    /// Equal strings compare equal; the time taken does not depend on where they differ.
    public static func constantTimeEquals(_ lhs: String, _ rhs: String) -> Bool {
        let left = Array(lhs.utf8), right = Array(rhs.utf8)
        var difference = UInt8(truncatingIfNeeded: left.count ^ right.count)
        for index in 0..<max(left.count, right.count) {
            difference |= (index < left.count ? left[index] : 0) ^ (index < right.count ? right[index] : 0)
        }
        return difference == 0
    }
}

/// API tokens: `bodhi_` + 32 random base62 characters + a 6-character checksum, so that a
/// mistyped or truncated token is refused without a database lookup, and secret scanners can
/// recognise one.
public enum TokenFormat {
    public static let prefixLength = 8

    public static func make() -> String {
        let random = Secrets.randomBase62(32)
        return "bodhi_" + random + checksum(random)
    }

    /// The lookup prefix of a well-formed token; nil when the token is malformed.
    public static func lookupPrefix(of token: String) -> String? {
        guard token.hasPrefix("bodhi_"), token.count == 6 + 32 + 6 else { return nil }
        let body = token.dropFirst(6)
        let random = String(body.prefix(32)), sum = String(body.suffix(6))
        guard Secrets.constantTimeEquals(checksum(random), sum) else { return nil }
        return String(random.prefix(prefixLength))
    }

    static func checksum(_ random: String) -> String {
        let digest = Array(SHA256.hash(data: Data(("bodhi-token:" + random).utf8)))
        var value = digest.prefix(6).reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        var result = ""
        for _ in 0..<6 {
            result.append(Secrets.alphabet[Int(value % 62)])
            value /= 62
        }
        return result
    }
}

/// Encrypts secrets that Bodhi stores for third parties (AES-GCM). The key comes from
/// `BODHI_ENCRYPTION_KEY` (base64 of 32 bytes) or from `$BODHI_HOME/secret.key`, generated on
/// first use with mode 0600.
public struct SecretBox: SecretSealing {
    private let key: SymmetricKey

    public init(key: SymmetricKey) {
        self.key = key
    }

    /// The key from the environment, else the key file (created when missing).
    public static func load(environment: [String: String], home: String) throws -> SecretBox {
        if let text = environment["BODHI_ENCRYPTION_KEY"], !text.isEmpty {
            guard let data = Data(base64Encoded: text), data.count == 32 else {
                throw BodhiError(.invalidSetting, status: 400, "BODHI_ENCRYPTION_KEY must be 32 bytes in base64 (e.g. `openssl rand -base64 32`).")
            }
            return SecretBox(key: SymmetricKey(data: data))
        }
        let path = home + "/secret.key"
        if let data = FileManager.default.contents(atPath: path), let key = Data(base64Encoded: data), key.count == 32 {
            return SecretBox(key: SymmetricKey(data: key))
        }
        try FileManager.default.createDirectory(atPath: home, withIntermediateDirectories: true)
        let key = SymmetricKey(size: .bits256)
        let encoded = key.withUnsafeBytes { Data($0).base64EncodedString() }
        // Created with 0600 from the start: the key is never readable by others, not even briefly.
        let descriptor = Glibc.open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else {
            throw BodhiError.internalError("Could not create the key file \(path): \(String(cString: strerror(errno)))")
        }
        defer { close(descriptor) }
        let written = encoded.utf8CString.withUnsafeBufferPointer { write(descriptor, $0.baseAddress, $0.count - 1) }
        guard written == encoded.utf8.count, fsync(descriptor) == 0 else {
            throw BodhiError.internalError("Could not write the key file \(path).")
        }
        return SecretBox(key: key)
    }

    public func seal(_ plaintext: String) throws -> String {
        try AES.GCM.seal(Data(plaintext.utf8), using: key).combined!.base64EncodedString()
    }

    public func open(_ sealed: String) throws -> String {
        guard let data = Data(base64Encoded: sealed) else { throw BodhiError.internalError("A stored secret is damaged.") }
        let box = try AES.GCM.SealedBox(combined: data)
        return String(decoding: try AES.GCM.open(box, using: key), as: UTF8.self)
    }
}
