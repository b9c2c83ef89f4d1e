/// Writes JSON text directly into a byte buffer, for records and replies that custodian composes itself.
/// (Requests are never re-encoded: their bytes are kept as received.)
public struct JSONWriter {
    public private(set) var bytes: [UInt8] = []
    /// One entry per open container: whether a member has been written (so the next needs a comma).
    private var hasMember: [Bool] = []
    /// A key was written and its value has not.
    private var afterKey = false
    private static let hexDigits = Array("0123456789abcdef".utf8)

    public init(capacity: Int = 256) {
        bytes.reserveCapacity(capacity)
    }

    /// Empties the writer for the next document, keeping its storage.
    public mutating func reset() {
        bytes.removeAll(keepingCapacity: true)
        hasMember.removeAll(keepingCapacity: true)
        afterKey = false
    }

    /// The text written so far.
    public var text: String { String(decoding: bytes, as: UTF8.self) }

    private mutating func separate() {
        guard let last = hasMember.indices.last else { return }
        if hasMember[last] { bytes.append(UInt8(ascii: ",")) }
        hasMember[last] = true
    }

    private mutating func beforeValue() {
        if afterKey {
            afterKey = false
        } else {
            separate()
        }
    }

    public mutating func beginObject() {
        beforeValue()
        bytes.append(UInt8(ascii: "{"))
        hasMember.append(false)
    }

    public mutating func endObject() {
        bytes.append(UInt8(ascii: "}"))
        hasMember.removeLast()
    }

    public mutating func beginArray() {
        beforeValue()
        bytes.append(UInt8(ascii: "["))
        hasMember.append(false)
    }

    public mutating func endArray() {
        bytes.append(UInt8(ascii: "]"))
        hasMember.removeLast()
    }

    /// Writes `"name":` inside an object; the next value belongs to it.
    public mutating func key(_ name: String) {
        separate()
        Self.appendString(name, to: &bytes)
        bytes.append(UInt8(ascii: ":"))
        afterKey = true
    }

    public mutating func string(_ value: String) {
        beforeValue()
        Self.appendString(value, to: &bytes)
    }

    public mutating func number<T: BinaryInteger>(_ value: T) {
        beforeValue()
        bytes.append(contentsOf: String(value).utf8)
    }

    /// Ends a line of JSON Lines (after the top-level value).
    public mutating func newline() {
        bytes.append(0x0A)
    }

    public mutating func bool(_ value: Bool) {
        beforeValue()
        bytes.append(contentsOf: (value ? "true" : "false").utf8)
    }

    public mutating func null() {
        beforeValue()
        bytes.append(contentsOf: "null".utf8)
    }

    /// Writes bytes that are already one JSON value.
    public mutating func raw(_ json: some Sequence<UInt8>) {
        beforeValue()
        bytes.append(contentsOf: json)
    }

    public mutating func field(_ name: String, _ value: String) {
        key(name)
        string(value)
    }

    /// A string member from bytes that are already valid UTF-8 (a request the strict reader accepted).
    public mutating func field(_ name: String, utf8 value: [UInt8]) {
        key(name)
        beforeValue()
        Self.appendBytes(value, to: &bytes)
    }

    public mutating func field(_ name: String, _ value: Bool) {
        key(name)
        raw(Array((value ? "true" : "false").utf8))
    }

    public mutating func field<T: BinaryInteger>(_ name: String, _ value: T) {
        key(name)
        number(value)
    }

    /// A JSON string of raw bytes, escaped like ``appendString(_:to:)``; bytes that are not UTF-8 pass through as
    /// they are, for a receiver to refuse.
    public static func appendBytes(_ bytes: [UInt8], to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        bytes.withUnsafeBufferPointer { appendEscaped($0, to: &out) }
        out.append(UInt8(ascii: "\""))
    }

    /// RFC 8259 string escaping: quote, backslash and controls; everything else raw UTF-8.
    public static func appendString(_ text: String, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        let done: Void? = text.utf8.withContiguousStorageIfAvailable { appendEscaped($0, to: &out) }
        if done == nil {
            for byte in text.utf8 { appendEscaped(byte, to: &out) }
        }
        out.append(UInt8(ascii: "\""))
    }

    /// Copies runs of bytes that need no escape at once; escapes the rest one by one.
    private static func appendEscaped(_ run: UnsafeBufferPointer<UInt8>, to out: inout [UInt8]) {
        var start = 0
        for index in run.indices {
            let byte = run[index]
            if byte >= 0x20 && byte != 0x22 && byte != 0x5C { continue }
            if start < index { out.append(contentsOf: UnsafeBufferPointer(rebasing: run[start..<index])) }
            appendEscaped(byte, to: &out)
            start = index + 1
        }
        if start < run.count { out.append(contentsOf: UnsafeBufferPointer(rebasing: run[start...])) }
    }

    @inline(__always)
    private static func appendEscaped(_ byte: UInt8, to out: inout [UInt8]) {
        switch byte {
        case 0x22, 0x5C:
            out.append(0x5C)
            out.append(byte)
        case 0x0A:
            out.append(0x5C)
            out.append(UInt8(ascii: "n"))
        case 0x0D:
            out.append(0x5C)
            out.append(UInt8(ascii: "r"))
        case 0x09:
            out.append(0x5C)
            out.append(UInt8(ascii: "t"))
        case 0x00..<0x20:
            out.append(0x5C)
            out.append(UInt8(ascii: "u"))
            out.append(0x30)
            out.append(0x30)
            out.append(hexDigits[Int(byte >> 4)])
            out.append(hexDigits[Int(byte & 0xF)])
        default: out.append(byte)
        }
    }
}
