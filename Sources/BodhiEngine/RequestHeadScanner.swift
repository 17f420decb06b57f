/// The fields Bodhi needs from an inference request's body.
struct RequestHead: Equatable {
    /// Nil when absent or null.
    let model: String?
    /// Nil when absent or null.
    let stream: Bool?
    /// Whether it sets how much to generate (`max_tokens`, `max_completion_tokens`, `n_predict`).
    var limitsOutput = false
    /// The most tokens it asks to generate, and the field that says so (a negative `n_predict`,
    /// llama-server's "no limit", names none).
    var outputLimit: OutputLimit?

    struct OutputLimit: Equatable {
        let field: String
        let tokens: Int
    }
    /// Whether a message has an `image_url` part.
    var readsImages = false
}

/// Reads the top-level `model` and `stream` members of a JSON request body in one pass over its
/// bytes, checking on the way that the whole body is JSON (RFC 8259): what Bodhi needs of every
/// inference request before passing the body on untouched. Foundation's `JSONDecoder`, used
/// before, built a map of the whole document and decoded through containers; on the request path
/// that cost about 50 µs per request on a 2-vCPU machine, this a few.
///
/// It holds the whole body to the RFC, as `JSONSerialization` and llama-server do: whitespace
/// around values, no trailing commas or comments, no control characters in strings, numbers by
/// the RFC's grammar, nesting at most 512 deep, valid UTF-8, and for escapes the ones the RFC lists
/// (a `\u` surrogate half must come paired in the model's name). `JSONDecoder` only checked the
/// values it decoded and let trailing commas through. Of repeated members the last counts.
struct RequestHeadScanner {
    enum Failure: Error, Equatable {
        /// Not JSON.
        case malformed
        /// JSON, but not an object.
        case notAnObject
        /// The member named has a type Bodhi cannot use.
        case wrongType(String)
        /// JSON, but a field the engine would refuse late, or not at all: why, and the field.
        case invalid(String, param: String)
    }

    /// Nesting deeper than this (the outermost object or array counting as 1) is refused, as
    /// `JSONDecoder` refuses it.
    static let maxDepth = 512

    private enum Kind {
        case string, number, boolean(Bool), null, container
    }

    private let bytes: UnsafeRawBufferPointer
    private var index = 0

    private init(_ bytes: UnsafeRawBufferPointer) {
        self.bytes = bytes
    }

    /// The body's `model` and `stream`. `openAILimits`: OpenAI's ranges and limits on sampling
    /// fields apply (not to a request translated from another API, as Ollama's; the shapes do).
    /// `maxOutputTokens`: the most `max_tokens` may ask for (`BODHI_MAX_OUTPUT_TOKENS`), if set.
    static func scan(_ bytes: UnsafeRawBufferPointer, openAILimits: Bool = true, maxOutputTokens: Int? = nil) throws(Failure) -> RequestHead {
        guard isUTF8(bytes) else { throw .malformed }
        var scanner = RequestHeadScanner(bytes)
        scanner.skipWhitespace()
        guard scanner.peek() == UInt8(ascii: "{") else {
            _ = try scanner.value(depth: 1)
            try scanner.expectEnd()
            throw .notAnObject
        }
        var model: (kind: Kind, range: Range<Int>)?
        var stream: Kind?
        var checked: [(name: StaticString, kind: Kind, range: Range<Int>)] = []
        // The request object itself is the first level.
        try scanner.container(depth: 1, closing: UInt8(ascii: "}")) { (scanner: inout RequestHeadScanner) throws(Failure) in
            let member = try scanner.member(depth: 1)
            if try scanner.string(at: member.name, reads: "model") {
                model = (member.kind, member.value)
            } else if try scanner.string(at: member.name, reads: "stream") {
                stream = member.kind
            } else {
                for name in Self.checkedFields where try scanner.string(at: member.name, reads: name) {
                    checked.append((name, member.kind, member.value))
                    break
                }
            }
        }
        try scanner.expectEnd()
        var limitsOutput = false
        var outputLimit: RequestHead.OutputLimit?
        var readsImages = false
        for field in checked {
            if try scanner.check(field.name, kind: field.kind, range: field.range, openAILimits: openAILimits, maxOutputTokens: maxOutputTokens) {
                readsImages = true
            }
            if case .null = field.kind { continue }
            if ["max_tokens", "max_completion_tokens", "n_predict"].contains(field.name.description) {
                limitsOutput = true
                if let tokens = scanner.number(at: field.range), tokens >= 0, tokens < Double(Int.max), tokens > Double(outputLimit?.tokens ?? -1) {
                    outputLimit = .init(field: field.name.description, tokens: Int(tokens))
                }
            }
        }
        return RequestHead(
            model: try scanner.modelName(model), stream: try streamFlag(stream), limitsOutput: limitsOutput, outputLimit: outputLimit,
            readsImages: readsImages)
    }

