import Foundation

/// Sizes as people write and read them: `1.6 GB`, `512MB`, `12GiB`.
public enum ByteSize {
    /// `98.4 MB`: decimal units, one decimal, as `bodhi ls` and the UI show sizes.
    public static func format(_ bytes: Int64) -> String {
        let units = ["B", "KB", "MB", "GB", "TB"]
        var value = Double(bytes)
        var unit = 0
        while value >= 1000, unit < units.count - 1 {
            value /= 1000
            unit += 1
        }
        return unit == 0 ? "\(bytes) B" : String(format: "%.1f %@", value, units[unit])
    }

    /// Parses a number of bytes with an optional unit: `B`, `KB`/`MB`/`GB`/`TB` (powers of 1000),
    /// `KiB`/`MiB`/`GiB`/`TiB` (powers of 1024), case-insensitive, space allowed; nil otherwise.
    public static func parse(_ text: String) -> Int64? {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        let number = trimmed.prefix { $0.isNumber || $0 == "." }
        let unit = trimmed.dropFirst(number.count).trimmingCharacters(in: .whitespaces).lowercased()
        guard let value = Double(number), value.isFinite, value >= 0 else { return nil }
        let multipliers: [String: Double] = [
            "": 1, "b": 1, "kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12,
            "kib": 1024, "mib": 1_048_576, "gib": 1_073_741_824, "tib": 1_099_511_627_776,
        ]
        guard let multiplier = multipliers[unit], value * multiplier < 9.2e18 else { return nil }
        return Int64((value * multiplier).rounded())
    }
}

/// `BODHI_MEMORY_BUDGET`: how much memory the loaded models may take together.
public enum MemoryBudget: Sendable, Equatable, CustomStringConvertible {
    /// No limit but `BODHI_MAX_LOADED_MODELS`.
    case off
    case bytes(Int64)

    /// Parses `off`, a share of `total` such as `80%`, or a size such as `16GB` or `12GiB`.
    public init?(parsing text: String, totalMemory total: Int64?) {
        let trimmed = text.trimmingCharacters(in: .whitespaces).lowercased()
        if trimmed == "off" {
            self = .off
        } else if trimmed.hasSuffix("%") {
            guard let percent = Double(trimmed.dropLast()), percent > 0, percent <= 100, let total else { return nil }
            self = .bytes(Int64(Double(total) * percent / 100))
        } else {
            guard let bytes = ByteSize.parse(trimmed), bytes > 0 else { return nil }
            self = .bytes(bytes)
        }
    }

    public var limit: Int64? {
        if case .bytes(let bytes) = self { return bytes }
        return nil
    }

    public var description: String {
        switch self {
        case .off: "off"
        case .bytes(let bytes): ByteSize.format(bytes)
        }
    }
}
