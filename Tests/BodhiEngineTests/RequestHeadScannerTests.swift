@testable import BodhiEngine
import Foundation
import BodhiTestSupport
import Testing

/// The scanner must read `model` and `stream` as a JSON parser would, and refuse what one refuses.
struct RequestHeadScannerTests {
    private func scan(_ text: String) throws(RequestHeadScanner.Failure) -> (model: String?, stream: Bool?) {
        try scan(Array(text.utf8))
    }

    private func scan(_ bytes: [UInt8]) throws(RequestHeadScanner.Failure) -> (model: String?, stream: Bool?) {
        let head = try bytes.withUnsafeBytes { raw in Result { () throws(RequestHeadScanner.Failure) in try RequestHeadScanner.scan(raw) } }.get()
        return (head.model, head.stream)
    }

    private func failure(_ text: String) -> RequestHeadScanner.Failure? {
        do {
            _ = try scan(text)
            return nil
        } catch {
            return error
        }
    }

    @Test func readsModelAndStreamWhereverTheyAre() throws {
        let body = #"{"messages":[{"role":"user","content":"hi \"model\": x"}],"stream":true,"model":"owner/repo:Q4_1","max_tokens":1.5e3}"#
        let head = try scan(body)
        #expect(head.model == "owner/repo:Q4_1")
        #expect(head.stream == true)
        // Members inside nested objects are not the request's own.
        #expect(try scan(#"{"options":{"model":"inner","stream":true}}"#) == (nil, nil))
        #expect(try scan(" \n{ \"stream\" : false , \"model\" : null }\t") == (nil, false))
        #expect(try scan("{}") == (nil, nil))
        // The last of repeated members counts.
        #expect(try scan(#"{"model":"a","model":"b"}"#).model == "b")
    }

    @Test func undoesEscapesInTheModelAndInMemberNames() throws {
        #expect(try scan(#"{"model":"owner\/repo:Q4_1"}"#).model == "owner/repo:Q4_1")
        #expect(try scan(#"{"mod\u0065l":"caf\u00e9 \ud83d\ude00 \"q\" \\ \t"}"#).model == "café 😀 \"q\" \\ \t")
        #expect(try scan(#"{"model":"日本語"}"#).model == "日本語")
    }

    @Test func namesTheMemberWithTheWrongType() {
        #expect(failure(#"{"model":5}"#) == .wrongType("model"))
        #expect(failure(#"{"model":["a"]}"#) == .wrongType("model"))
        #expect(failure(#"{"model":"m","stream":"yes"}"#) == .wrongType("stream"))
        #expect(failure(#"{"stream":1}"#) == .wrongType("stream"))
    }

    @Test func refusesJSONThatIsNotAnObject() {
        for text in ["[1,2]", "\"text\"", "3", "null", "true", " [ ] "] {
            #expect(failure(text) == .notAnObject, "\(text)")
        }
    }

    @Test func refusesWhatIsNotJSON() {
        let malformed = [
            "", " ", "{", "}", "{,}", #"{"model":"m",}"#, #"{"model" "m"}"#, #"{model:"m"}"#, "{'model':'m'}",
            #"{"model":"m"} x"#, #"{"a":1}{"b":2}"#, #"{"a":[1,]}"#, #"{"a":[1 2]}"#, #"{"a":01}"#, #"{"a":1.}"#,
            #"{"a":.5}"#, #"{"a":-}"#, #"{"a":1e}"#, #"{"a":+1}"#, #"{"a":NaN}"#, #"{"a":tru}"#, #"{"a":nul}"#,
            #"{"a":"\x"}"#, #"{"a":"\u12"}"#, "{\"a\":\"line\nbreak\"}", #"{"a":"unterminated}"#, "{/* no */}",
            #"{"model":"\ud800"}"#, #"{"model":"\udc00x"}"#, #"{"model":"\ud800\u0041"}"#, "[1,2",
        ]
        for text in malformed {
            #expect(failure(text) == .malformed, "\(text)")
        }
        // Bytes that are not UTF-8.
        #expect(throws: RequestHeadScanner.Failure.malformed) { try scan(Array(#"{"model":""#.utf8) + [0xFF, 0xFE] + Array(#""}"#.utf8)) }
    }

    @Test func refusesNestingDeeperThanJSONDecoderDoes() throws {
        let depth = RequestHeadScanner.maxDepth
        // The request object is the first level.
        let deepest = "{\"a\":" + String(repeating: "[", count: depth - 1) + String(repeating: "]", count: depth - 1) + "}"
        #expect(try scan(deepest) == (nil, nil))
        let tooDeep = "{\"a\":" + String(repeating: "[", count: depth) + String(repeating: "]", count: depth) + "}"
        #expect((try? JSONSerialization.jsonObject(with: Data(deepest.utf8))) != nil)
        #expect((try? JSONSerialization.jsonObject(with: Data(tooDeep.utf8))) == nil)
        #expect(failure(tooDeep) == .malformed)
    }

