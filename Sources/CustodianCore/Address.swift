/// An Ethereum address held in its EIP-55 spelling, the only spelling ClearNode matches (PROTOCOL.md §5).
public struct Address: Hashable, Sendable, CustomStringConvertible {
    /// The 20 bytes.
    public let bytes: [UInt8]
    /// `0x` + 40 hex digits with the EIP-55 checksum casing.
    public let checksummed: String

    /// The address of these 20 bytes.
    public init?(bytes: [UInt8]) {
        guard bytes.count == 20 else { return nil }
        self.bytes = bytes
        self.checksummed = Address.checksum(lowerHex: Array(Hex.encode(bytes).utf8))
    }

    /// Parses `text` only if it is `0x` + 40 hex digits spelled exactly in EIP-55 form.
    ///
    /// An all-lower-case address can be valid EIP-55 (`keys/eip55_all_lower.json`): compare with the checksum,
    /// never test for "has upper case".
    public init?(eip55 text: String) {
        var text = text
        let bytes: [UInt8]? = text.withUTF8 { utf8 in
            guard utf8.count == 42, utf8[0] == UInt8(ascii: "0"), utf8[1] == UInt8(ascii: "x") else { return nil }
            var bytes = [UInt8](repeating: 0, count: 20)
            var lower = [UInt8](repeating: 0, count: 40)
            for index in 0..<40 {
                let char = utf8[index + 2]
                guard let nibble = Hex.nibble(char) else { return nil }
                lower[index] = nibble < 10 ? char : nibble &+ 0x57
                bytes[index / 2] |= index % 2 == 0 ? nibble << 4 : nibble
            }
            // EIP-55: a letter is upper case exactly when its nibble in keccak256(lower-case hex) is 8 or more.
            let hash = Keccak256.hash(lower)
            for index in 0..<40 where lower[index] >= UInt8(ascii: "a") {
                let hashNibble = index % 2 == 0 ? hash[index / 2] >> 4 : hash[index / 2] & 0x0F
                let isUpper = utf8[index + 2] < UInt8(ascii: "a")
                guard isUpper == (hashNibble >= 8) else { return nil }
            }
            return bytes
        }
        guard let bytes else { return nil }
        self.bytes = bytes
        self.checksummed = text
    }

    /// Parses `0x` + 40 hex digits in any letter case.
    public init?(anyCase text: String) {
        let utf8 = Array(text.utf8)
        guard utf8.count == 42, utf8[0] == UInt8(ascii: "0"), utf8[1] == UInt8(ascii: "x"),
            let bytes = Hex.decode(text), bytes.count == 20
        else { return nil }
        self.init(bytes: bytes)
    }

    /// The address of an uncompressed secp256k1 public key (65 bytes starting with 0x04, or the 64 bytes after it).
    public init?(publicKey: [UInt8]) {
        let body: ArraySlice<UInt8>
        switch publicKey.count {
        case 65 where publicKey[0] == 0x04: body = publicKey[1...]
        case 64: body = publicKey[...]
        default: return nil
        }
        self.init(bytes: Array(Keccak256.hash(body).suffix(20)))
    }

    public var description: String { checksummed }

    /// EIP-55: upper-case each hex letter whose nibble in keccak256(lower-case hex) is 8 or more.
    static func checksum(lowerHex: [UInt8]) -> String {
        let hash = Keccak256.hash(lowerHex)
        var out: [UInt8] = [UInt8(ascii: "0"), UInt8(ascii: "x")]
        out.reserveCapacity(42)
        for (index, char) in lowerHex.enumerated() {
            let hashByte = hash[index / 2]
            let nibble = index % 2 == 0 ? hashByte >> 4 : hashByte & 0x0F
            if char >= UInt8(ascii: "a") && nibble >= 8 {
                out.append(char - 32)
            } else {
                out.append(char)
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}
