import Foundation

/// The golden vectors in Tests/Vectors (a copy of ../shared/vectors, kept in sync by scripts/sync-vectors).
public enum VectorFiles {
    public static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Vectors")

    /// The names of the `.json` files in a folder, sorted. A missing or empty folder gives one name that no file
    /// has, so that a test over its cases fails (on loading it) instead of passing with none.
    public static func names(_ folder: String) -> [String] {
        let url = root.appendingPathComponent(folder)
        let names = (try? FileManager.default.contentsOfDirectory(atPath: url.path)) ?? []
        let cases = names.filter { $0.hasSuffix(".json") }.sorted()
        return cases.isEmpty ? ["(no .json files in \(folder))"] : cases
    }

    /// One vector file as a dictionary.
    public static func load(_ folder: String, _ name: String) throws -> [String: Any] {
        let data = try Data(contentsOf: root.appendingPathComponent(folder).appendingPathComponent(name))
        guard let object = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw VectorError("\(folder)/\(name) is not an object")
        }
        return object
    }

    /// Bytes of bare hex (the vectors' `*_hex` fields) or `0x` hex.
    public static func bytes(hex: String) throws -> [UInt8] {
        var text = Substring(hex)
        if text.hasPrefix("0x") { text = text.dropFirst(2) }
        var out: [UInt8] = []
        var index = text.startIndex
        while index < text.endIndex {
            let next = text.index(index, offsetBy: 2)
            guard let byte = UInt8(text[index..<next], radix: 16) else { throw VectorError("bad hex") }
            out.append(byte)
            index = next
        }
        return out
    }
}

public struct VectorError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// A small deterministic generator (SplitMix64): the same seed gives the same cases on every machine.
public struct SplitMix64: RandomNumberGenerator {
    public var state: UInt64
    public init(state: UInt64) { self.state = state }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