    /// Random edits of a real request body, checked against Foundation: the scanner accepts a
    /// body exactly when `JSONSerialization` (which, unlike `JSONDecoder`, reads every value)
    /// parses it as an object, reads the same fields, and names a field of the wrong type as
    /// `JSONDecoder` does. One difference is wanted: Foundation lets trailing commas through
    /// (`[1,]`), which RFC 8259 and llama-server refuse.
    @Test func agreesWithFoundationOnEditedBodies() throws {
        struct Head: Decodable {
            let model: String?
            let stream: Bool?
        }
        let original = Array(#"{"model":"owner/repo:Q4_1","messages":[{"role":"user","content":"Hi, \"you\"!"}],"stream":false,"temperature":0.5,"stop":null,"n":1e0}"#.utf8)
        let alphabet = Array(#"{}[]",:0123456789.-+eE tfnrl\ am"#.utf8)
        let trailingComma = try Regex(#",\s*[\]}]"#)
        var generator = SplitMix64(seed: 2026)
        for round in 0..<4000 {
            var bytes = original
            for _ in 0...(round % 4) {
                let position = Int(generator.next() % UInt64(bytes.count))
                let byte = alphabet[Int(generator.next() % UInt64(alphabet.count))]
                switch generator.next() % 3 {
                case 0: bytes[position] = byte
                case 1: bytes.insert(byte, at: position)
                default: bytes.remove(at: position)
                }
            }
            let text = String(decoding: bytes, as: UTF8.self)
            let parsed = try? JSONSerialization.jsonObject(with: Data(bytes), options: [.fragmentsAllowed])
            switch Result(catching: { () throws(RequestHeadScanner.Failure) in try scan(bytes) }) {
            case .success(let head):
                let object = try #require(parsed as? [String: Any], "accepted what Foundation refuses: \(text)")
                let decoded = try JSONDecoder().decode(Head.self, from: Data(bytes))
                #expect(head.model == decoded.model && head.stream == decoded.stream, "\(text)")
                #expect(head.model == object["model"] as? String, "\(text)")
            case .failure(.wrongType(let field)):
                #expect(parsed is [String: Any], "\(text)")
                #expect(throws: DecodingError.self, "\(text)") { try JSONDecoder().decode(Head.self, from: Data(bytes)) }
                do {
                    _ = try JSONDecoder().decode(Head.self, from: Data(bytes))
                } catch DecodingError.typeMismatch(_, let context) {
                    #expect(context.codingPath.map(\.stringValue) == [field], "\(text)")
                }
            case .failure(.notAnObject):
                #expect(parsed != nil && !(parsed is [String: Any]), "\(text)")
            case .failure(.invalid):
                // Refused for a field's value (an edited temperature, say): JSON all the same.
                #expect(parsed is [String: Any], "\(text)")
            case .failure(.malformed):
                #expect(parsed == nil || text.contains(trailingComma), "refused what Foundation accepts: \(text)")
            }
        }
    }

    private func invalid(_ text: String) -> String? {
        if case .invalid(_, let param) = failure(text) { return param }
        return nil
    }

    @Test func refusesFieldsTheEngineWouldRefuseLateByName() {
        let good = #"{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"hi"},{"type":"image_url","image_url":{"url":"x"}}]},{"role":"assistant","content":null,"tool_calls":[]},{"role":"tool","content":"r"}],"temperature":2,"top_p":0,"n":1,"max_tokens":0,"stop":["a","b","c","d"],"tools":[{"type":"function"}],"tool_choice":"auto"}"#
        #expect(failure(good) == nil)
        for (body, param) in [
            (#"{"messages":[]}"#, "messages"),
            (#"{"messages":{}}"#, "messages"),
            (#"{"messages":[{"content":"x"}]}"#, "messages[0].role"),
            (#"{"messages":[{"role":"user"},{"role":5}]}"#, "messages[1].role"),
            (#"{"messages":[{"role":"user","content":[{"type":"text","text":null}]}]}"#, "messages[0].content[0].text"),
            (#"{"messages":[{"role":"user","content":[7]}]}"#, "messages[0].content[0]"),
            (#"{"messages":[{"role":"user","content":true}]}"#, "messages[0].content"),
            (#"{"temperature":-0.1}"#, "temperature"),
            (#"{"temperature":"1"}"#, "temperature"),
            (#"{"top_p":1.01}"#, "top_p"),
            (#"{"n":2}"#, "n"),
            (#"{"max_tokens":-1}"#, "max_tokens"),
            (#"{"max_completion_tokens":1.5}"#, "max_completion_tokens"),
            (#"{"stop":["a","b","c","d","e"]}"#, "stop"),
            (#"{"stop":[1]}"#, "stop"),
            (#"{"tools":"x"}"#, "tools"),
            (#"{"tools":[1]}"#, "tools[0]"),
        ] {
            #expect(invalid(body) == param, "\(body)")
        }
        // Nulls are absent fields; nested members of the same names are not the request's.
        #expect(failure(#"{"temperature":null,"messages":null,"options":{"temperature":9}}"#) == nil)
    }

    @Test func anOutputCapRefusesMoreAndSaysWhetherALimitWasNamed() throws {
        func scan(_ text: String, cap: Int?) throws(RequestHeadScanner.Failure) -> RequestHead {
            try Array(text.utf8).withUnsafeBytes { raw in
                Result { () throws(RequestHeadScanner.Failure) in try RequestHeadScanner.scan(raw, maxOutputTokens: cap) }
            }.get()
        }
        #expect(try scan(#"{"max_tokens":5}"#, cap: 5).limitsOutput)
        #expect(try !scan(#"{"max_tokens":null,"messages":[{"role":"user"}]}"#, cap: 5).limitsOutput)
        #expect(try scan(#"{"n_predict":-1}"#, cap: nil).limitsOutput)
        do {
            _ = try scan(#"{"max_completion_tokens":6}"#, cap: 5)
            Issue.record("a limit above the cap was accepted")
        } catch {
            if case .invalid(let message, let param) = error {
                #expect(param == "max_completion_tokens" && message.contains("BODHI_MAX_OUTPUT_TOKENS"))
            } else {
                Issue.record("\(error)")
            }
        }
    }
}
