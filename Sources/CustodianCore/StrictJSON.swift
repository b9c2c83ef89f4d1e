/// A JSON reader that refuses everything a lenient reader would resolve silently.
///
/// It keeps the byte span of every value, so a caller can sign exactly the bytes it checked; it keeps exact key
/// spellings (compared by their UTF-8 bytes, never by Unicode equivalence), reports a repeated key at any depth,
/// keeps number tokens as text, and refuses invalid UTF-8, lone surrogates, raw control characters, trailing bytes
/// and nesting deeper than ``StrictJSON/maxDepth``.
public enum StrictJSON {
    /// Deeper nesting is refused: no v0 request needs more than 5 levels, and recursion must stay bounded.
    public static let maxDepth = 32

    /// A parsed value and the half-open byte range it occupies in the source.
    public struct Node: Sendable {
        public var value: Value
        public var span: Range<Int>
    }

    /// One member of an object, in source order.
    public struct Member: Sendable {
        public var key: String
        public var node: Node
    }

    /// The JSON value kinds. Numbers keep their token text.
    public indirect enum Value: Sendable {
        case object([Member])
        case array([Node])
        case string(String)
        case number(String)
        case bool(Bool)
        case null
    }

    /// Why a text was refused.
    public enum Failure: Error, Equatable, Sendable {
        /// Not JSON, not UTF-8, trailing bytes, or nested too deeply; the text says where.
        case malformed(String)
        /// Syntactically valid, but some object repeats a key (the key is given).
        case duplicateKey(String)
    }

    /// Parses `bytes` as exactly one JSON value, optionally surrounded by whitespace.
    ///
    /// Syntax errors win over duplicate keys, so that a text that is both is reported as malformed.
    public static func parse(_ bytes: [UInt8]) -> Result<Node, Failure> {
        var parser = Parser(bytes: bytes)
        do {
            parser.skipWhitespace()
            let node = try parser.parseValue(depth: 0)
            parser.skipWhitespace()
            guard parser.index == bytes.count else {
                throw Failure.malformed("unexpected bytes after the JSON value at offset \(parser.index)")
            }
            if let key = parser.firstDuplicate {
                return .failure(.duplicateKey(key))
            }
            return .success(node)
        } catch let failure as Failure {
            return .failure(failure)
        } catch {
            return .failure(.malformed("\(error)"))
        }
    }
}

extension StrictJSON.Value {
    /// The members of an object, or nil.
    public var members: [StrictJSON.Member]? {
        if case .object(let members) = self { return members }
        return nil
    }

    /// The elements of an array, or nil.
    public var elements: [StrictJSON.Node]? {
        if case .array(let elements) = self { return elements }
        return nil
    }

    /// The decoded text of a string, or nil.
    public var string: String? {
        if case .string(let text) = self { return text }
        return nil
    }

    /// The token of a number, or nil.
    public var numberToken: String? {
        if case .number(let token) = self { return token }
        return nil
    }
}

extension Array where Element == StrictJSON.Member {
    /// The member whose key has exactly these UTF-8 bytes.
    public func member(_ key: String) -> StrictJSON.Node? {
        first(where: { $0.key.hasSameBytes(as: key) })?.node
    }
}

private struct Parser {
    let bytes: [UInt8]
    var index = 0
    var firstDuplicate: String?

    init(bytes: [UInt8]) {
        self.bytes = bytes
    }

    mutating func skipWhitespace() {
        while index < bytes.count {
            switch bytes[index] {
            case 0x20, 0x09, 0x0A, 0x0D: index += 1
            default: return
            }
        }
    }

    func fail(_ what: String) -> StrictJSON.Failure {
        .malformed("\(what) at offset \(index)")
    }

