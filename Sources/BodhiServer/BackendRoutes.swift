import BodhiBackends
import BodhiCore
import BodhiModels
import Foundation
import Hummingbird

/// Remote servers and cloud APIs under `/bodhi/v1/backends`: list, add, show, test, remove.
struct BackendRoutes {
    let services: BodhiServices

    /// The body of an add. The key is write-only: no answer ever carries it.
    struct AddBody: Decodable {
        let name: String
        let url: String
        let format: BackendFormat?
        let prefix: String?
        let apiKey: String?

        enum CodingKeys: String, CodingKey {
            case name, url, format, prefix
            case apiKey = "api_key"
        }
    }

    func register(on router: Router<BodhiRequestContext>) {
        let base = "/bodhi/v1/backends"
        let backends = services.backends
        router.get(RouterPath(base)) { _, _ in
            // What the database says now: `bodhi backends add` writes there, then asks here.
            try await backends.load(waitForModels: true)
            return try Response.json(DataList(data: backends.list()))
        }
        router.post(RouterPath(base)) { request, _ in
            let body = try await request.decodeJSON(AddBody.self, limit: 64 * 1024)
            let config = BackendConfig(name: body.name, url: body.url, format: body.format ?? .openai, prefix: body.prefix)
            return try Response.json(await backends.add(config, apiKey: body.apiKey), status: .created)
        }
        router.get(RouterPath(base + "/:name")) { _, context in
            try Response.json(backends.status(of: context.parameters.decoded("name")))
        }
        router.post(RouterPath(base + "/:name/test")) { _, context in
            try Response.json(await backends.test(context.parameters.decoded("name")))
        }
        router.delete(RouterPath(base + "/:name")) { _, context in
            try Response.json(await backends.remove(context.parameters.decoded("name")))
        }
    }
}
