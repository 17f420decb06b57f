import BodhiCore
import BodhiModels
import Foundation
import Hummingbird

/// User aliases under `/bodhi/v1/aliases`: list, create, show, replace, copy, delete.
struct AliasRoutes {
    let services: BodhiServices

    /// The body of a create or replace; on replace the name comes from the path.
    struct AliasBody: Decodable {
        let name: String?
        let model: String
        let defaults: RequestDefaults?
        let engine: EngineOverrides?

        func alias(named name: String) -> Alias {
            Alias(name: name, model: model, defaults: defaults ?? .init(), engine: engine ?? .init())
        }
    }

    struct CopyBody: Decodable {
        let name: String
    }

    func register(on router: Router<BodhiRequestContext>) {
        let base = "/bodhi/v1/aliases"
        let limit = services.maxRequestBodyBytes
        router.get(RouterPath(base)) { _, _ in
            try Response.json(DataList(data: await services.aliases.list()))
        }
        router.post(RouterPath(base)) { request, _ in
            let body = try await request.decodeJSON(AliasBody.self, limit: limit)
            guard let name = body.name else {
                throw BodhiError.invalidRequest("The request body lacks 'name'.", param: "name")
            }
            return try Response.json(await services.aliases.create(body.alias(named: name)), status: .created)
        }
        router.get(RouterPath(base + "/:name")) { _, context in
            try Response.json(await services.aliases.alias(named: context.parameters.decoded("name")))
        }
        router.put(RouterPath(base + "/:name")) { request, context in
            let name = try context.parameters.decoded("name")
            let body = try await request.decodeJSON(AliasBody.self, limit: limit)
            if let bodyName = body.name, bodyName != name {
                throw BodhiError.invalidRequest("The name in the body ('\(bodyName)') differs from the path ('\(name)'); copy the alias to rename it.", param: "name")
            }
            let alias = try await services.aliases.update(body.alias(named: name))
            await services.models.aliasChanged(name)
            return try Response.json(alias)
        }
        router.post(RouterPath(base + "/:name/copy")) { request, context in
            let body = try await request.decodeJSON(CopyBody.self, limit: limit)
            return try Response.json(await services.aliases.copy(context.parameters.decoded("name"), to: body.name), status: .created)
        }
        router.delete(RouterPath(base + "/:name")) { _, context in
            let name = try context.parameters.decoded("name")
            try await services.aliases.delete(name)
            await services.models.aliasChanged(name)
            return try Response.json(DeletedName(name: name))
        }
    }
}