    /// Whether `bytes` are one JSON value by the RFC (nothing else after it).
    static func validate(_ bytes: UnsafeRawBufferPointer) throws(Failure) {
        guard isUTF8(bytes) else { throw .malformed }
        var scanner = RequestHeadScanner(bytes)
        scanner.skipWhitespace()
        _ = try scanner.value(depth: 1)
        try scanner.expectEnd()
    }

    /// Whether `bytes` are valid UTF-8 (ASCII checked first: most bodies are).
    private static func isUTF8(_ bytes: UnsafeRawBufferPointer) -> Bool {
        bytes.allSatisfy { $0 < 0x80 } || String(validating: bytes, as: UTF8.self) != nil
    }

    // MARK: Checks

    /// The fields checked before a request reaches its engine, in OpenAI's ranges.
    private static let checkedFields: [StaticString] = [
        "messages", "temperature", "top_p", "n", "max_tokens", "max_completion_tokens", "stop", "tools", "n_predict",
    ]

    /// The roles a chat message may have.
    private static let roles: Set<String> = ["system", "developer", "user", "assistant", "tool", "function"]

    /// Checks one field; true when it is `messages` with an image part.
    private func check(_ name: StaticString, kind: Kind, range: Range<Int>, openAILimits: Bool, maxOutputTokens: Int?) throws(Failure) -> Bool {
        let maxStops: Int? = openAILimits ? 4 : nil
        let field = name.description
        if case .null = kind { return false }
        switch field {
        case "messages": return try checkMessages(kind: kind, range: range)
        case "temperature": try checkNumber(field, kind: kind, range: range, in: openAILimits ? 0...2 : 0...Double.greatestFiniteMagnitude, openAILimits ? "between 0 and 2" : "a number, 0 or more")
        case "top_p": try checkNumber(field, kind: kind, range: range, in: 0...1, "between 0 and 1")
        case "n":
            // llama-server makes one choice per request.
            guard case .number = kind, number(at: range) == 1 else {
                throw .invalid("n must be 1: this server makes one choice per request; send more requests for more.", param: field)
            }
        case "max_tokens", "max_completion_tokens":
            try checkNumber(field, kind: kind, range: range, in: 0...Double(Int32.max), "a whole number, 0 or more", whole: true)
            if let maxOutputTokens, let value = number(at: range), value > Double(maxOutputTokens) {
                throw .invalid("\(field) must be at most \(maxOutputTokens), the most this server generates per request (BODHI_MAX_OUTPUT_TOKENS).",
                               param: field)
            }
        case "stop":
            if case .string = kind { return false }
            let expected = maxStops.map { "a string or a list of up to \($0) strings" } ?? "a string or a list of strings"
            guard isArray(kind, range) else { throw .invalid("stop must be \(expected).", param: field) }
            var count = 0
            try elements(of: range) { (kind, _) throws(Failure) in
                count += 1
                guard case .string = kind, count <= maxStops ?? .max else { throw .invalid("stop must be \(expected).", param: field) }
            }
        case "tools":
            guard isArray(kind, range) else { throw .invalid("tools must be a list of tools.", param: field) }
            var position = 0
            try elements(of: range) { (kind, range) throws(Failure) in
                guard isObject(kind, range) else { throw .invalid("tools[\(position)] must be an object.", param: "tools[\(position)]") }
                position += 1
            }
        default: break
        }
        return false
    }

