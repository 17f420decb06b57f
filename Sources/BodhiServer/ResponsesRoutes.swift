import BodhiCompatibility
import BodhiCore
import Hummingbird

/// OpenAI's Responses API: create at `/v1/responses`; a stored response read, deleted and its
/// input listed under `/v1/responses/{id}`. Each user sees only their own.
struct ResponsesRoutes {
    let services: BodhiServices

    func register(on router: Router<BodhiRequestContext>) {
        let responses = services.responses
        router.post("/v1/responses") { request, context in
            let body = try await request.body.collect(upTo: services.maxRequestBodyBytes)
            let principal = try context.requirePrincipal()
            return Response.translated(try await responses.create(body, userID: principal.user.id, allowed: principal.allowedModels))
        }
        router.get("/v1/responses/:id") { _, context in
            Response.json(bytes: try await responses.retrieve(id: context.parameters.decoded("id"), userID: try context.requirePrincipal().user.id))
        }
        router.delete("/v1/responses/:id") { _, context in
            Response.json(bytes: try await responses.delete(id: context.parameters.decoded("id"), userID: try context.requirePrincipal().user.id))
        }
        router.get("/v1/responses/:id/input_items") { request, context in
            let parameters = request.queryValues
            var query = ResponsesService.ItemQuery(after: parameters["after"], before: parameters["before"])
            if let text = parameters["limit"] {
                guard let limit = Int(text) else { throw BodhiError.invalidRequest("limit must be a whole number.", param: "limit") }
                query.limit = limit
            }
            switch parameters["order"] {
            case nil, "desc": break
            case "asc": query.ascending = true
            default: throw BodhiError.invalidRequest("order must be asc or desc.", param: "order")
            }
            return Response.json(bytes: try await responses.inputItems(
                id: context.parameters.decoded("id"), userID: try context.requirePrincipal().user.id, query: query))
        }
    }
}
