extension StringProtocol {
    /// The text without leading and trailing whitespace. Foundation's `trimmingCharacters(in:)`
    /// goes through NSString, which showed in the profile of every authenticated request.
    public func trimmingWhitespace() -> String {
        guard let first = firstIndex(where: { !$0.isWhitespace }), let last = lastIndex(where: { !$0.isWhitespace }) else { return "" }
        return String(self[first...last])
    }
}
