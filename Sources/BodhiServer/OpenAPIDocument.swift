import BodhiIdentity
import Foundation
import Hummingbird

/// The OpenAPI 3.1 document at `/openapi.json`, built from the router's own routes and the
/// access table, so that neither can drift from it.
enum OpenAPIDocument {
    static func make(routes: [(method: String, path: String)]) -> [String: Any] {
        var paths: [String: [String: Any]] = [:]
        for route in routes {
            let pattern = route.path
            let key = "\(route.method) \(pattern)"
            let rule = AccessPolicy.rules[key] ?? .admin
            // `**` captures a model name, which may contain `/`.
            let path = pattern.replacingOccurrences(of: "**", with: "{model}")
            var parameters: [[String: Any]] = []
            for match in path.matches(of: /\{([a-z_]+)\}/) {
                parameters.append([
                    "name": String(match.1), "in": "path", "required": true,
                    "schema": match.1 == "model" ? ["type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._:-]*$"] : ["type": "string"],
                    "description": match.1 == "model" ? "A model id (owner/repo:QUANT, percent-encoded or as plain segments) or an alias." : "",
                ])
            }
            var operation: [String: Any] = [
                "operationId": operationID(route.method, path),
                "summary": "\(route.method) \(path)",
                "tags": [family(of: path)],
                "x-bodhi-access": describe(rule),
                "responses": responses(key, method: route.method, family: APIFamily.of(path: path)),
            ]
            if let schema = RouteSchemas.routes[key] {
                if let request = schema.request {
                    operation["requestBody"] = ["required": true, "content": ["application/json": ["schema": request.json]]]
                }
                for (name, value) in schema.query.sorted(by: { $0.key < $1.key }) {
                    parameters.append(["name": name, "in": "query", "required": false, "schema": value.json])
                }
            }
            if !parameters.isEmpty { operation["parameters"] = parameters }
            switch rule.level {
            case .open: operation["security"] = [[String: [String]]]()
            default:
                operation["security"] = rule.sessionOnly
                    ? [["session": [String]()]]
                    : [["bearer": [String]()], ["apiKey": [String]()], ["session": [String]()]]
            }
            paths[path, default: [:]][route.method.lowercased()] = operation
        }
        return [
            "openapi": "3.1.0",
            "info": ["title": "Bodhi", "version": APIVersioning.version,
                     "description": "OpenAI-, Ollama- and Anthropic-compatible APIs and Bodhi's own, on local GGUF models."],
            "paths": paths,
            "components": [
                "schemas": RouteSchemas.components.mapValues(\.json),
                "securitySchemes": [
                "bearer": ["type": "http", "scheme": "bearer", "description": "An API token, bodhi_..."],
                "apiKey": ["type": "apiKey", "in": "header", "name": "x-api-key"],
                "session": ["type": "apiKey", "in": "cookie", "name": "bodhi_session",
                            "description": "A browser session; changes also need X-CSRF-Token."],
            ]],
        ]
    }

    /// A route's answers: what it gives on success, where `RouteSchemas` describes it, and its API
    /// family's error shape for every 4xx and 5xx.
    static func responses(_ key: String, method: String, family: APIFamily) -> [String: Any] {
        var responses: [String: Any] = [:]
        if let schema = RouteSchemas.routes[key] {
            var content: [String: Any] = ["application/json": ["schema": schema.reply.schema.json]]
            // Events and lines are chunks of the same answer, `[DONE]` or an error: described in docs/API.md.
            switch schema.reply {
            case .json: break
            case .jsonOrEvents: content["text/event-stream"] = ["schema": [String: Any]()]
            case .jsonOrLines: content["application/x-ndjson"] = ["schema": [String: Any]()]
            }
            responses[String(schema.success)] = ["description": "Success; see docs/API.md.", "content": content]
        } else {
            responses["default"] = ["description": "See docs/API.md."]
        }
        guard method != "HEAD" else { return responses }
        let error: [String: Any] = ["content": ["application/json": ["schema": JSONSchema.ref(family.rawValue + "Error").json]]]
        responses["4XX"] = error.merging(["description": "The request cannot be served as sent (\(family.rawValue)'s error shape)."]) { a, _ in a }
        responses["5XX"] = error.merging(["description": "The server or an engine failed (\(family.rawValue)'s error shape)."]) { a, _ in a }
        return responses
    }

    static func describe(_ rule: AccessPolicy.Rule) -> String {
        let level: String
        switch rule.level {
        case .open: level = "open"
        case .signedIn: level = "signed in"
        case .role(let role): level = "role \(role.rawValue) or higher"
        }
        return rule.sessionOnly ? level + ", browser session only" : level
    }

    static func family(of path: String) -> String {
        APIFamily.of(path: path).rawValue
    }

    static func operationID(_ method: String, _ path: String) -> String {
        let words = path.split(whereSeparator: { !$0.isLetter && !$0.isNumber }).map { $0.prefix(1).uppercased() + $0.dropFirst() }
        return method.lowercased() + (words.isEmpty ? "Root" : words.joined())
    }
}
