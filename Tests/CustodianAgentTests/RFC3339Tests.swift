import Foundation
import Testing

@testable import CustodianAgent

@Suite("Record times (RFC 3339, UTC, milliseconds)")
struct RFC3339Tests {
    @Test("agrees with Foundation's ISO 8601 formatter from 1970 to 9999, and at the edges")
    func againstFoundation() {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        formatter.timeZone = TimeZone(identifier: "UTC")
        var generator = SystemRandomNumberGenerator()
        let edges: [UInt64] = [0, 999, 1000, 86_399_999, 951_782_400_000, 1_733_000_000_000, 253_402_300_799_999]
        let samples = edges + (0..<2000).map { _ in UInt64.random(in: 0...253_402_300_799_999, using: &generator) }
        for ms in samples {
            let date = Date(timeIntervalSince1970: Double(ms / 1000))
            let expected =
                formatter.string(from: date).replacingOccurrences(of: ".000Z", with: "")
                + String(format: ".%03dZ", Int(ms % 1000))
            #expect(RFC3339.format(ms: ms) == expected, "\(ms)")
        }
    }
}
