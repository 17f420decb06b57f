import BodhiCore
import Hummingbird

/// Settings for admins under `/bodhi/v1/settings`: every setting with its value, default and
/// source; the editable ones changed or reset.
struct SettingsRoutes {
    let services: BodhiServices

    struct NewValue: Decodable {
        let value: String
    }

    func register(on router: Router<BodhiRequestContext>) {
        router.get("/bodhi/v1/settings") { _, _ in
            try Response.json(DataList(data: await services.settings.list()))
        }
        router.put("/bodhi/v1/settings/:key") { request, context in
            let body = try await request.decodeJSON(NewValue.self, limit: 64 * 1024)
            return try Response.json(try await services.settings.set(context.parameters.decoded("key"), value: body.value))
        }
        router.delete("/bodhi/v1/settings/:key") { _, context in
            try Response.json(try await services.settings.reset(context.parameters.decoded("key")))
        }
    }
}
