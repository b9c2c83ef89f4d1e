import CustodianCore
import Foundation
import Testing

@testable import CustodianAgent

@Suite("The audit reader's byte-level helpers")
struct RecordShapeTests {
    /// Random text rich in what the fast paths must stop at: quotes, backslashes, controls, multi-byte UTF-8,
    /// in runs shorter and longer than eight bytes.
    static func randomText(using generator: inout some RandomNumberGenerator) -> String {
        let pieces = ["\"", "\\", "\n", "\r", "\t", "\u{01}", "\u{1F}", "é", "€", "😀", "a", "0", "{", ":", ","]
        var text = ""
        for _ in 0..<Int.random(in: 0...40, using: &generator) {
            if Bool.random(using: &generator) {
                text += String(repeating: "x", count: Int.random(in: 1...19, using: &generator))
            } else {
                text += pieces[Int.random(in: 0..<pieces.count, using: &generator)]
            }
        }
        return text
    }

    @Test("unescape reads back what the record writer escaped, as Foundation's JSON reader does")
    func unescapeAgainstFoundation() throws {
        var generator = SystemRandomNumberGenerator()
        var scratch: [UInt8] = []
        for _ in 0..<3000 {
            let text = Self.randomText(using: &generator)
            var line = Array(#"{"x":1,"req":"#.utf8)
            JSONWriter.appendString(text, to: &line)
            let closingQuote = line.count - 1
            line += Array(#","decision":"allow"}"#.utf8)
            let decoded = try JSONDecoder().decode(
                [String: String].self, from: Data(#"{"v":"#.utf8 + line[13...closingQuote] + Array("}".utf8)))
            let slice = line[...]
            #expect(RecordShape.unescape(slice, from: 14, into: &scratch) == closingQuote, "\(text.debugDescription)")
            #expect(scratch == Array(text.utf8), "\(text.debugDescription)")
            #expect(decoded["v"].map { Array($0.utf8) } == scratch)
        }
        // Unterminated, a bad escape, and a \u beyond what the writer makes: refused.
        for bad in [#""abc"#, #""a\qb""#, #""a\u0100""#, #""a\"#] {
            #expect(RecordShape.unescape(Array(bad.utf8)[...], from: 1, into: &scratch) == nil, "\(bad)")
        }
    }

    @Test("hexEquals accepts exactly the lower-case hex of the bytes")
    func hexEquals() {
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<2000 {
            let bytes = (0..<32).map { _ in UInt8.random(in: 0...255, using: &generator) }
            let hex = Array(Hex.encode(bytes).utf8)
            #expect(RecordShape.hexEquals(hex[...], bytes))
            var changed = hex
            let position = Int.random(in: 0..<64, using: &generator)
            changed[position] =
                Array("0123456789abcdefABCDEFg ".utf8).filter { $0 != hex[position] }.randomElement(
                    using: &generator) ?? 0
            #expect(!RecordShape.hexEquals(changed[...], bytes), "\(String(decoding: changed, as: UTF8.self))")
        }
    }

    @Test("offset(afterSeq:) finds the line after each record, as a walk over the lines does")
    func offsetAfterSeq() throws {
        var generator = SystemRandomNumberGenerator()
        for round in 0..<16 {
            // Lines of very different lengths, so that the binary search lands inside lines and on their ends.
            var bytes: [UInt8] = []
            var ends: [Int] = []
            let count = round == 0 ? 1 : Int.random(in: 2...1500, using: &generator)
            for seq in 1...count {
                let padding = String(
                    repeating: "x", count: Int.random(in: 0...(round % 2 == 0 ? 90 : 3000), using: &generator))
                bytes += Array("{\"seq\":\(seq),\"event\":\"sign\",\"pad\":\"\(padding)\"}\n".utf8)
                ends.append(bytes.count)
            }
            let torn = round % 3 == 0
            if torn { bytes += Array("{\"seq\":\(count + 1),\"event\":\"si".utf8) }
            let path = NSTemporaryDirectory() + "custodian-offset-\(UUID().uuidString).log"
            #expect(FileManager.default.createFile(atPath: path, contents: Data(bytes)))
            defer { try? FileManager.default.removeItem(atPath: path) }
            for source in [LineSource(bytes: bytes), LineSource(path: path)] {
                let probes = Set(
                    [1, count, count + 1, 0] + (0..<25).map { _ in Int.random(in: 1...count, using: &generator) })
                for seq in probes {
                    let expected: Int? = seq >= 1 && seq <= count ? ends[seq - 1] : nil
                    #expect(source.offset(afterSeq: UInt64(seq)) == expected, "round \(round), seq \(seq) of \(count)")
                }
            }
        }
    }
}
