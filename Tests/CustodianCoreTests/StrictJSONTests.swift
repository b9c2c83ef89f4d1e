import CustodianCore
import Testing

@Suite("The strict JSON reader")
struct StrictJSONTests {
    func failure(_ text: String) -> StrictJSON.Failure? {
        if case .failure(let failure) = StrictJSON.parse(Array(text.utf8)) { return failure }
        return nil
    }

    @Test("a repeated key is found at any depth, also when one copy is escaped")
    func duplicates() {
        #expect(failure(#"{"a":1,"a":2}"#) == .duplicateKey("a"))
        #expect(failure(#"[{"x":[{"b":1,"\u0062":2}]}]"#) == .duplicateKey("b"))
        // Keys that differ in bytes are not duplicates, even when Unicode calls them equivalent.
        #expect(failure("{\"K\":1,\"\u{212A}\":2}") == nil)
        #expect(failure(#"{"allocations":1,"allocation\u017f":2}"#) == nil)
    }

    @Test("syntax errors win over duplicate keys")
    func malformedFirst() {
        guard case .malformed = failure(#"{"a":1,"a":2} x"#) else {
            Issue.record("expected malformed")
            return
        }
    }

    @Test("refused: lone surrogates, invalid UTF-8, raw controls, bad numbers, deep nesting, trailing bytes")
    func refusals() {
        let texts = [
            #""\ud800""#, #""\udc00x""#, #""\ud800\u0041""#, "\"\u{01}\"", "01", "1.", ".5", "-", "+1", "1e", "[1,]",
            "{\"a\":1,}", "nul", "[1] [2]", "\u{FEFF}[1]", String(repeating: "[", count: 10_000),
            String(repeating: "[", count: 40) + String(repeating: "]", count: 40),
        ]
        for text in texts {
            guard case .malformed = failure(text) else {
                Issue.record("accepted \(text.prefix(40))")
                continue
            }
        }
        for bytes: [UInt8] in [
            [0x22, 0xC3, 0x28, 0x22], [0x22, 0xC0, 0xAF, 0x22], [0x22, 0xED, 0xA0, 0x80, 0x22], [0x22, 0x00, 0x22],
        ] {
            guard case .failure(.malformed) = StrictJSON.parse(bytes) else {
                Issue.record("accepted \(bytes)")
                continue
            }
        }
    }

    @Test("spans are the exact bytes of each value, white space excluded")
    func spans() throws {
        let text = Array(#"  { "req" : [1, "a" ] , "sig":[] }  "#.utf8)
        let root = try StrictJSON.parse(text).get()
        let req = try #require(root.value.members?.member("req"))
        #expect(String(decoding: text[req.span], as: UTF8.self) == #"[1, "a" ]"#)
    }

    @Test("escapes decode to the scalars they name; a surrogate pair to one scalar")
    func escapes() throws {
        let root = try StrictJSON.parse(Array(#""\u00e9\ud83c\udfc6\n\/""#.utf8)).get()
        #expect(root.value.string == "é🏆\n/")
    }
}
