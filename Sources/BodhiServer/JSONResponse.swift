import BodhiCompatibility
import BodhiCore
import Foundation
import Hummingbird

/// A list as Bodhi's APIs answer one: `{"data": [...]}`.
struct DataList<Item: Encodable>: Encodable {
    let data: [Item]
}

/// What deleting a named thing (an alias, a router) answers.
struct DeletedName: Encodable {
    let name: String
    let deleted = true
}

extension Response {
    /// A JSON response with `value` encoded as Bodhi's APIs write it.
    static func json<Value: Encodable>(_ value: Value, status: HTTPResponse.Status = .ok) throws -> Response {
        let data = try JSONEncoder.bodhiAPI().encode(value)
        return Response(
            status: status, headers: [.contentType: "application/json"],
            body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    /// A JSON body already written (an answer translated from another API's).
    static func json(bytes: ByteBuffer) -> Response {
        Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: bytes))
    }

    /// A translated answer for an API that streams Server-Sent Events: one JSON object, or its
    /// events as they come.
    static func translated(_ reply: TranslatedReply) -> Response {
        switch reply {
        case .json(let bytes): return json(bytes: bytes)
        case .stream(let events):
            return Response(status: .ok, headers: OpenAIRoutes.eventStreamHeaders, body: ResponseBody { writer in
                await events.forward { event in try await writer.write(event) }
                try await writer.finish(nil)
            })
        }
    }

    /// Server-sent events, one `data:` JSON line per element, until the sequence ends.
    static func eventStream<Events: AsyncSequence & Sendable>(_ events: Events) -> Response
    where Events.Element: Encodable & Sendable {
        let headers: HTTPFields = [.contentType: "text/event-stream", .cacheControl: "no-cache"]
        return Response(status: .ok, headers: headers, body: ResponseBody { writer in
            let encoder = JSONEncoder.bodhiAPI()
            for try await event in events {
                var buffer = ByteBuffer(string: "data: ")
                buffer.writeBytes(try encoder.encode(event))
                buffer.writeString("\n\n")
                try await writer.write(buffer)
            }
            try await writer.finish(nil)
        })
    }
}
