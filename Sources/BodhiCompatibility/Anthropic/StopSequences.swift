/// Anthropic's `stop_sequences`, watched by Bodhi in the text as it is generated, so that the answer
/// can say which one matched (`stop_reason: "stop_sequence"`, `stop_sequence`): llama-server stops at
/// a stop word but does not say which, nor that it was one. Text that may be the start of a
/// sequence is held back until the next piece tells.
struct StopSequences {
    let sequences: [String]
    private var pending = ""

    init(_ sequences: [String]) {
        self.sequences = sequences.filter { !$0.isEmpty }
    }

    /// The text that can be sent now, and the sequence that ended the text, if one did (the text
    /// sent stops before it).
    mutating func feed(_ piece: String) -> (text: String, matched: String?) {
        pending += piece
        var earliest: (range: Range<String.Index>, sequence: String)?
        for sequence in sequences {
            if let range = pending.range(of: sequence), range.lowerBound < (earliest?.range.lowerBound ?? pending.endIndex) {
                earliest = (range, sequence)
            }
        }
        if let earliest {
            let text = String(pending[..<earliest.range.lowerBound])
            pending = ""
            return (text, earliest.sequence)
        }
        // Hold back the longest end of the text that begins some sequence.
        var held = pending.endIndex
        for sequence in sequences {
            var start = pending.index(pending.endIndex, offsetBy: -min(sequence.count - 1, pending.count))
            while start < pending.endIndex {
                if sequence.hasPrefix(pending[start...]) {
                    if start < held { held = start }
                    break
                }
                start = pending.index(after: start)
            }
        }
        let text = String(pending[..<held])
        pending = String(pending[held...])
        return (text, nil)
    }

    /// What was held back, once the text has ended without a match.
    mutating func flush() -> String {
        defer { pending = "" }
        return pending
    }
}
