import BodhiCore
import BodhiCompatibility
import Hummingbird

/// Ollama's API under `/api`, and its root probe.
struct OllamaRoutes {
    let services: BodhiServices

    func register(on router: Router<BodhiRequestContext>) {
        let ollama = services.ollama
        let limit = services.maxRequestBodyBytes
        router.get("/") { _, _ in
            Response(status: .ok, headers: [.contentType: "text/plain; charset=utf-8"], body: .init(byteBuffer: ByteBuffer(string: "Ollama is running")))
        }
        router.head("/") { _, _ in Response(status: .ok, headers: [.contentType: "text/plain; charset=utf-8"]) }
        router.get("/api/version") { _, _ in
            try Response.json(["version": OllamaService.version])
        }
        router.get("/api/tags") { _, context in
            Self.json(await ollama.tags(allowed: context.principal?.allowedModels))
        }
        router.get("/api/ps") { _, _ in Self.json(await ollama.processes()) }
        router.post("/api/show") { request, context in
            Self.json(try await ollama.show(try await request.body.collect(upTo: limit), allowed: context.principal?.allowedModels))
        }
        router.post("/api/chat") { request, context in
            Self.render(try await ollama.chat(try await request.body.collect(upTo: limit), allowed: context.principal?.allowedModels))
        }
        router.post("/api/generate") { request, context in
            Self.render(try await ollama.generate(try await request.body.collect(upTo: limit), allowed: context.principal?.allowedModels))
        }
        router.post("/api/embed") { request, context in
            Self.json(try await ollama.embed(try await request.body.collect(upTo: limit), allowed: context.principal?.allowedModels))
        }
        router.post("/api/embeddings") { request, context in
            Self.json(try await ollama.legacyEmbeddings(try await request.body.collect(upTo: limit), allowed: context.principal?.allowedModels))
        }
        router.post("/api/pull") { request, _ in
            Self.render(try await ollama.pull(try await request.body.collect(upTo: limit)))
        }
        router.delete("/api/delete") { request, _ in
            try await ollama.delete(try await request.body.collect(upTo: limit))
            return Response(status: .ok)
        }
        router.post("/api/create") { request, _ in
            Self.render(try await ollama.create(try await request.body.collect(upTo: limit)))
        }
        router.head("/api/blobs/:digest") { _, context in
            Response(status: try ollama.hasBlob(context.parameters.decoded("digest")) ? .ok : .notFound)
        }
        router.post("/api/blobs/:digest") { request, context in
            try await ollama.storeBlob(context.parameters.decoded("digest"), body: request.body)
            return Response(status: .created)
        }
        router.post("/api/copy") { request, _ in
            try await ollama.copy(try await request.body.collect(upTo: limit))
            return Response(status: .ok)
        }
    }

    static func json(_ body: ByteBuffer) -> Response {
        Response(status: .ok, headers: [.contentType: "application/json; charset=utf-8"], body: .init(byteBuffer: body))
    }

    /// One JSON object, or NDJSON lines written as they come.
    static func render(_ reply: TranslatedReply) -> Response {
        switch reply {
        case .json(let body):
            return json(body)
        case .stream(let lines):
            return Response(status: .ok, headers: [.contentType: "application/x-ndjson"], body: ResponseBody { writer in
                await lines.forward { line in try await writer.write(line) }
                try await writer.finish(nil)
            })
        }
    }
}
