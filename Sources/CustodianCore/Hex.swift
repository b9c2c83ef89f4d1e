/// Lower-case hexadecimal, the form Ethereum tools print.
public enum Hex {
    /// `bytes` as lower-case hex, with the `0x` prefix when `prefixed`.
    public static func encode(_ bytes: [UInt8], prefixed: Bool = false) -> String {
        bytes.withUnsafeBufferPointer { encode(buffer: $0, prefixed: prefixed) }
    }

    /// `bytes` as lower-case hex, with the `0x` prefix when `prefixed`.
    public static func encode(_ bytes: ArraySlice<UInt8>, prefixed: Bool = false) -> String {
        bytes.withUnsafeBufferPointer { encode(buffer: $0, prefixed: prefixed) }
    }

    /// `bytes` as lower-case hex, with the `0x` prefix when `prefixed`.
    public static func encode<Bytes: Sequence<UInt8>>(_ bytes: Bytes, prefixed: Bool = false) -> String {
        encode(Array(bytes), prefixed: prefixed)
    }

    private static func encode(buffer: UnsafeBufferPointer<UInt8>, prefixed: Bool) -> String {
        let prefix = prefixed ? 2 : 0
        return String(unsafeUninitializedCapacity: buffer.count * 2 + prefix) { out in
            if prefixed {
                out[0] = UInt8(ascii: "0")
                out[1] = UInt8(ascii: "x")
            }
            var index = prefix
            for byte in buffer {
                out[index] = hexDigit(byte >> 4)
                out[index + 1] = hexDigit(byte & 0x0F)
                index += 2
            }
            return index
        }
    }

    @inline(__always)
    private static func hexDigit(_ nibble: UInt8) -> UInt8 {
        nibble < 10 ? nibble &+ 0x30 : nibble &+ 0x57
    }

    /// The bytes of `text`, which holds an even number of hex digits, optionally after `0x`. Nil otherwise.
    public static func decode(_ text: some StringProtocol) -> [UInt8]? {
        var utf8 = Array(text.utf8)
        if utf8.count >= 2, utf8[0] == UInt8(ascii: "0"), utf8[1] == UInt8(ascii: "x") || utf8[1] == UInt8(ascii: "X") {
            utf8.removeFirst(2)
        }
        guard utf8.count % 2 == 0 else { return nil }
        var out = [UInt8]()
        out.reserveCapacity(utf8.count / 2)
        var index = 0
        while index < utf8.count {
            guard let high = nibble(utf8[index]), let low = nibble(utf8[index + 1]) else { return nil }
            out.append(high << 4 | low)
            index += 2
        }
        return out
    }

    /// Whether every byte is a lower-case hex digit.
    public static func isLowerCase(_ bytes: some Sequence<UInt8>) -> Bool {
        bytes.allSatisfy { (48...57).contains($0) || (97...102).contains($0) }
    }

    /// The value of one hex digit, or nil.
    public static func nibble(_ char: UInt8) -> UInt8? {
        switch char {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return char - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return char - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return char - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
}
