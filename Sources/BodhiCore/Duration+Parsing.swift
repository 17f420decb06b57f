import Foundation

/// How long an idle model stays loaded, as Ollama's `keep_alive` expresses it.
public enum KeepAlive: Sendable, Equatable, CustomStringConvertible {
    /// Never unload for idleness (a negative value, as in Ollama).
    case forever
    /// Unload after this much idle time; zero unloads as soon as the last request ends.
    case idle(Duration)

    /// Parses `5m`, `30s`, `1h30m`, `250ms`, a plain number of seconds, `0`, or a negative
    /// value (keep forever).
    public init?(parsing text: String) {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        if trimmed.hasPrefix("-") {
            guard KeepAlive.parseDuration(String(trimmed.dropFirst())) != nil else { return nil }
            self = .forever
            return
        }
        guard let duration = KeepAlive.parseDuration(trimmed) else { return nil }
        self = .idle(duration)
    }

    public var description: String {
        switch self {
        case .forever: return "forever"
        case .idle(let duration): return KeepAlive.format(duration)
        }
    }

    static func parseDuration(_ text: String) -> Duration? {
        if text.isEmpty { return nil }
        if let seconds = Double(text), seconds.isFinite, seconds >= 0 {
            return .milliseconds(Int64((seconds * 1000).rounded()))
        }
        var total: Duration = .zero
        var number = ""
        var index = text.startIndex
        while index < text.endIndex {
            let character = text[index]
            if character.isNumber || character == "." {
                number.append(character)
                index = text.index(after: index)
                continue
            }
            var unit = String(character)
            let next = text.index(after: index)
            if character == "m", next < text.endIndex, text[next] == "s" {
                unit = "ms"
                index = text.index(after: next)
            } else {
                index = next
            }
            guard let value = Double(number), value.isFinite else { return nil }
            number = ""
            switch unit {
            case "ms": total += .milliseconds(Int64(value.rounded()))
            case "s": total += .milliseconds(Int64((value * 1000).rounded()))
            case "m": total += .milliseconds(Int64((value * 60_000).rounded()))
            case "h": total += .milliseconds(Int64((value * 3_600_000).rounded()))
            case "d": total += .milliseconds(Int64((value * 86_400_000).rounded()))
            default: return nil
            }
        }
        return number.isEmpty ? total : nil
    }

    static func format(_ duration: Duration) -> String {
        let milliseconds = duration.components.seconds * 1000 + duration.components.attoseconds / 1_000_000_000_000_000
        if milliseconds == 0 { return "0s" }
        if milliseconds % 3_600_000 == 0 { return "\(milliseconds / 3_600_000)h" }
        if milliseconds % 60_000 == 0 { return "\(milliseconds / 60_000)m" }
        if milliseconds % 1000 == 0 { return "\(milliseconds / 1000)s" }
        return "\(milliseconds)ms"
    }
}

extension Duration {
    /// `30d`, `12h`, `1h30m`, `90s`, `250ms`, or a plain number of seconds.
    public init?(parsing text: String) {
        guard let duration = KeepAlive.parseDuration(text.trimmingCharacters(in: .whitespaces)) else { return nil }
        self = duration
    }
}
