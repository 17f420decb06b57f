import BodhiCore
import BodhiHub
import BodhiModels
import Foundation
import Hummingbird

/// Pulls from Hugging Face under `/bodhi/v1/models/pull`: start (optionally streaming
/// progress), list, status, progress events, cancel and retry.
struct PullRoutes {
    let services: BodhiServices

    struct StartRequest: Decodable {
        let model: String
        let revision: String?
        let stream: Bool?
    }

    func register(on router: Router<BodhiRequestContext>) {
        let base = "/bodhi/v1/models/pull"
        router.post(RouterPath(base)) { request, _ in
            let start = try await request.decodeJSON(StartRequest.self, limit: services.maxRequestBodyBytes)
            let record = try await services.pulls.start(reference: start.model, revision: start.revision)
            if start.stream == true {
                return Response.eventStream(try await services.pulls.events(id: record.id))
            }
            return try Response.json(record, status: .accepted)
        }
        router.get(RouterPath(base)) { _, _ in
            try Response.json(DataList(data: await services.pulls.list()))
        }
        router.get(RouterPath(base + "/:id")) { _, context in
            try Response.json(await services.pulls.pull(id: context.parameters.decoded("id")))
        }
        router.get(RouterPath(base + "/:id/events")) { _, context in
            Response.eventStream(try await services.pulls.events(id: context.parameters.decoded("id")))
        }
        router.post(RouterPath(base + "/:id/cancel")) { _, context in
            try Response.json(await services.pulls.cancel(id: context.parameters.decoded("id")))
        }
        router.post(RouterPath(base + "/:id/retry")) { _, context in
            try Response.json(await services.pulls.retry(id: context.parameters.decoded("id")), status: .accepted)
        }
    }
}
