import BodhiCompatibility
import BodhiCore
import BodhiEngine
import Hummingbird

/// Google's Gemini API under `/v1beta`: the models, and `models/{model}:{method}` for
/// generating (whole or streamed), and embedding. The token comes as `x-goog-api-key` (or
/// `?key=`), as Google's clients send it.
struct GeminiRoutes {
    let services: BodhiServices

    /// A model as Gemini describes one.
    static func model(_ object: OpenAIRoutes.ModelObject) -> JSONObject {
        [
            "name": "models/" + object.id, "baseModelId": object.id, "version": "1", "displayName": object.id,
            "description": "Served by Bodhi (owned by \(object.ownedBy)).",
            "supportedGenerationMethods": ["generateContent", "streamGenerateContent", "countTokens", "embedContent", "batchEmbedContents"],
        ]
    }

    func register(on router: Router<BodhiRequestContext>) {
        let gemini = services.gemini
        router.get("/v1beta/models") { request, context in
            let all = await OpenAIRoutes.visibleModels(services, allowed: context.principal?.allowedModels)
            let parameters = request.queryValues
            let size = parameters["pageSize"].flatMap(Int.init).map { min(max($0, 1), 1000) } ?? 50
            let start = max(0, parameters["pageToken"].flatMap(Int.init) ?? 0)
            let page = all.dropFirst(start).prefix(size)
            var body: JSONObject = ["models": page.map(Self.model)]
            if start + page.count < all.count { body["nextPageToken"] = String(start + page.count) }
            return Response.json(bytes: JSONBody.buffer(body))
        }
        router.get("/v1beta/models/**") { request, context in
            let name = request.decodedPath(after: "/v1beta/models/")
            let served = try await services.inference.resolve(name, allowedBy: context.principal?.allowedModels)
            return Response.json(bytes: JSONBody.buffer(Self.model(OpenAIRoutes.ModelObject(served))))
        }
        router.post("/v1beta/models/**") { request, context in
            let target = request.decodedPath(after: "/v1beta/models/")
            guard let colon = target.lastIndex(of: ":"), let method = GeminiService.Method(rawValue: String(target[target.index(after: colon)...]))
            else {
                throw BodhiError.notFound("Send POST /v1beta/models/{model}:generateContent, :streamGenerateContent, :countTokens, :embedContent or :batchEmbedContents.")
            }
            let model = String(target[..<colon])
            let body = try await request.body.collect(upTo: services.maxRequestBodyBytes)
            let allowed = context.principal?.allowedModels
            switch method {
            case .generateContent, .streamGenerateContent:
                return Response.translated(try await gemini.generate(model: model, body, stream: method == .streamGenerateContent, allowed: allowed))
            case .embedContent, .batchEmbedContents:
                return Response.json(bytes: try await gemini.embed(model: model, body, batch: method == .batchEmbedContents, allowed: allowed))
            case .countTokens:
                return Response.json(bytes: try await gemini.countTokens(model: model, body, allowed: allowed))
            }
        }
    }
}
