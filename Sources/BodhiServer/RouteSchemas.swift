/// What each route takes and gives, for `/openapi.json`: its request body, query parameters and
/// answers, keyed as `RouteTable.routes` is. Every route's errors come from its API family's shape
/// (`ErrorRenderingMiddleware`), added by `OpenAPIDocument`. Schemathesis checks Bodhi's answers
/// against these (tests/e2e/test_openapi.py), so a shape that drifts from what a handler sends fails
/// a test.
struct RouteSchema: Sendable {
    var request: JSONSchema?
    var query: [String: JSONSchema] = [:]
    var success: Int = 200
    var reply: Reply

    enum Reply: Sendable {
        case json(JSONSchema)
        /// JSON when `stream` is false, Server-Sent Events (OpenAI's, Anthropic's) when true.
        case jsonOrEvents(JSONSchema)
        /// JSON when `stream` is false, NDJSON (Ollama's) when true.
        case jsonOrLines(JSONSchema)

        /// The shape of a whole answer.
        var schema: JSONSchema {
            switch self {
            case .json(let schema), .jsonOrEvents(let schema), .jsonOrLines(let schema): schema
            }
        }
    }
}

enum RouteSchemas {
    static let routes: [String: RouteSchema] = [
        // OpenAI.
        "GET /v1/models": .init(reply: .json(.object(["object": .oneOf("list"), "data": .array(.ref("Model"))], required: ["object", "data"]))),
        "GET /v1/models/**": .init(reply: .json(.ref("Model"))),
        "POST /v1/chat/completions": .init(request: .ref("ChatCompletionRequest"), reply: .jsonOrEvents(.ref("ChatCompletion"))),
        "POST /v1/completions": .init(request: .ref("CompletionRequest"), reply: .jsonOrEvents(.ref("Completion"))),
        "POST /v1/embeddings": .init(request: .ref("EmbeddingRequest"), reply: .json(.ref("EmbeddingList"))),
        "POST /v1/rerank": .init(request: .ref("RerankRequest"), reply: .json(.ref("RerankResult"))),
        "POST /rerank": .init(request: .ref("RerankRequest"), reply: .json(.ref("RerankResult"))),
        "POST /tokenize": .init(
            request: .object(["model": .nonEmptyString, "content": .anyString, "add_special": .boolean, "with_pieces": .boolean], required: ["model"]),
            reply: .json(.object(["tokens": .array(.any), "count": .integer(minimum: 0), "model": .anyString], required: ["tokens"]))),
        "POST /detokenize": .init(
            request: .object(["model": .nonEmptyString, "tokens": .array(.integer(minimum: 0))], required: ["model", "tokens"]),
            reply: .json(.object(["content": .anyString, "model": .anyString], required: ["content"]))),
        // Anthropic.
        "POST /v1/messages": .init(request: .ref("MessagesRequest"), reply: .jsonOrEvents(.ref("Message"))),
        "POST /v1/messages/count_tokens": .init(
            request: .ref("MessagesRequest"), reply: .json(.object(["input_tokens": .integer(minimum: 0)], required: ["input_tokens"]))),
        // Ollama.
        "GET /api/version": .init(reply: .json(.object(["version": .anyString], required: ["version"]))),
        "GET /api/tags": .init(reply: .json(.object(["models": .array(.ref("OllamaModel"))], required: ["models"]))),
        "GET /api/ps": .init(reply: .json(.object(["models": .array(.ref("OllamaModel"))], required: ["models"]))),
        "POST /api/show": .init(
            request: .object(["model": .nonEmptyString, "name": .nonEmptyString, "verbose": .boolean]),
            reply: .json(.object(["modelfile": .anyString, "details": .map(.any), "model_info": .map(.any), "capabilities": .array(.anyString)],
                                 required: ["details", "capabilities"]))),
        "POST /api/chat": .init(request: .ref("OllamaChatRequest"), reply: .jsonOrLines(.ref("OllamaChatReply"))),
        "POST /api/generate": .init(request: .ref("OllamaGenerateRequest"), reply: .jsonOrLines(.ref("OllamaGenerateReply"))),
        "POST /api/embed": .init(
            request: .object(["model": .nonEmptyString, "input": .anyOf([.anyString, .array(.anyString)]), "truncate": .boolean,
                              "dimensions": .integer(minimum: 1), "keep_alive": .any, "options": .map(.any)], required: ["model"]),
            reply: .json(.object(["model": .anyString, "embeddings": .array(.array(.number()))], required: ["model", "embeddings"]))),
        "POST /api/embeddings": .init(
            request: .object(["model": .nonEmptyString, "prompt": .anyString, "keep_alive": .any, "options": .map(.any)], required: ["model"]),
            reply: .json(.object(["embedding": .array(.number())], required: ["embedding"]))),
    ]

