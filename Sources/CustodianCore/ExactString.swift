/// A string compared and hashed by its exact UTF-8 bytes, as Go compares strings.
///
/// Swift's `String ==` uses canonical equivalence, under which U+212A KELVIN SIGN equals "K": an asset or
/// application name that ClearNode sees as different must never match here.
public struct ExactString: Hashable, Sendable, CustomStringConvertible, ExpressibleByStringLiteral, Comparable {
    public let value: String

    public init(_ value: String) { self.value = value }
    public init(stringLiteral value: String) { self.value = value }

    public static func == (lhs: ExactString, rhs: ExactString) -> Bool {
        lhs.value.hasSameBytes(as: rhs.value)
    }

    public static func < (lhs: ExactString, rhs: ExactString) -> Bool {
        lhs.value.utf8.lexicographicallyPrecedes(rhs.value.utf8)
    }

    public func hash(into hasher: inout Hasher) {
        let done: Void? = value.utf8.withContiguousStorageIfAvailable {
            hasher.combine(bytes: UnsafeRawBufferPointer($0))
        }
        if done == nil {
            for byte in value.utf8 { hasher.combine(byte) }
        }
        hasher.combine(0xFF as UInt8)  // never a UTF-8 byte: ends the value
    }

    public var description: String { value }
}

extension String {
    /// Whether the two strings have the same UTF-8 bytes (no canonical equivalence, unlike `==`).
    @inlinable
    public func hasSameBytes(as other: String) -> Bool {
        let compared = utf8.withContiguousStorageIfAvailable { mine in
            other.utf8.withContiguousStorageIfAvailable { theirs in mine.elementsEqual(theirs) }
        }
        if let compared, let result = compared { return result }
        return utf8.elementsEqual(other.utf8)
    }
}
