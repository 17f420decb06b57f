import BodhiCompatibility
import Hummingbird

/// Anthropic's Messages API at `/v1/messages`.
struct AnthropicRoutes {
    let services: BodhiServices

    func register(on router: Router<BodhiRequestContext>) {
        router.post("/v1/messages") { request, context in
            let body = try await request.body.collect(upTo: services.maxRequestBodyBytes)
            switch try await services.anthropic.messages(body, allowed: context.principal?.allowedModels) {
            case .json(let bytes):
                return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: bytes))
            case .stream(let events):
                let headers: HTTPFields = [.contentType: "text/event-stream", .cacheControl: "no-cache"]
                return Response(status: .ok, headers: headers, body: ResponseBody { writer in
                    await events.forward { event in try await writer.write(event) }
                    try await writer.finish(nil)
                })
            }
        }
    }
}