    /// Shapes several routes share, by name (`#/components/schemas/NAME`).
    static let components: [String: JSONSchema] = [
        "Model": .object(["id": .anyString, "object": .oneOf("model"), "created": .integer(), "owned_by": .anyString],
                         required: ["id", "object", "created", "owned_by"]),
        "ChatMessage": .object([
            "role": .oneOf("system", "developer", "user", "assistant", "tool", "function"),
            "content": .anyOf([.anyString, .null, .array(.ref("ContentPart"))]),
            "name": .anyString, "tool_calls": .array(.ref("ToolCall")), "tool_call_id": .anyString,
        ], required: ["role"]),
        "ContentPart": .anyOf([
            .object(["type": .oneOf("text"), "text": .anyString], required: ["type", "text"]),
            .object(["type": .oneOf("image_url"), "image_url": .object(["url": .anyString], required: ["url"])], required: ["type", "image_url"]),
            .object(["type": .anyString], required: ["type"]),
        ]),
        "ToolCall": .object([
            "id": .anyString, "type": .oneOf("function"),
            "function": .object(["name": .anyString, "arguments": .anyString], required: ["name"]),
        ], required: ["function"]),
        "ChatCompletionRequest": .object([
            "model": .nonEmptyString, "messages": .array(.ref("ChatMessage"), minItems: 1), "stream": .boolean,
            "temperature": .number(minimum: 0, maximum: 2), "top_p": .number(minimum: 0, maximum: 1), "n": .integer(minimum: 1, maximum: 1),
            "max_tokens": .nullable(.integer(minimum: 0)), "max_completion_tokens": .nullable(.integer(minimum: 0)),
            "stop": .anyOf([.anyString, .array(.anyString, maxItems: 4), .null]), "seed": .integer(),
            "tools": .array(.object(["type": .oneOf("function"), "function": .object(["name": .nonEmptyString, "parameters": .map(.any)], required: ["name"])],
                                    required: ["type", "function"])),
            "tool_choice": .anyOf([.oneOf("none", "auto", "required"), .object(["type": .oneOf("function"), "function": .object(["name": .anyString])])]),
            "response_format": .object(["type": .oneOf("text", "json_object", "json_schema")], required: ["type"]),
            "reasoning_effort": .oneOf("none", "minimal", "low", "medium", "high"),
        ], required: ["model", "messages"]),
        "ChatCompletion": .object([
            "id": .anyString, "object": .oneOf("chat.completion"), "created": .integer(), "model": .anyString,
            "choices": .array(.object([
                "index": .integer(minimum: 0),
                "message": .object(["role": .anyString, "content": .nullable(.anyString), "tool_calls": .array(.ref("ToolCall")),
                                    "reasoning_content": .nullable(.anyString)], required: ["role"]),
                "finish_reason": .nullable(.anyString),
            ], required: ["index", "message"])),
            "usage": .ref("Usage"),
        ], required: ["id", "object", "created", "model", "choices"]),
        "Usage": .object(["prompt_tokens": .integer(minimum: 0), "completion_tokens": .integer(minimum: 0), "total_tokens": .integer(minimum: 0)],
                         required: ["prompt_tokens", "total_tokens"]),
        "CompletionRequest": .object([
            "model": .nonEmptyString, "prompt": .anyOf([.anyString, .array(.anyString), .array(.integer())]), "stream": .boolean,
            "temperature": .number(minimum: 0, maximum: 2), "top_p": .number(minimum: 0, maximum: 1), "n": .integer(minimum: 1, maximum: 1),
            "max_tokens": .nullable(.integer(minimum: 0)), "stop": .anyOf([.anyString, .array(.anyString, maxItems: 4), .null]),
            "echo": .boolean, "logprobs": .nullable(.integer(minimum: 0, maximum: 20)), "best_of": .integer(minimum: 1, maximum: 1),
        ], required: ["model", "prompt"]),
        "Completion": .object([
            "id": .anyString, "object": .oneOf("text_completion"), "created": .integer(), "model": .anyString,
            "choices": .array(.object(["index": .integer(minimum: 0), "text": .anyString, "finish_reason": .nullable(.anyString)],
                                      required: ["index", "text"])),
            "usage": .ref("Usage"),
        ], required: ["id", "object", "created", "model", "choices"]),
        "EmbeddingRequest": .object([
            "model": .nonEmptyString,
            "input": .anyOf([.anyString, .array(.anyString, minItems: 1), .array(.integer(minimum: 0), minItems: 1)]),
            "dimensions": .integer(minimum: 1), "encoding_format": .oneOf("float", "base64"),
        ], required: ["model", "input"]),
        "EmbeddingList": .object([
            "object": .oneOf("list"), "model": .anyString, "usage": .object(["prompt_tokens": .integer(minimum: 0), "total_tokens": .integer(minimum: 0)]),
            "data": .array(.object(["object": .oneOf("embedding"), "index": .integer(minimum: 0),
                                    "embedding": .anyOf([.array(.number()), .anyString])], required: ["index", "embedding"])),
        ], required: ["object", "data", "model"]),
        "RerankRequest": .object([
            "model": .nonEmptyString, "query": .nonEmptyString,
            "documents": .array(.anyOf([.anyString, .object(["text": .anyString], required: ["text"])]), minItems: 1, maxItems: 1000),
            "top_n": .integer(minimum: 1), "return_documents": .boolean,
        ], required: ["model", "query", "documents"]),
        "RerankResult": .object([
            "model": .anyString, "object": .anyString, "usage": .object(["prompt_tokens": .integer(minimum: 0), "total_tokens": .integer(minimum: 0)]),
            "results": .array(.object(["index": .integer(minimum: 0), "relevance_score": .number(),
                                       "document": .object(["text": .anyString], required: ["text"])], required: ["index", "relevance_score"])),
        ], required: ["results"]),
        "MessagesRequest": .object([
            "model": .nonEmptyString, "max_tokens": .integer(minimum: 1), "stream": .boolean,
            "messages": .array(.object(["role": .oneOf("user", "assistant"), "content": .anyOf([.anyString, .array(.map(.any))])],
                                       required: ["role", "content"]), minItems: 1),
            "system": .anyOf([.anyString, .array(.map(.any))]), "temperature": .number(minimum: 0, maximum: 1),
            "top_p": .number(minimum: 0, maximum: 1), "top_k": .integer(minimum: 0), "stop_sequences": .array(.anyString),
            "tools": .array(.object(["name": .nonEmptyString, "input_schema": .map(.any)], required: ["name"])),
            "tool_choice": .object(["type": .oneOf("auto", "any", "tool", "none"), "name": .anyString], required: ["type"]),
        ], required: ["model", "messages"]),
        "Message": .object([
            "id": .anyString, "type": .oneOf("message"), "role": .oneOf("assistant"), "model": .anyString,
            "content": .array(.object(["type": .anyString], required: ["type"])),
            "stop_reason": .nullable(.anyString), "stop_sequence": .nullable(.anyString),
            "usage": .object(["input_tokens": .integer(minimum: 0), "output_tokens": .integer(minimum: 0)], required: ["input_tokens", "output_tokens"]),
        ], required: ["id", "type", "role", "model", "content", "usage"]),
        "OllamaModel": .object([
            "name": .anyString, "model": .anyString, "size": .integer(minimum: 0), "digest": .anyString, "details": .map(.any),
        ], required: ["name", "model"]),
        "OllamaOptions": .map(.any),
        "OllamaChatRequest": .object([
            "model": .nonEmptyString, "stream": .boolean, "format": .any, "options": .ref("OllamaOptions"), "keep_alive": .any, "think": .boolean,
            "messages": .array(.object(["role": .oneOf("system", "user", "assistant", "tool"), "content": .anyString,
                                        "images": .array(.anyString), "tool_calls": .array(.map(.any))], required: ["role"])),
            "tools": .array(.map(.any)),
        ], required: ["model"]),
        "OllamaChatReply": .object([
            "model": .anyString, "created_at": .anyString, "done": .boolean,
            "message": .object(["role": .anyString, "content": .anyString], required: ["role", "content"]),
            "done_reason": .anyString, "prompt_eval_count": .integer(minimum: 0), "eval_count": .integer(minimum: 0),
        ], required: ["model", "created_at", "done"]),
        "OllamaGenerateRequest": .object([
            "model": .nonEmptyString, "prompt": .anyString, "suffix": .anyString, "system": .anyString, "stream": .boolean, "raw": .boolean,
            "format": .any, "options": .ref("OllamaOptions"), "keep_alive": .any, "images": .array(.anyString), "think": .boolean,
        ], required: ["model"]),
        "OllamaGenerateReply": .object([
            "model": .anyString, "created_at": .anyString, "done": .boolean, "response": .anyString,
            "done_reason": .anyString, "prompt_eval_count": .integer(minimum: 0), "eval_count": .integer(minimum: 0),
        ], required: ["model", "created_at", "done", "response"]),
        // Each API family's errors.
        "OpenAIError": .object(["error": .object([
            "message": .anyString, "type": .anyString, "param": .nullable(.anyString), "code": .nullable(.anyString),
        ], required: ["message", "type"])], required: ["error"]),
        "AnthropicError": .object(["type": .oneOf("error"), "error": .object(["type": .anyString, "message": .anyString], required: ["type", "message"])],
                                  required: ["type", "error"]),
        "OllamaError": .object(["error": .anyString], required: ["error"]),
        "GeminiError": .object(["error": .object(["code": .integer(), "message": .anyString, "status": .anyString], required: ["code", "message", "status"])],
                               required: ["error"]),
        "BodhiError": .object(["error": .object(["code": .anyString, "message": .anyString, "param": .nullable(.anyString)], required: ["code", "message"])],
                              required: ["error"]),
    ]
}
