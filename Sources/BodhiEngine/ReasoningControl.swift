import BodhiCore
import Foundation
import NIOCore

/// OpenAI's `reasoning_effort` (which Anthropic's `thinking` and Gemini's `thinkingConfig` are mapped
/// to) as the engine's chat templates read it: `enable_thinking` (Qwen3 and its kin; off for `none`
/// and `minimal`) and `reasoning_effort` itself (gpt-oss), in `chat_template_kwargs`, unless the
/// request set those itself. Templates that read neither ignore both.
public enum ReasoningControl {
    static let efforts: Set<String> = ["none", "minimal", "low", "medium", "high"]

    /// The effort a budget of thinking tokens stands for (Anthropic's `budget_tokens`, Gemini's
    /// `thinkingBudget`): 0 none, under 2048 low, under 8192 medium, else high; negative (Gemini's
    /// "as the model sees fit") medium.
    public static func effort(forBudget budget: Int) -> String {
        switch budget {
        case 0: "none"
        case ..<0: "medium"
        case ..<2048: "low"
        case ..<8192: "medium"
        default: "high"
        }
    }

    /// The body with the effort put where templates read it; nil when the request names none.
    static func apply(_ body: ByteBuffer) throws -> ByteBuffer? {
        guard body.readableBytesView.firstRange(of: Array(#""reasoning_effort""#.utf8)) != nil, var request = JSONBody.parsed(body)
        else { return nil }
        switch request["reasoning_effort"] {
        case nil, is NSNull: return nil
        case let effort as String where efforts.contains(effort):
            var kwargs = request["chat_template_kwargs"] as? JSONObject ?? [:]
            if kwargs["enable_thinking"] == nil { kwargs["enable_thinking"] = !["none", "minimal"].contains(effort) }
            if kwargs["reasoning_effort"] == nil { kwargs["reasoning_effort"] = effort }
            request["chat_template_kwargs"] = kwargs
            return JSONBody.buffer(request)
        default:
            throw BodhiError.invalidRequest("reasoning_effort must be one of none, minimal, low, medium, high.", param: "reasoning_effort")
        }
    }
}
