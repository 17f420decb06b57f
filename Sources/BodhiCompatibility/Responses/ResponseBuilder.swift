import BodhiEngine
import Foundation

/// Builds a Responses API response from a whole chat completion, or from its stream chunks with
/// the Responses stream's events on the way: reasoning, a message and function calls are output
/// items, each added, filled by deltas and done in turn.
struct ResponseBuilder {
    let id: String
    let model: String
    let createdAt: Int
    let request: ResponsesRequest

    /// Output items that are done.
    private(set) var output: [JSONObject] = []
    private var open: OpenItem?
    private var toolCalls = ToolCalls()
    private var finishReason: String?
    private var usage: JSONObject?
    private var sequence = 0

    private enum OpenItem {
        case reasoning(id: String, text: String)
        case message(id: String, text: String)
        case call(id: String, toolIndex: Int)
    }

    init(id: String, model: String, createdAt: Int, request: ResponsesRequest) {
        self.id = id
        self.model = model
        self.createdAt = createdAt
        self.request = request
    }

    /// Whether the engine stopped at the output limit.
    var isIncomplete: Bool { finishReason == "length" }

    /// The response object: `in_progress` while streaming, else as it ended.
    func response(status: String, error: JSONObject? = nil) -> JSONObject {
        var response: JSONObject = [
            "id": id, "object": "response", "created_at": createdAt, "status": status, "model": model,
            "output": output, "error": error ?? NSNull(),
            "incomplete_details": status == "incomplete" ? ["reason": "max_output_tokens"] : NSNull(),
            "instructions": request.instructions ?? NSNull(),
            "previous_response_id": request.previousResponseID ?? NSNull(),
            "parallel_tool_calls": request.chatFields["parallel_tool_calls"] ?? true,
            "temperature": request.chatFields["temperature"] ?? NSNull(),
            "top_p": request.chatFields["top_p"] ?? NSNull(),
            "max_output_tokens": NSNull(), "reasoning": ["effort": NSNull(), "summary": NSNull()] as JSONObject,
            "metadata": [:] as JSONObject, "store": request.store, "truncation": "disabled", "user": NSNull(),
            "usage": usage ?? NSNull(),
        ]
        for (key, value) in request.echo { response[key] = value }
        if status != "in_progress" { response["completed_at"] = status == "completed" ? Int(Date().timeIntervalSince1970) : NSNull() }
        return response
    }

    /// The status the response ends with.
    var finalStatus: String { isIncomplete ? "incomplete" : "completed" }

    // MARK: A whole completion

    mutating func absorb(completion: JSONObject) {
        let choice = (completion["choices"] as? [JSONObject])?.first ?? [:]
        let message = choice["message"] as? JSONObject ?? [:]
        finishReason = choice["finish_reason"] as? String
        absorbUsage(completion["usage"])
        if let reasoning = message["reasoning_content"] as? String, !reasoning.isEmpty {
            output.append(reasoningItem(id: ResponsesRequest.newID("rs_"), text: reasoning, done: true))
        }
        toolCalls.absorb(message["tool_calls"])
        let text = message["content"] as? String ?? ""
        if !text.isEmpty || toolCalls.isEmpty {
            output.append(messageItem(id: ResponsesRequest.newID("msg_"), text: text, done: true))
        }
        for call in toolCalls.ordered {
            output.append(callItem(id: ResponsesRequest.newID("fc_"), call: call, done: true))
        }
    }

    // MARK: A stream

    /// The events that open a stream.
    mutating func start() -> [JSONObject] {
        let response = self.response(status: "in_progress")
        return [event("response.created", ["response": response]), event("response.in_progress", ["response": response])]
    }

    /// The events for one chat completion chunk.
    mutating func absorb(chunk: JSONObject) -> [JSONObject] {
        absorbUsage(chunk["usage"])
        guard let choice = (chunk["choices"] as? [JSONObject])?.first else { return [] }
        if let reason = choice["finish_reason"] as? String { finishReason = reason }
        let delta = choice["delta"] as? JSONObject ?? [:]
        var events: [JSONObject] = []
        if let reasoning = delta["reasoning_content"] as? String, !reasoning.isEmpty {
            if case .reasoning = open {} else {
                events += close()
                let itemID = ResponsesRequest.newID("rs_")
                open = .reasoning(id: itemID, text: "")
                events.append(event("response.output_item.added", ["output_index": output.count, "item": reasoningItem(id: itemID, text: "", done: false)]))
            }
            if case .reasoning(let itemID, let text) = open {
                open = .reasoning(id: itemID, text: text + reasoning)
                events.append(event("response.reasoning_text.delta", [
                    "item_id": itemID, "output_index": output.count, "content_index": 0, "delta": reasoning,
                ]))
            }
        }
        if let text = delta["content"] as? String, !text.isEmpty {
            if case .message = open {} else {
                events += close()
                events += openMessage()
            }
            if case .message(let itemID, let sofar) = open {
                open = .message(id: itemID, text: sofar + text)
                events.append(event("response.output_text.delta", [
                    "item_id": itemID, "output_index": output.count, "content_index": 0, "delta": text, "logprobs": [Any](),
                ]))
            }
        }
        for piece in toolCalls.absorb(delta["tool_calls"]) {
            if piece.isNew {
                events += close()
                let itemID = ResponsesRequest.newID("fc_")
                open = .call(id: itemID, toolIndex: piece.index)
                var item = callItem(id: itemID, call: toolCalls[piece.index]!, done: false)
                item["arguments"] = ""
                events.append(event("response.output_item.added", ["output_index": output.count, "item": item]))
            }
            if case .call(let itemID, let index) = open, index == piece.index, !piece.arguments.isEmpty {
                events.append(event("response.function_call_arguments.delta", [
                    "item_id": itemID, "output_index": output.count, "delta": piece.arguments,
                ]))
            }
        }
        return events
    }

