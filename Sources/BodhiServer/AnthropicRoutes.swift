import BodhiCompatibility
import Hummingbird

/// Anthropic's Messages API at `/v1/messages`.
struct AnthropicRoutes {
    let services: BodhiServices

    func register(on router: Router<BodhiRequestContext>) {
        router.post("/v1/messages") { request, context in
            let body = try await request.body.collect(upTo: services.maxRequestBodyBytes)
            return Response.translated(try await services.anthropic.messages(body, allowed: context.principal?.allowedModels))
        }
        router.post("/v1/messages/count_tokens") { request, context in
            let body = try await request.body.collect(upTo: services.maxRequestBodyBytes)
            let count = try await services.anthropic.countTokens(body, allowed: context.principal?.allowedModels)
            return Response.json(bytes: count)
        }
    }
}
