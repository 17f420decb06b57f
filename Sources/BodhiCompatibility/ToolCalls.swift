import BodhiEngine
import Foundation

/// Tool calls as the engine sends them: whole in a message, or in pieces across stream chunks,
/// keyed by `index` — the id and name come first, the JSON arguments as strings to concatenate.
struct ToolCalls {
    struct Call {
        var id: String
        var name: String
        var arguments: String

        /// The arguments as JSON; an empty object when they are not valid JSON (yet).
        var input: Any {
            (try? JSONSerialization.jsonObject(with: Data(arguments.utf8))) ?? [String: Any]()
        }
    }

    /// What one chunk said about one call: whether the call is new, and the arguments it added.
    struct Piece {
        let index: Int
        let isNew: Bool
        let arguments: String
    }

    private var byIndex: [Int: Call] = [:]

    var isEmpty: Bool { byIndex.isEmpty }

    subscript(index: Int) -> Call? { byIndex[index] }

    /// The calls in the order the model made them.
    var ordered: [Call] { byIndex.keys.sorted().compactMap { byIndex[$0] } }

    /// Takes a `tool_calls` list (a message's or a delta's) and says what it added.
    @discardableResult
    mutating func absorb(_ value: Any?) -> [Piece] {
        guard let calls = value as? [[String: Any]] else { return [] }
        var pieces: [Piece] = []
        for (position, call) in calls.enumerated() {
            let index = call["index"] as? Int ?? position
            let function = call["function"] as? [String: Any] ?? [:]
            let isNew = byIndex[index] == nil
            var entry = byIndex[index] ?? Call(id: call["id"] as? String ?? "toolu_\(index)", name: "", arguments: "")
            if let name = function["name"] as? String, !name.isEmpty { entry.name = name }
            let arguments = function["arguments"] as? String ?? ""
            entry.arguments += arguments
            byIndex[index] = entry
            pieces.append(Piece(index: index, isNew: isNew, arguments: arguments))
        }
        return pieces
    }
}
