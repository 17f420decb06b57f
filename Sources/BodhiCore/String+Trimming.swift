extension StringProtocol {
    /// The text without leading and trailing whitespace. Foundation's `trimmingCharacters(in:)`
    /// goes through NSString, which showed in the profile of every authenticated request.
    public func trimmingWhitespace() -> String {
        // Most text (tokens, header values) has none to trim: two bytes tell, not a walk through
        // its characters.
        let text = String(self)
        if let first = text.utf8.first, let last = text.utf8.last, first > 0x20, first < 0x7F, last > 0x20, last < 0x7F {
            return text
        }
        guard let first = firstIndex(where: { !$0.isWhitespace }), let last = lastIndex(where: { !$0.isWhitespace }) else { return "" }
        return String(self[first...last])
    }
}