    /// The events that end a stream the engine finished: open items done, then the response.
    mutating func finish() -> [JSONObject] {
        var events = close()
        if output.isEmpty {
            // A reply with no text at all is still a message, as a whole answer's is.
            events += openMessage()
            events += close()
        }
        let status = finalStatus
        events.append(event(status == "completed" ? "response.completed" : "response.incomplete", ["response": response(status: status)]))
        return events
    }

    /// The event that ends a stream the engine failed.
    mutating func failed(_ message: String) -> JSONObject {
        _ = close()
        return event("response.failed", ["response": response(status: "failed", error: ["code": "server_error", "message": message])])
    }

    /// An `error` event, for what went wrong after the response was made (it could not be stored).
    mutating func error(_ message: String) -> JSONObject {
        event("error", ["code": "server_error", "message": message, "param": NSNull()])
    }

    private mutating func openMessage() -> [JSONObject] {
        let itemID = ResponsesRequest.newID("msg_")
        open = .message(id: itemID, text: "")
        var item = messageItem(id: itemID, text: "", done: false)
        item["content"] = [Any]()
        return [
            event("response.output_item.added", ["output_index": output.count, "item": item]),
            event("response.content_part.added", [
                "item_id": itemID, "output_index": output.count, "content_index": 0, "part": Self.textPart(""),
            ]),
        ]
    }

    /// Ends the open item: its done events, and it joins the output.
    private mutating func close() -> [JSONObject] {
        guard let item = open else { return [] }
        open = nil
        let index = output.count
        var events: [JSONObject] = []
        let done: JSONObject
        switch item {
        case .reasoning(let itemID, let text):
            done = reasoningItem(id: itemID, text: text, done: true)
            events.append(event("response.reasoning_text.done", ["item_id": itemID, "output_index": index, "content_index": 0, "text": text]))
        case .message(let itemID, let text):
            done = messageItem(id: itemID, text: text, done: true)
            events.append(event("response.output_text.done", [
                "item_id": itemID, "output_index": index, "content_index": 0, "text": text, "logprobs": [Any](),
            ]))
            events.append(event("response.content_part.done", [
                "item_id": itemID, "output_index": index, "content_index": 0, "part": Self.textPart(text),
            ]))
        case .call(let itemID, let toolIndex):
            let call = toolCalls[toolIndex]!
            done = callItem(id: itemID, call: call, done: true)
            events.append(event("response.function_call_arguments.done", [
                "item_id": itemID, "output_index": index, "name": call.name, "arguments": call.arguments,
            ]))
        }
        events.append(event("response.output_item.done", ["output_index": index, "item": done]))
        output.append(done)
        return events
    }

    // MARK: Pieces

    private mutating func event(_ type: String, _ fields: JSONObject) -> JSONObject {
        var event = fields
        event["type"] = type
        event["sequence_number"] = sequence
        sequence += 1
        return event
    }

    private mutating func absorbUsage(_ value: Any?) {
        guard let counts = value as? JSONObject else { return }
        let input = counts["prompt_tokens"] as? Int ?? 0
        let output = counts["completion_tokens"] as? Int ?? 0
        let cached = (counts["prompt_tokens_details"] as? JSONObject)?["cached_tokens"] as? Int ?? 0
        usage = [
            "input_tokens": input, "input_tokens_details": ["cached_tokens": cached],
            "output_tokens": output, "output_tokens_details": ["reasoning_tokens": 0], "total_tokens": input + output,
        ]
    }

    private static func textPart(_ text: String) -> JSONObject {
        ["type": "output_text", "text": text, "annotations": [Any](), "logprobs": [Any]()]
    }

    private func itemStatus(done: Bool) -> String {
        done ? (isIncomplete ? "incomplete" : "completed") : "in_progress"
    }

    private func messageItem(id: String, text: String, done: Bool) -> JSONObject {
        ["type": "message", "id": id, "role": "assistant", "status": itemStatus(done: done), "content": [Self.textPart(text)]]
    }

    private func reasoningItem(id: String, text: String, done: Bool) -> JSONObject {
        let content: [JSONObject] = text.isEmpty ? [] : [["type": "reasoning_text", "text": text]]
        return ["type": "reasoning", "id": id, "summary": [Any](), "status": itemStatus(done: done), "content": content]
    }

    private func callItem(id: String, call: ToolCalls.Call, done: Bool) -> JSONObject {
        ["type": "function_call", "id": id, "call_id": call.id, "name": call.name, "arguments": call.arguments, "status": itemStatus(done: done)]
    }
}