    mutating func parseValue(depth: Int) throws(StrictJSON.Failure) -> StrictJSON.Node {
        guard depth <= StrictJSON.maxDepth else { throw fail("nesting deeper than \(StrictJSON.maxDepth)") }
        guard index < bytes.count else { throw fail("unexpected end of text") }
        let start = index
        let value: StrictJSON.Value
        switch bytes[index] {
        case UInt8(ascii: "{"): value = try parseObject(depth: depth)
        case UInt8(ascii: "["): value = try parseArray(depth: depth)
        case UInt8(ascii: "\""): value = .string(try parseString())
        case UInt8(ascii: "t"): try expectLiteral("true"); value = .bool(true)
        case UInt8(ascii: "f"): try expectLiteral("false"); value = .bool(false)
        case UInt8(ascii: "n"): try expectLiteral("null"); value = .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): value = .number(try parseNumber())
        default: throw fail("unexpected byte 0x\(Hex.encode([bytes[index]]))")
        }
        return StrictJSON.Node(value: value, span: start..<index)
    }

    mutating func expectLiteral(_ literal: StaticString) throws(StrictJSON.Failure) {
        let count = literal.utf8CodeUnitCount
        guard bytes.count - index >= count else { throw fail("truncated literal") }
        let matches = literal.withUTF8Buffer { buffer in
            buffer.elementsEqual(bytes[index..<(index + count)])
        }
        guard matches else { throw fail("invalid literal") }
        index += count
    }

    /// Objects with up to this many keys are checked for duplicates by comparing keys (no set to build).
    static let keysComparedDirectly = 16

    mutating func parseObject(depth: Int) throws(StrictJSON.Failure) -> StrictJSON.Value {
        index += 1  // {
        var members: [StrictJSON.Member] = []
        var seen: Set<ExactString> = []
        skipWhitespace()
        if index < bytes.count, bytes[index] == UInt8(ascii: "}") {
            index += 1
            return .object(members)
        }
        while true {
            skipWhitespace()
            guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else { throw fail("expected a key") }
            let key = try parseString()
            skipWhitespace()
            guard index < bytes.count, bytes[index] == UInt8(ascii: ":") else { throw fail("expected ':'") }
            index += 1
            skipWhitespace()
            let node = try parseValue(depth: depth + 1)
            // Exact bytes: "\u0061" and "a" are the same key, "ſ" and "s" are not, nor are "K" and U+212A.
            // A few keys are compared directly; past that a set finds a duplicate, so that an object with
            // thousands of keys costs time linear in its size (a hostile line must not cost quadratic time).
            if firstDuplicate == nil {
                if members.count < Self.keysComparedDirectly {
                    if members.contains(where: { $0.key.hasSameBytes(as: key) }) { firstDuplicate = key }
                } else {
                    if seen.isEmpty {
                        // Room for every key the rest of the line could hold (each takes 5 bytes at least): no rehash.
                        let room = members.count + min((bytes.count - index) / 5, 1 << 16)
                        seen.reserveCapacity(room)
                        members.reserveCapacity(room)
                        for member in members { seen.insert(ExactString(member.key)) }
                    }
                    if !seen.insert(ExactString(key)).inserted { firstDuplicate = key }
                }
            }
            members.append(StrictJSON.Member(key: key, node: node))
            skipWhitespace()
            guard index < bytes.count else { throw fail("unterminated object") }
            if bytes[index] == UInt8(ascii: ",") {
                index += 1
                continue
            }
            guard bytes[index] == UInt8(ascii: "}") else { throw fail("expected ',' or '}'") }
            index += 1
            return .object(members)
        }
    }

    mutating func parseArray(depth: Int) throws(StrictJSON.Failure) -> StrictJSON.Value {
        index += 1  // [
        var elements: [StrictJSON.Node] = []
        skipWhitespace()
        if index < bytes.count, bytes[index] == UInt8(ascii: "]") {
            index += 1
            return .array(elements)
        }
        while true {
            skipWhitespace()
            elements.append(try parseValue(depth: depth + 1))
            skipWhitespace()
            guard index < bytes.count else { throw fail("unterminated array") }
            if bytes[index] == UInt8(ascii: ",") {
                index += 1
                continue
            }
            guard bytes[index] == UInt8(ascii: "]") else { throw fail("expected ',' or ']'") }
            index += 1
            return .array(elements)
        }
    }

    mutating func parseNumber() throws(StrictJSON.Failure) -> String {
        let start = index
        if bytes[index] == UInt8(ascii: "-") { index += 1 }
        guard index < bytes.count, isDigit(bytes[index]) else { throw fail("invalid number") }
        if bytes[index] == UInt8(ascii: "0") {
            index += 1
        } else {
            while index < bytes.count, isDigit(bytes[index]) { index += 1 }
        }
        if index < bytes.count, bytes[index] == UInt8(ascii: ".") {
            index += 1
            guard index < bytes.count, isDigit(bytes[index]) else { throw fail("invalid fraction") }
            while index < bytes.count, isDigit(bytes[index]) { index += 1 }
        }
        if index < bytes.count, bytes[index] == UInt8(ascii: "e") || bytes[index] == UInt8(ascii: "E") {
            index += 1
            if index < bytes.count, bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-") {
                index += 1
            }
            guard index < bytes.count, isDigit(bytes[index]) else { throw fail("invalid exponent") }
            while index < bytes.count, isDigit(bytes[index]) { index += 1 }
        }
        return String(decoding: bytes[start..<index], as: UTF8.self)
    }

    func isDigit(_ byte: UInt8) -> Bool {
        byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")
    }

    /// Parses a string token. The raw bytes must be valid UTF-8 (no overlong forms, no encoded surrogates) and
    /// hold no control characters; escapes must name scalars (surrogates only in valid pairs).
    mutating func parseString() throws(StrictJSON.Failure) -> String {
        index += 1  // opening quote
        let start = index
        // The common case: no escape. One scan, one conversion (validating only if a byte is not ASCII: ASCII is
        // valid UTF-8 as it stands).
        var nonASCII: UInt8 = 0
        while index < bytes.count {
            let byte = bytes[index]
            if byte == UInt8(ascii: "\"") {
                let text: String
                if nonASCII & 0x80 == 0 {
                    text = String(decoding: bytes[start..<index], as: UTF8.self)
                } else {
                    guard let valid = String(validating: bytes[start..<index], as: UTF8.self) else {
                        throw StrictJSON.Failure.malformed("invalid UTF-8 in a string near offset \(start)")
                    }
                    text = valid
                }
                index += 1
                return text
            }
            nonASCII |= byte
            if byte == UInt8(ascii: "\\") { break }
            if byte < 0x20 { throw fail("raw control character in a string") }
            index += 1
        }
        // With escapes: collect UTF-8 bytes, validate once at the end.
        var decoded = Array(bytes[start..<index])
        while true {
            guard index < bytes.count else { throw fail("unterminated string") }
            let byte = bytes[index]
            if byte == UInt8(ascii: "\"") {
                guard let text = String(validating: decoded, as: UTF8.self) else {
                    throw StrictJSON.Failure.malformed("invalid UTF-8 in a string near offset \(start)")
                }
                index += 1
                return text
            }
            if byte < 0x20 { throw fail("raw control character in a string") }
            if byte == UInt8(ascii: "\\") {
                index += 1
                let scalar = try parseEscape()
                if scalar.isASCII {
                    decoded.append(UInt8(truncatingIfNeeded: scalar.value))
                } else {
                    UTF8.encode(scalar) { decoded.append($0) }
                }
                continue
            }
            decoded.append(byte)
            index += 1
        }
    }

    mutating func parseEscape() throws(StrictJSON.Failure) -> Unicode.Scalar {
        guard index < bytes.count else { throw fail("unterminated escape") }
        let byte = bytes[index]
        index += 1
        switch byte {
        case UInt8(ascii: "\""): return "\""
        case UInt8(ascii: "\\"): return "\\"
        case UInt8(ascii: "/"): return "/"
        case UInt8(ascii: "b"): return "\u{08}"
        case UInt8(ascii: "f"): return "\u{0C}"
        case UInt8(ascii: "n"): return "\n"
        case UInt8(ascii: "r"): return "\r"
        case UInt8(ascii: "t"): return "\t"
        case UInt8(ascii: "u"):
            let first = try parseHex4()
            switch first {
            case 0xD800...0xDBFF:
                // A high surrogate must be followed by an escaped low surrogate; Go would substitute U+FFFD.
                guard bytes.count - index >= 6, bytes[index] == UInt8(ascii: "\\"),
                    bytes[index + 1] == UInt8(ascii: "u")
                else { throw fail("lone surrogate escape") }
                index += 2
                let second = try parseHex4()
                guard (0xDC00...0xDFFF).contains(second) else { throw fail("lone surrogate escape") }
                let value = 0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
                guard let scalar = Unicode.Scalar(value) else { throw fail("invalid escape") }
                return scalar
            case 0xDC00...0xDFFF:
                throw fail("lone surrogate escape")
            default:
                guard let scalar = Unicode.Scalar(first) else { throw fail("invalid escape") }
                return scalar
            }
        default:
            throw fail("invalid escape")
        }
    }

    mutating func parseHex4() throws(StrictJSON.Failure) -> UInt32 {
        guard bytes.count - index >= 4 else { throw fail("truncated \\u escape") }
        var value: UInt32 = 0
        for _ in 0..<4 {
            guard let nibble = Hex.nibble(bytes[index]) else { throw fail("invalid \\u escape") }
            value = value << 4 | UInt32(nibble)
            index += 1
        }
        return value
    }
}
