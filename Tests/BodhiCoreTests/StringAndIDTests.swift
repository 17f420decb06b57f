import BodhiCore
import Foundation
import Testing

@Test func randomUUIDsAreVersion4AndDistinct() {
    let ids = (0..<1000).map { _ in UUID.random() }
    #expect(Set(ids).count == ids.count)
    for id in ids {
        let text = id.uuidString
        // xxxxxxxx-xxxx-4xxx-[89AB]xxx-xxxxxxxxxxxx
        #expect(Array(text)[14] == "4")
        #expect("89AB".contains(Array(text)[19]))
        #expect(UUID(uuidString: text) == id)
        // Ids are written in lowercase: the same digits, dashes in the same places.
        #expect(id.lowercaseString == text.lowercased())
        #expect(id.lowercaseHex == text.lowercased().replacingOccurrences(of: "-", with: ""))
    }
}

@Test func trimmingWhitespaceKeepsInnerSpaces() {
    #expect("  bodhi_abc \t".trimmingWhitespace() == "bodhi_abc")
    #expect(" a b ".trimmingWhitespace() == "a b")
    #expect("   ".trimmingWhitespace() == "")
    #expect("".trimmingWhitespace() == "")
    #expect("x"[...].trimmingWhitespace() == "x")
}

@Test func bytesInLowercaseHexTakeTwoDigitsEach() {
    #expect([0x00, 0x0F, 0xAB, 0xFF].lowercaseHex == "000fabff")
    #expect([UInt8]().lowercaseHex == "")
}
