/// A JSON Schema (2020-12, as OpenAPI 3.1 takes it), written as Swift values so that the API
/// document's request and response shapes are checked by the compiler and kept beside the routes.
indirect enum JSONSchema: Sendable {
    case string(StringFacets = .init())
    case integer(minimum: Int? = nil, maximum: Int? = nil)
    case number(minimum: Double? = nil, maximum: Double? = nil)
    case boolean
    case null
    case array(JSONSchema, minItems: Int? = nil, maxItems: Int? = nil)
    /// Members, those required, and whether others are allowed (most request bodies pass
    /// llama.cpp's own fields on, so allow them).
    case object([String: JSONSchema], required: [String] = [], additional: Bool = true)
    /// An object whose members are named by the caller, each of one shape.
    case map(JSONSchema)
    case anyOf([JSONSchema])
    /// A shape of `components.schemas`.
    case ref(String)
    /// Anything: what a route passes through untouched.
    case any
    case described(JSONSchema, String)

    struct StringFacets: Sendable {
        var values: [String]?
        var minLength: Int?
        var format: String?

        init(values: [String]? = nil, minLength: Int? = nil, format: String? = nil) {
            self.values = values
            self.minLength = minLength
            self.format = format
        }
    }

    static let anyString = JSONSchema.string()
    static let nonEmptyString = JSONSchema.string(.init(minLength: 1))
    static func oneOf(_ values: String...) -> JSONSchema { .string(.init(values: values)) }
    static func nullable(_ schema: JSONSchema) -> JSONSchema { .anyOf([schema, .null]) }

    /// The schema as JSON.
    var json: [String: Any] {
        switch self {
        case .string(let facets):
            var result: [String: Any] = ["type": "string"]
            if let values = facets.values { result["enum"] = values }
            if let minLength = facets.minLength { result["minLength"] = minLength }
            if let format = facets.format { result["format"] = format }
            return result
        case .integer(let minimum, let maximum):
            var result: [String: Any] = ["type": "integer"]
            if let minimum { result["minimum"] = minimum }
            if let maximum { result["maximum"] = maximum }
            return result
        case .number(let minimum, let maximum):
            var result: [String: Any] = ["type": "number"]
            if let minimum { result["minimum"] = minimum }
            if let maximum { result["maximum"] = maximum }
            return result
        case .boolean: return ["type": "boolean"]
        case .null: return ["type": "null"]
        case .array(let items, let minItems, let maxItems):
            var result: [String: Any] = ["type": "array", "items": items.json]
            if let minItems { result["minItems"] = minItems }
            if let maxItems { result["maxItems"] = maxItems }
            return result
        case .object(let members, let required, let additional):
            var result: [String: Any] = ["type": "object", "properties": members.mapValues(\.json)]
            if !required.isEmpty { result["required"] = required.sorted() }
            if !additional { result["additionalProperties"] = false }
            return result
        case .map(let values): return ["type": "object", "additionalProperties": values.json]
        case .anyOf(let schemas): return ["anyOf": schemas.map(\.json)]
        case .ref(let name): return ["$ref": "#/components/schemas/\(name)"]
        case .any: return [:]
        case .described(let schema, let text):
            var result = schema.json
            result["description"] = text
            return result
        }
    }
}
