import BodhiEngine
import NIOCore
import Testing

@Suite(.timeLimit(.minutes(2))) struct SSEFramerTests {
    @Test func eventsSplitAcrossChunksComeOutWhole() {
        var framer = SSEFramer()
        #expect(framer.append(ByteBuffer(string: "data: {\"a\":")).isEmpty)
        let first = framer.append(ByteBuffer(string: "1}\n\ndata: [DO"))
        #expect(first.map { String(buffer: $0) } == ["data: {\"a\":1}\n\n"])
        let second = framer.append(ByteBuffer(string: "NE]\n\n"))
        #expect(second.map { String(buffer: $0) } == ["data: [DONE]\n\n"])
        #expect(framer.pendingByteCount == 0)
    }

    @Test func manyEventsInOneChunkAndEveryLineEnding() {
        var framer = SSEFramer()
        let events = framer.append(ByteBuffer(string: "data: 1\n\ndata: 2\r\n\r\ndata: 3\r\rdata: 4"))
        #expect(events.map { String(buffer: $0) } == ["data: 1\n\n", "data: 2\r\n\r\n", "data: 3\r\r"])
        #expect(framer.pendingByteCount == "data: 4".utf8.count)
    }

    @Test func dataPayloadsAreExtracted() {
        #expect(SSEFramer.data(of: ByteBuffer(string: "data: [DONE]\n\n")) == "[DONE]")
        #expect(SSEFramer.data(of: ByteBuffer(string: "event: x\ndata:a\ndata: b\n\n")) == "a\nb")
        #expect(SSEFramer.data(of: ByteBuffer(string: ": comment\n\n")) == nil)
    }

    @Test func eventsAreClassifiedFromTheirBytes() {
        #expect(SSEFramer.kind(of: ByteBuffer(string: "data: [DONE]\n\n")) == .done)
        #expect(SSEFramer.kind(of: ByteBuffer(string: "data:[DONE]\r\n\r\n")) == .done)
        #expect(SSEFramer.kind(of: ByteBuffer(string: "event: x\ndata: {\"error\":{\"message\":\"boom\"}}\n\n")) == .error)
        #expect(SSEFramer.kind(of: ByteBuffer(string: "data: {\"choices\":[]}\n\n")) == .other)
        #expect(SSEFramer.kind(of: ByteBuffer(string: ": keep-alive\n\n")) == .other)
    }
}