    private func checkNumber(
        _ field: String, kind: Kind, range: Range<Int>, in allowed: ClosedRange<Double>, _ expected: String, whole: Bool = false
    ) throws(Failure) {
        guard case .number = kind, let value = number(at: range), allowed.contains(value), !whole || value.rounded() == value else {
            throw .invalid("\(field) must be \(expected).", param: field)
        }
    }

    /// Each message an object with a known role, its content a string, null or a list of parts,
    /// each part an object whose text (if it is a text part) is a string.
    private func checkMessages(kind: Kind, range: Range<Int>) throws(Failure) -> Bool {
        var images = false
        guard isArray(kind, range) else { throw .invalid("messages must be a list of messages.", param: "messages") }
        var position = 0
        try elements(of: range) { (kind, range) throws(Failure) in
            let at = "messages[\(position)]"
            position += 1
            guard isObject(kind, range) else { throw .invalid("\(at) must be an object with a role and content.", param: at) }
            let members = try self.members(of: range, named: ["role", "content"])
            guard let role = members["role"], case .string = role.kind,
                  Self.roles.contains(try text(of: role.range.dropFirst().dropLast()))
            else {
                throw .invalid("\(at).role must be one of assistant, developer, system, tool, user.", param: "\(at).role")
            }
            guard let content = members["content"] else { return }
            switch content.kind {
            case .string, .null: return
            case .container where isArray(content.kind, content.range):
                var part = 0
                try elements(of: content.range) { (kind, range) throws(Failure) in
                    let partAt = "\(at).content[\(part)]"
                    part += 1
                    guard isObject(kind, range) else { throw .invalid("\(partAt) must be an object with a type.", param: partAt) }
                    let fields = try self.members(of: range, named: ["type", "text"])
                    guard let type = fields["type"], case .string = type.kind else {
                        throw .invalid("\(partAt).type must be a string.", param: "\(partAt).type")
                    }
                    switch try text(of: type.range.dropFirst().dropLast()) {
                    case "text":
                        guard let text = fields["text"], case .string = text.kind else {
                            throw .invalid("\(partAt).text must be a string.", param: "\(partAt).text")
                        }
                    case "image_url": images = true
                    default: break
                    }
                }
            default:
                throw .invalid("\(at).content must be a string or a list of content parts.", param: "\(at).content")
            }
        }
        guard position > 0 else { throw .invalid("messages must not be empty.", param: "messages") }
        return images
    }

    private func isArray(_ kind: Kind, _ range: Range<Int>) -> Bool {
        if case .container = kind { return bytes[range.lowerBound] == UInt8(ascii: "[") }
        return false
    }

    private func isObject(_ kind: Kind, _ range: Range<Int>) -> Bool {
        if case .container = kind { return bytes[range.lowerBound] == UInt8(ascii: "{") }
        return false
    }

    /// Calls `body` with each element of the array at `range` (already scanned once).
    private func elements(of range: Range<Int>, _ body: (Kind, Range<Int>) throws(Failure) -> Void) throws(Failure) {
        var scanner = RequestHeadScanner(bytes)
        scanner.index = range.lowerBound
        try scanner.container(depth: 2, closing: UInt8(ascii: "]")) { (scanner: inout RequestHeadScanner) throws(Failure) in
            let start = scanner.index
            let kind = try scanner.value(depth: 3)
            try body(kind, start..<scanner.index)
        }
    }

    /// The members named `names` of the object at `range` (already scanned once).
    private func members(of range: Range<Int>, named names: [StaticString]) throws(Failure) -> [String: (kind: Kind, range: Range<Int>)] {
        var found: [String: (kind: Kind, range: Range<Int>)] = [:]
        var scanner = RequestHeadScanner(bytes)
        scanner.index = range.lowerBound
        try scanner.container(depth: 3, closing: UInt8(ascii: "}")) { (scanner: inout RequestHeadScanner) throws(Failure) in
            let member = try scanner.member(depth: 3)
            for name in names where try scanner.string(at: member.name, reads: name) {
                found[name.description] = (member.kind, member.value)
            }
        }
        return found
    }

