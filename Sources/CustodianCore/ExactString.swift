/// A string compared and hashed by its exact UTF-8 bytes, as Go compares strings.
///
/// Swift's `String ==` uses canonical equivalence, under which U+212A KELVIN SIGN equals "K": an asset or
/// application name that ClearNode sees as different must never match here.
public struct ExactString: Hashable, Sendable, CustomStringConvertible, ExpressibleByStringLiteral, Comparable {
    public let value: String

    public init(_ value: String) { self.value = value }
    public init(stringLiteral value: String) { self.value = value }

    public static func == (lhs: ExactString, rhs: ExactString) -> Bool {
        lhs.value.utf8.elementsEqual(rhs.value.utf8)
    }

    public static func < (lhs: ExactString, rhs: ExactString) -> Bool {
        lhs.value.utf8.lexicographicallyPrecedes(rhs.value.utf8)
    }

    public func hash(into hasher: inout Hasher) {
        for byte in value.utf8 { hasher.combine(byte) }
    }

    public var description: String { value }
}
