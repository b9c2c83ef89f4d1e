import BigInt

/// An exact decimal amount: `units / 10^scale`, with trailing fractional zeros removed so that equal values are
/// equal structurally ("150" == "150.0"). No floating point anywhere; sums and differences never overflow.
public struct Amount: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// The most integer digits an amount may have (uint256 has 78).
    public static let maxIntegerDigits = 78
    /// The most fractional digits an amount may have as written.
    public static let maxFractionDigits = 78

    /// The value times 10^scale.
    public let units: BigInt
    /// The number of fractional digits the value needs (0 for an integer).
    public let scale: Int

    /// Zero.
    public static let zero = Amount(units: 0, scale: 0)

    init(units: BigInt, scale: Int) {
        var units = units
        var scale = scale
        while scale > 0, units % 10 == 0 {
            units /= 10
            scale -= 1
        }
        self.units = units
        self.scale = scale
    }

    /// Parses the wire grammar `^(0|[1-9][0-9]*)(\.[0-9]+)?$` (CONTRACT §4), and nothing else: no sign, exponent,
    /// leading zero or dot, white space, or more than ``maxIntegerDigits`` / ``maxFractionDigits`` digits.
    public init?(_ text: String) {
        let utf8 = Array(text.utf8)
        guard let first = utf8.first else { return nil }
        var index = 0
        var digits: [UInt8] = []
        digits.reserveCapacity(utf8.count)
        if first == UInt8(ascii: "0") {
            digits.append(first)
            index = 1
        } else {
            while index < utf8.count, utf8[index] >= UInt8(ascii: "0"), utf8[index] <= UInt8(ascii: "9") {
                digits.append(utf8[index])
                index += 1
            }
            guard !digits.isEmpty else { return nil }
        }
        guard digits.count <= Amount.maxIntegerDigits else { return nil }
        var scale = 0
        if index < utf8.count {
            guard utf8[index] == UInt8(ascii: ".") else { return nil }
            index += 1
            let fractionStart = index
            while index < utf8.count, utf8[index] >= UInt8(ascii: "0"), utf8[index] <= UInt8(ascii: "9") {
                digits.append(utf8[index])
                index += 1
            }
            scale = index - fractionStart
            guard scale > 0, scale <= Amount.maxFractionDigits else { return nil }
        }
        guard index == utf8.count else { return nil }
        if digits.count <= 18 {
            // Fits in 63 bits: no text round trip through BigInt's parser.
            var value: UInt64 = 0
            for digit in digits { value = value &* 10 &+ UInt64(digit &- UInt8(ascii: "0")) }
            self.init(units: BigInt(value), scale: scale)
            return
        }
        guard let units = BigInt(String(decoding: digits, as: UTF8.self), radix: 10) else { return nil }
        self.init(units: units, scale: scale)
    }

    /// A signed amount (a channel ledger's net flow): the wire grammar with an optional leading `-` (`-0` refused).
    public init?(signed text: String) {
        guard text.hasPrefix("-") else {
            self.init(text)
            return
        }
        guard let magnitude = Amount(String(text.dropFirst())), !magnitude.isZero else { return nil }
        self.init(units: -magnitude.units, scale: magnitude.scale)
    }

    /// The fractional digits the value needs: "1.50" needs 1.
    public var fractionDigits: Int { scale }

    /// Whether the value is below zero (only differences can be).
    public var isNegative: Bool { units.signum() < 0 }

    /// Whether the value is zero.
    public var isZero: Bool { units.isZero }

    private static func aligned(_ lhs: Amount, _ rhs: Amount) -> (BigInt, BigInt, Int) {
        let scale = max(lhs.scale, rhs.scale)
        let left = lhs.units * BigInt(10).power(scale - lhs.scale)
        let right = rhs.units * BigInt(10).power(scale - rhs.scale)
        return (left, right, scale)
    }

    public static func + (lhs: Amount, rhs: Amount) -> Amount {
        let (left, right, scale) = aligned(lhs, rhs)
        return Amount(units: left + right, scale: scale)
    }

    public static func - (lhs: Amount, rhs: Amount) -> Amount {
        let (left, right, scale) = aligned(lhs, rhs)
        return Amount(units: left - right, scale: scale)
    }

    public static func < (lhs: Amount, rhs: Amount) -> Bool {
        let (left, right, _) = aligned(lhs, rhs)
        return left < right
    }

    /// The plain decimal form: no exponent, no trailing fractional zeros, "-" for a negative difference.
    public var description: String {
        let negative = units.signum() < 0
        // Most amounts fit 64 bits: their digits without BigInt's general conversion.
        var digits = UInt64(exactly: units.magnitude).map { String($0) } ?? String(units.magnitude)
        if scale > 0 {
            if digits.count <= scale {
                digits = String(repeating: "0", count: scale - digits.count + 1) + digits
            }
            digits.insert(".", at: digits.index(digits.endIndex, offsetBy: -scale))
        }
        return negative ? "-" + digits : digits
    }
}

extension Sequence where Element == Amount {
    /// The exact sum.
    public func sum() -> Amount { reduce(Amount.zero, +) }
}