    /// The number written at `range`.
    private func number(at range: Range<Int>) -> Double? {
        Double(String(decoding: bytes[range], as: UTF8.self))
    }

    private func modelName(_ member: (kind: Kind, range: Range<Int>)?) throws(Failure) -> String? {
        guard let member else { return nil }
        switch member.kind {
        case .null: return nil
        case .string: return try text(of: member.range.dropFirst().dropLast())
        default: throw .wrongType("model")
        }
    }

    private static func streamFlag(_ kind: Kind?) throws(Failure) -> Bool? {
        switch kind {
        case nil, .null: nil
        case .boolean(let value): value
        default: throw .wrongType("stream")
        }
    }

    // MARK: Grammar

    private mutating func value(depth: Int) throws(Failure) -> Kind {
        switch peek() {
        case UInt8(ascii: "{"):
            try container(depth: depth, closing: UInt8(ascii: "}")) { (scanner: inout RequestHeadScanner) throws(Failure) in
                _ = try scanner.member(depth: depth)
            }
            return .container
        case UInt8(ascii: "["):
            try container(depth: depth, closing: UInt8(ascii: "]")) { (scanner: inout RequestHeadScanner) throws(Failure) in
                _ = try scanner.value(depth: depth + 1)
            }
            return .container
        case UInt8(ascii: "\""):
            _ = try string()
            return .string
        case UInt8(ascii: "t"):
            try literal("true")
            return .boolean(true)
        case UInt8(ascii: "f"):
            try literal("false")
            return .boolean(false)
        case UInt8(ascii: "n"):
            try literal("null")
            return .null
        default:
            try number()
            return .number
        }
    }

    /// One `"name": value` member of an object at `depth`: where its name and its value are, and
    /// the value's kind.
    private mutating func member(depth: Int) throws(Failure) -> (name: Range<Int>, kind: Kind, value: Range<Int>) {
        let name = try string()
        skipWhitespace()
        try expect(UInt8(ascii: ":"))
        skipWhitespace()
        let start = index
        let kind = try value(depth: depth + 1)
        return (name, kind, start..<index)
    }

    /// An object or array whose opening byte is next; `member` reads one member or element.
    private mutating func container(
        depth: Int, closing: UInt8, member: (inout RequestHeadScanner) throws(Failure) -> Void
    ) throws(Failure) {
        guard depth <= Self.maxDepth else { throw .malformed }
        index += 1
        skipWhitespace()
        if peek() == closing {
            index += 1
            return
        }
        repeat {
            try member(&self)
        } while try !endOfMember(closing: closing)
    }

    /// After a member: true at the container's end, false after a comma (with another member next).
    private mutating func endOfMember(closing: UInt8) throws(Failure) -> Bool {
        skipWhitespace()
        switch peek() {
        case UInt8(ascii: ","):
            index += 1
            skipWhitespace()
            return false
        case closing:
            index += 1
            return true
        default:
            throw .malformed
        }
    }

    /// A string whose opening quote is next; returns the range of its contents, escapes undone later.
    private mutating func string() throws(Failure) -> Range<Int> {
        guard peek() == UInt8(ascii: "\"") else { throw .malformed }
        index += 1
        let start = index
        while index < bytes.count {
            let byte = bytes[index]
            switch byte {
            case UInt8(ascii: "\""):
                index += 1
                return start..<(index - 1)
            case UInt8(ascii: "\\"):
                index += 1
                switch peek() {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"), UInt8(ascii: "f"),
                     UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
                    index += 1
                case UInt8(ascii: "u"):
                    index += 1
                    for _ in 0..<4 {
                        guard let byte = peek(), Self.hexValue(byte) != nil else { throw .malformed }
                        index += 1
                    }
                default:
                    throw .malformed
                }
            case 0..<0x20:
                throw .malformed
            default:
                index += 1
            }
        }
        throw .malformed
    }

