import CustodianCore
import CustodianTestSupport
import Foundation
import Testing

/// custodian's v1 hashes against an independent ABI encoder: random creates and state updates (participants,
/// weights, nonces and versions up to 2^64 − 1, assets and session data with escapes and non-ASCII text, amounts
/// with up to 30 integer and 18 fractional digits, trailing zeros included) are read by NitroliteV1Reader and hashed
/// by eth-abi (Tests/EndToEndTests/oracle.py, which normalises amounts with Python's Decimal); every hash must agree.
///
/// Fixed seed; `CUSTODIAN_PROPERTY_CASES=N` runs N frames (CI runs 300), `CUSTODIAN_PROPERTY_SEED` another seed.
@Suite("v1 hashes against eth-abi on random states")
struct V1OracleTests {
    static let assets = ["usdc", "eth", "YUSD", "usdc.e", "ünï", "a\"b\\c", "😀", "tab\there", ""]
    static let texts = [
        "", "{\"winner\":\"A\"}", "line\nbreak", "ü€😀", "<&>", "\u{2028}", String(repeating: "x", count: 1024),
        "back\\slash",
    ]

    static func address(_ random: inout SplitMix64) -> String {
        let bytes = (0..<20).map { _ in UInt8.random(in: 0...255, using: &random) }
        return Address(bytes: bytes)?.checksummed ?? ""
    }

    static func amount(_ random: inout SplitMix64) -> String {
        let digits = "0123456789"
        var integer = String(Int.random(in: 1...9, using: &random))
        for _ in 0..<Int.random(in: 0...29, using: &random) {
            integer.append(digits.randomElement(using: &random) ?? "0")
        }
        if Bool.random(using: &random) { integer = "0" }
        let fraction = (0..<Int.random(in: 0...18, using: &random)).map { _ in
            digits.randomElement(using: &random) ?? "0"
        }
        return fraction.isEmpty ? integer : integer + "." + String(fraction)
    }

    static func frame(_ random: inout SplitMix64) -> [Any] {
        let ts = Int.random(in: 0...Int(Int32.max), using: &random)
        if random.next() % 4 == 0 {
            let count = Int.random(in: 1...32, using: &random)
            let participants: [[String: Any]] = (0..<count).map { _ in
                ["wallet_address": address(&random), "signature_weight": Int.random(in: 0...255, using: &random)]
            }
            let definition: [String: Any] = [
                "application_id": ["chess", "store-v1", "a_b-9"].randomElement(using: &random) ?? "",
                "participants": participants, "quorum": Int.random(in: 0...255, using: &random),
                "nonce": String(random.next()),
            ]
            let payload: [String: Any] = [
                "definition": definition, "session_data": texts.randomElement(using: &random) ?? "",
                "quorum_sigs": [String](),
            ]
            return [1, 1, "app_sessions.v1.create_app_session", payload, ts]
        }
        let intent = Int.random(in: 0...3, using: &random)
        let allocations: [[String: Any]] = (0..<Int.random(in: 0...6, using: &random)).map { _ in
            [
                "participant": address(&random), "asset": assets.randomElement(using: &random) ?? "",
                "amount": amount(&random),
            ]
        }
        let id = "0x" + (0..<32).map { _ in String(format: "%02x", UInt8.random(in: 0...255, using: &random)) }.joined()
        let update: [String: Any] = [
            "app_session_id": id, "intent": intent, "version": String(max(random.next(), 1)),
            "allocations": allocations, "session_data": texts.randomElement(using: &random) ?? "",
        ]
        var payload: [String: Any] = ["app_state_update": update, "quorum_sigs": [String]()]
        var method = "app_sessions.v1.submit_app_state"
        if intent == 1 {
            method = "app_sessions.v1.submit_deposit_state"
            payload["user_state"] = [String: Any]()
        }
        return [1, 2, method, payload, ts]
    }

    @Test func randomStates() throws {
        let environment = ProcessInfo.processInfo.environment
        let count = environment["CUSTODIAN_PROPERTY_CASES"].flatMap { Int($0) } ?? 300
        var random = SplitMix64(state: environment["CUSTODIAN_PROPERTY_SEED"].flatMap { UInt64($0) } ?? 0xAB1_0001)
        let frames = (0..<count).map { _ in Self.frame(&random) }
        let workspace = try Workspace()
        let data = try JSONSerialization.data(withJSONObject: frames, options: [.withoutEscapingSlashes])
        let file = workspace.path + "/frames.json"
        try data.write(to: URL(fileURLWithPath: file))
        let expected = try Harness.oracle(["v1-hashes", file]).split(separator: "\n").map(String.init)
        #expect(expected.count == count, "eth-abi hashed \(expected.count) of \(count) frames")
        for (index, frame) in frames.enumerated() where index < expected.count {
            let text = try JSONSerialization.data(withJSONObject: frame, options: [.withoutEscapingSlashes])
            switch NitroliteV1Reader().read(Array(text)) {
            case .success(let request):
                #expect(
                    Hex.encode(request.requestHash, prefixed: true) == expected[index],
                    "frame \(index): \(String(decoding: text, as: UTF8.self).prefix(300))")
            case .failure(let denial):
                Issue.record("frame \(index) refused: \(denial.detail)")
            }
        }
    }
}
