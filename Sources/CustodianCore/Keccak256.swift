/// Keccak-256 as Ethereum uses it: the original Keccak padding (0x01), not NIST SHA3-256 (0x06).
///
/// None of libsecp256k1, libsodium or the system's libcrypto offers it under that padding, so it is written here,
/// checked against `Tests/Vectors/keccak`.
public enum Keccak256 {
    /// The rate of Keccak-256 in bytes (1600 − 2·256 bits).
    static let rate = 136

    /// The 32-byte digest of `bytes`.
    public static func hash<Bytes: Collection<UInt8>>(_ bytes: Bytes) -> [UInt8] {
        if let digest = bytes.withContiguousStorageIfAvailable({ hash(UnsafeRawBufferPointer($0)) }) {
            return digest
        }
        return Array(bytes).withUnsafeBytes { hash($0) }
    }

    /// The 32-byte digest of the bytes in `buffer`.
    public static func hash(_ buffer: UnsafeRawBufferPointer) -> [UInt8] {
        var state = State()
        var offset = 0
        let count = buffer.count
        while count - offset >= rate {
            state.absorb(buffer, at: offset)
            state.permute()
            offset += rate
        }
        // Last block: the remaining bytes, then 0x01 ... 0x80 (Keccak padding).
        var block = [UInt8](repeating: 0, count: rate)
        for index in 0..<(count - offset) {
            block[index] = buffer[offset + index]
        }
        block[count - offset] ^= 0x01
        block[rate - 1] ^= 0x80
        block.withUnsafeBytes { state.absorb($0, at: 0) }
        state.permute()
        return state.squeeze32()
    }

    struct State {
        var lanes = [UInt64](repeating: 0, count: 25)

        mutating func absorb(_ buffer: UnsafeRawBufferPointer, at offset: Int) {
            lanes.withUnsafeMutableBufferPointer { lanes in
                for lane in 0..<(Keccak256.rate / 8) {
                    lanes[lane] ^= UInt64(
                        littleEndian: buffer.loadUnaligned(fromByteOffset: offset + lane * 8, as: UInt64.self))
                }
            }
        }

        func squeeze32() -> [UInt8] {
            var out = [UInt8]()
            out.reserveCapacity(32)
            for lane in 0..<4 {
                let value = lanes[lane]
                for byte in 0..<8 {
                    out.append(UInt8(truncatingIfNeeded: value >> (8 * UInt64(byte))))
                }
            }
            return out
        }

        mutating func permute() {
            lanes.withUnsafeMutableBufferPointer { a in
                var c = (UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0))
                for round in 0..<24 {
                    // θ
                    c.0 = a[0] ^ a[5] ^ a[10] ^ a[15] ^ a[20]
                    c.1 = a[1] ^ a[6] ^ a[11] ^ a[16] ^ a[21]
                    c.2 = a[2] ^ a[7] ^ a[12] ^ a[17] ^ a[22]
                    c.3 = a[3] ^ a[8] ^ a[13] ^ a[18] ^ a[23]
                    c.4 = a[4] ^ a[9] ^ a[14] ^ a[19] ^ a[24]
                    let d0 = c.4 ^ rotl(c.1, 1)
                    let d1 = c.0 ^ rotl(c.2, 1)
                    let d2 = c.1 ^ rotl(c.3, 1)
                    let d3 = c.2 ^ rotl(c.4, 1)
                    let d4 = c.3 ^ rotl(c.0, 1)
                    for row in stride(from: 0, to: 25, by: 5) {
                        a[row] ^= d0
                        a[row + 1] ^= d1
                        a[row + 2] ^= d2
                        a[row + 3] ^= d3
                        a[row + 4] ^= d4
                    }
                    // ρ and π
                    var current = a[1]
                    for step in 0..<24 {
                        let target = piLane[step]
                        let saved = a[target]
                        a[target] = rotl(current, rhoOffset[step])
                        current = saved
                    }
                    // χ
                    for row in stride(from: 0, to: 25, by: 5) {
                        let b0 = a[row]
                        let b1 = a[row + 1]
                        let b2 = a[row + 2]
                        let b3 = a[row + 3]
                        let b4 = a[row + 4]
                        a[row] = b0 ^ (~b1 & b2)
                        a[row + 1] = b1 ^ (~b2 & b3)
                        a[row + 2] = b2 ^ (~b3 & b4)
                        a[row + 3] = b3 ^ (~b4 & b0)
                        a[row + 4] = b4 ^ (~b0 & b1)
                    }
                    // ι
                    a[0] ^= roundConstants[round]
                }
            }
        }
    }
}

@inline(__always)
private func rotl(_ value: UInt64, _ amount: UInt64) -> UInt64 {
    (value << amount) | (value >> (64 &- amount))
}

private let rhoOffset: [UInt64] = [
    1, 3, 6, 10, 15, 21, 28, 36, 45, 55, 2, 14, 27, 41, 56, 8, 25, 43, 62, 18, 39, 61, 20, 44,
]

private let piLane: [Int] = [
    10, 7, 11, 17, 18, 3, 5, 16, 8, 21, 24, 4, 15, 23, 19, 13, 12, 2, 20, 14, 22, 9, 6, 1,
]

private let roundConstants: [UInt64] = [
    0x0000_0000_0000_0001, 0x0000_0000_0000_8082, 0x8000_0000_0000_808A, 0x8000_0000_8000_8000,
    0x0000_0000_0000_808B, 0x0000_0000_8000_0001, 0x8000_0000_8000_8081, 0x8000_0000_0000_8009,
    0x0000_0000_0000_008A, 0x0000_0000_0000_0088, 0x0000_0000_8000_8009, 0x0000_0000_8000_000A,
    0x0000_0000_8000_808B, 0x8000_0000_0000_008B, 0x8000_0000_0000_8089, 0x8000_0000_0000_8003,
    0x8000_0000_0000_8002, 0x8000_0000_0000_0080, 0x0000_0000_0000_800A, 0x8000_0000_8000_000A,
    0x8000_0000_8000_8081, 0x8000_0000_0000_8080, 0x0000_0000_8000_0001, 0x8000_0000_8000_8008,
]
