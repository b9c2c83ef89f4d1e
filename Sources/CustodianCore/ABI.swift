import BigInt

/// Solidity's `abi.encode` (head/tail layout, 32-byte words) for the few types nitronode hashes: unsigned
/// integers, signed 256-bit integers (two's complement), addresses, bytes32, strings, dynamic arrays and tuples
/// (PROTOCOL-v1 §3, PROTOCOL-v1-channels §2).
public indirect enum ABIValue: Sendable, Equatable {
    case uint(UInt64)
    /// A `uint256` (nil from ``ABI/encode(_:)``'s callers' checks when out of range: see ``ABI/word(_:)``).
    case uint256(BigInt)
    /// An `int256`, two's complement.
    case int256(BigInt)
    case address(Address)
    case bytes32([UInt8])
    case string([UInt8])
    case array([ABIValue])
    case tuple([ABIValue])

    /// Whether the value is encoded in the tail (with an offset in the head).
    var isDynamic: Bool {
        switch self {
        case .uint, .uint256, .int256, .address, .bytes32: false
        case .string, .array: true
        case .tuple(let elements): elements.contains(where: \.isDynamic)
        }
    }

    /// The bytes a static value takes in its head.
    var headSize: Int {
        switch self {
        case .tuple(let elements) where !isDynamic: elements.reduce(0) { $0 + $1.headSize }
        default: 32
        }
    }
}

public enum ABI {
    /// `abi.encode(values…)`: the values as the components of one tuple.
    public static func encode(_ values: [ABIValue]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(32 * (values.count + 16))
        appendTuple(values, to: &out)
        return out
    }

    private static func appendTuple(_ elements: [ABIValue], to out: inout [UInt8]) {
        let headLength = elements.reduce(0) { $0 + $1.headSize }
        var tail: [UInt8] = []
        for element in elements {
            if element.isDynamic {
                appendWord(UInt64(headLength + tail.count), to: &out)
                append(element, to: &tail)
            } else {
                append(element, to: &out)
            }
        }
        out.append(contentsOf: tail)
    }

    private static func append(_ value: ABIValue, to out: inout [UInt8]) {
        switch value {
        case .uint(let number):
            appendWord(number, to: &out)
        case .uint256(let number), .int256(let number):
            out.append(contentsOf: word(number) ?? zeros)
        case .address(let address):
            out.append(contentsOf: zeros[0..<12])
            out.append(contentsOf: address.bytes)
        case .bytes32(let bytes):
            out.append(contentsOf: bytes.prefix(32))
            out.append(contentsOf: zeros[0..<(32 - min(bytes.count, 32))])
        case .string(let bytes):
            appendString(bytes, to: &out)
        case .array(let elements):
            appendWord(UInt64(elements.count), to: &out)
            appendTuple(elements, to: &out)
        case .tuple(let elements):
            appendTuple(elements, to: &out)
        }
    }

    private static func appendWord(_ number: UInt64, to out: inout [UInt8]) {
        out.append(contentsOf: zeros[0..<24])
        withUnsafeBytes(of: number.bigEndian) { out.append(contentsOf: $0) }
    }

    private static let zeros = [UInt8](repeating: 0, count: 32)

    /// The 32-byte big-endian two's-complement word of `number`, or nil when it does not fit 256 bits (as `int256`
    /// for a negative value, `uint256` otherwise).
    public static func word(_ number: BigInt) -> [UInt8]? {
        let two256 = BigInt(1) << 256
        let value: BigInt
        if number.signum() < 0 {
            guard number >= -(BigInt(1) << 255) else { return nil }
            value = two256 + number
        } else {
            guard number < two256 else { return nil }
            value = number
        }
        let bytes = Array(BigUInt(value).serialize())
        return [UInt8](repeating: 0, count: 32 - bytes.count) + bytes
    }

    /// `abi.encode(bytes32 id, uint8 intent, uint64 version, (address, string, string)[] allocations, string data)`,
    /// nitronode's state-update layout (PROTOCOL-v1 §3.3), written in one pass into a buffer of its exact size: the
    /// same bytes as ``encode(_:)`` of those values (a test holds the two equal), without building the value tree.
    public static func encodeStateUpdate(
        id: [UInt8], intent: UInt64, version: UInt64, allocations: [(Address, String, String)], data: String
    ) -> [UInt8] {
        func stringSize(_ count: Int) -> Int { 32 + (count + 31) / 32 * 32 }
        var elementSizes: [Int] = []
        elementSizes.reserveCapacity(allocations.count)
        var listSize = 32 + 32 * allocations.count
        for (_, asset, amount) in allocations {
            let size = 96 + stringSize(asset.utf8.count) + stringSize(amount.utf8.count)
            elementSizes.append(size)
            listSize += size
        }
        var out: [UInt8] = []
        out.reserveCapacity(160 + listSize + stringSize(data.utf8.count))
        out.append(contentsOf: id.prefix(32))
        out.append(contentsOf: zeros[0..<(32 - min(id.count, 32))])
        appendWord(intent, to: &out)
        appendWord(version, to: &out)
        appendWord(160, to: &out)
        appendWord(UInt64(160 + listSize), to: &out)
        appendWord(UInt64(allocations.count), to: &out)
        var offset = 32 * allocations.count
        for size in elementSizes {
            appendWord(UInt64(offset), to: &out)
            offset += size
        }
        for (participant, asset, amount) in allocations {
            out.append(contentsOf: zeros[0..<12])
            out.append(contentsOf: participant.bytes)
            appendWord(96, to: &out)
            appendWord(UInt64(96 + stringSize(asset.utf8.count)), to: &out)
            appendString(asset, to: &out)
            appendString(amount, to: &out)
        }
        appendString(data, to: &out)
        return out
    }

    private static func appendString(_ bytes: [UInt8], to out: inout [UInt8]) {
        appendWord(UInt64(bytes.count), to: &out)
        out.append(contentsOf: bytes)
        out.append(contentsOf: zeros[0..<((32 - bytes.count % 32) % 32)])
    }

    /// A string's UTF-8 bytes as an ABI `string`, without copying them into an array first.
    private static func appendString(_ text: String, to out: inout [UInt8]) {
        let count = text.utf8.count
        appendWord(UInt64(count), to: &out)
        out.append(contentsOf: text.utf8)
        out.append(contentsOf: zeros[0..<((32 - count % 32) % 32)])
    }
}
