import BodhiCore
import BodhiEngine
import BodhiModels
import Foundation
import Hummingbird

/// The OpenAI-compatible surface under `/v1`.
struct OpenAIRoutes {
    let services: BodhiServices

    func register(on router: Router<BodhiRequestContext>) {
        router.get("/v1/models") { _, context in try await listModels(allowed: context.principal?.allowedModels) }
        router.get("/v1/models/**") { request, context in try await retrieveModel(request, allowed: context.principal?.allowedModels) }
        // llama-server's (and vLLM's) tokenizer endpoints, for a model named in the body.
        router.post("/tokenize") { request, context in
            let body = try await request.body.collect(upTo: services.maxRequestBodyBytes)
            return Response.json(bytes: try await services.inference.tokenize(body, allowed: context.principal?.allowedModels))
        }
        router.post("/detokenize") { request, context in
            let body = try await request.body.collect(upTo: services.maxRequestBodyBytes)
            return Response.json(bytes: try await services.inference.detokenize(body, allowed: context.principal?.allowedModels))
        }
        router.post("/rerank") { request, context in try await infer(.rerank, request, allowed: context.principal?.allowedModels) }
        for operation in InferenceOperation.allCases where operation.rawValue.hasPrefix("/v1/") {
            router.post(RouterPath(operation.rawValue)) { request, context in
                try await infer(operation, request, allowed: context.principal?.allowedModels)
            }
        }
    }

    struct ModelObject: Encodable {
        let id: String
        let object = "model"
        let created: Int
        let ownedBy: String

        enum CodingKeys: String, CodingKey {
            case id, object, created
            case ownedBy = "owned_by"
        }

        init(_ entry: ModelEntry) {
            id = entry.id
            created = Int(entry.modified.timeIntervalSince1970)
            ownedBy = entry.owner
        }

        init(_ alias: Alias) {
            id = alias.name
            created = Int(alias.createdAt.timeIntervalSince1970)
            ownedBy = "bodhi"
        }

        init(_ router: ModelRouter) {
            id = router.name
            created = Int(router.createdAt.timeIntervalSince1970)
            ownedBy = "bodhi"
        }

        init(_ remote: RemoteModel) {
            id = remote.name
            created = Int(remote.created.timeIntervalSince1970)
            ownedBy = remote.ownedBy
        }

        init(_ served: ServedModel) {
            if let alias = served.alias {
                self.init(alias)
            } else {
                switch served.source {
                case .file(let entry): self.init(entry)
                case .remote(let model): self.init(model)
                case .router(let router): self.init(router)
                }
            }
        }
    }

    struct ModelList: Encodable {
        let object = "list"
        let data: [ModelObject]
    }

    /// Every model and alias, or those of a token's allow-list.
    func listModels(allowed: [String]?) async throws -> Response {
        try .json(ModelList(data: await Self.visibleModels(services, allowed: allowed)))
    }

    /// Every model, remote model, alias and router a caller may use (nil: no allow-list).
    static func visibleModels(_ services: BodhiServices, allowed: [String]?) async -> [ModelObject] {
        let models = await services.catalog.list().map(ModelObject.init)
        let aliases = await services.aliases.list().map(ModelObject.init)
        let remote = services.aliases.remoteModels().map(ModelObject.init)
        let routers = await services.aliases.routers().map(ModelObject.init)
        let allowedNames = allowed.map { Set($0.map { $0.lowercased() }) }
        return (models + remote + aliases + routers).filter { allowedNames?.contains($0.id.lowercased()) ?? true }
    }

    func retrieveModel(_ request: Request, allowed: [String]?) async throws -> Response {
        let name = request.decodedPath(after: "/v1/models/")
        return try .json(ModelObject(await services.inference.resolve(name, allowedBy: allowed)))
    }

    func infer(_ operation: InferenceOperation, _ request: Request, allowed: [String]?) async throws -> Response {
        let body = try await request.body.collect(upTo: services.maxRequestBodyBytes)
        return Self.response(for: try await services.inference.handle(operation, body: body, allowedModels: allowed))
    }

    /// An engine's answer as the client gets it: a whole body, or Server-Sent Events as they come.
    /// The head's headers of a stream of events.
    static let eventStreamHeaders: HTTPFields = [.contentType: "text/event-stream", .cacheControl: "no-cache"]

    static func response(for result: InferenceResult) -> Response {
        switch result {
        case .complete(let status, let contentType, let bytes):
            return Response(status: .init(code: status), headers: [.contentType: contentType], body: .init(byteBuffer: bytes))
        case .events(let stream):
            return Response(status: .ok, headers: eventStreamHeaders, body: ResponseBody { writer in
                await stream.forward { event in try await writer.write(event) }
                try await writer.finish(nil)
            })
        }
    }
}