    private mutating func number() throws(Failure) {
        if peek() == UInt8(ascii: "-") { index += 1 }
        if peek() == UInt8(ascii: "0") {
            index += 1
        } else {
            guard digits() > 0 else { throw .malformed }
        }
        if peek() == UInt8(ascii: ".") {
            index += 1
            guard digits() > 0 else { throw .malformed }
        }
        if peek() == UInt8(ascii: "e") || peek() == UInt8(ascii: "E") {
            index += 1
            if peek() == UInt8(ascii: "+") || peek() == UInt8(ascii: "-") { index += 1 }
            guard digits() > 0 else { throw .malformed }
        }
    }

    private mutating func digits() -> Int {
        let start = index
        while let byte = peek(), byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") { index += 1 }
        return index - start
    }

    private mutating func literal(_ word: StaticString) throws(Failure) {
        let count = word.utf8CodeUnitCount
        guard index + count <= bytes.count,
              word.withUTF8Buffer({ $0.elementsEqual(bytes[index..<(index + count)]) })
        else { throw .malformed }
        index += count
    }

    private mutating func expect(_ byte: UInt8) throws(Failure) {
        guard peek() == byte else { throw .malformed }
        index += 1
    }

    private mutating func expectEnd() throws(Failure) {
        skipWhitespace()
        guard index == bytes.count else { throw .malformed }
    }

    private mutating func skipWhitespace() {
        while let byte = peek(),
              byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\n") || byte == UInt8(ascii: "\r") || byte == UInt8(ascii: "\t") {
            index += 1
        }
    }

    private func peek() -> UInt8? {
        index < bytes.count ? bytes[index] : nil
    }

    // MARK: Escapes

    /// Whether the string contents at `range` (a member's name) read `name`, escapes undone.
    private func string(at range: Range<Int>, reads name: StaticString) throws(Failure) -> Bool {
        let raw = bytes[range]
        guard raw.contains(UInt8(ascii: "\\")) else { return name.withUTF8Buffer { $0.elementsEqual(raw) } }
        return try text(of: range) == name.description
    }

    /// The text of a string's contents, escapes undone.
    private func text(of range: Range<Int>) throws(Failure) -> String {
        let raw = bytes[range]
        guard raw.contains(UInt8(ascii: "\\")) else { return String(decoding: raw, as: UTF8.self) }
        var text: [UInt8] = []
        text.reserveCapacity(raw.count)
        var index = range.lowerBound
        while index < range.upperBound {
            let byte = bytes[index]
            index += 1
            guard byte == UInt8(ascii: "\\") else {
                text.append(byte)
                continue
            }
            let escape = bytes[index]
            index += 1
            switch escape {
            case UInt8(ascii: "b"): text.append(0x08)
            case UInt8(ascii: "f"): text.append(0x0C)
            case UInt8(ascii: "n"): text.append(0x0A)
            case UInt8(ascii: "r"): text.append(0x0D)
            case UInt8(ascii: "t"): text.append(0x09)
            case UInt8(ascii: "u"):
                var scalar = hexQuad(at: index)
                index += 4
                if (0xD800..<0xDC00).contains(scalar) {
                    // A high surrogate half: the low half must follow as `\uXXXX`.
                    guard index + 6 <= range.upperBound, bytes[index] == UInt8(ascii: "\\"), bytes[index + 1] == UInt8(ascii: "u")
                    else { throw .malformed }
                    let low = hexQuad(at: index + 2)
                    guard (0xDC00..<0xE000).contains(low) else { throw .malformed }
                    scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                    index += 6
                }
                guard let unicode = Unicode.Scalar(scalar) else { throw .malformed }
                UTF8.encode(unicode) { text.append($0) }
            default: text.append(escape)  // `"`, `\` and `/` stand for themselves
            }
        }
        return String(decoding: text, as: UTF8.self)
    }

    private func hexQuad(at index: Int) -> UInt32 {
        (index..<(index + 4)).reduce(0) { $0 << 4 | UInt32(Self.hexValue(bytes[$1]) ?? 0) }
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}
