/// Solidity's `abi.encode` (head/tail layout, 32-byte words) for the few types nitronode hashes: unsigned
/// integers up to 64 bits, addresses, bytes32, strings, dynamic arrays and tuples (PROTOCOL-v1 §3).
public indirect enum ABIValue: Sendable, Equatable {
    case uint(UInt64)
    case address(Address)
    case bytes32([UInt8])
    case string([UInt8])
    case array([ABIValue])
    case tuple([ABIValue])

    /// Whether the value is encoded in the tail (with an offset in the head).
    var isDynamic: Bool {
        switch self {
        case .uint, .address, .bytes32: false
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
        case .address(let address):
            out.append(contentsOf: repeatElement(0, count: 12))
            out.append(contentsOf: address.bytes)
        case .bytes32(let bytes):
            out.append(contentsOf: bytes.prefix(32))
            out.append(contentsOf: repeatElement(0, count: 32 - min(bytes.count, 32)))
        case .string(let bytes):
            appendWord(UInt64(bytes.count), to: &out)
            out.append(contentsOf: bytes)
            let padding = (32 - bytes.count % 32) % 32
            out.append(contentsOf: repeatElement(0, count: padding))
        case .array(let elements):
            appendWord(UInt64(elements.count), to: &out)
            appendTuple(elements, to: &out)
        case .tuple(let elements):
            appendTuple(elements, to: &out)
        }
    }

    private static func appendWord(_ number: UInt64, to out: inout [UInt8]) {
        out.append(contentsOf: repeatElement(0, count: 24))
        for shift in stride(from: 56, through: 0, by: -8) { out.append(UInt8(truncatingIfNeeded: number >> UInt64(shift))) }
    }
}
