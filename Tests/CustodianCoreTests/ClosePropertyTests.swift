import CustodianCore
import CustodianTestSupport
import Foundation
import Testing

/// Property: for random sessions, policies and closes, custodian allows a close exactly when an oracle, written
/// here from CONTRACT §4/§5 in integer arithmetic (micro-units), says every invariant holds.
///
/// Fixed seed; `CUSTODIAN_PROPERTY_CASES=N` runs more (and `CUSTODIAN_PROPERTY_SEED` another seed).
@Suite("Close decisions against an independent oracle")
struct ClosePropertyTests {
    static let participants = [
        "0xFdEc8F58fA4b3bf07DD11eAF4c562Ee674e2C638", "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266",
        "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
    ]
    static let stranger = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"

    /// Micro-units as a decimal string ("1.5" for 1_500_000), sometimes with 7 fractional digits.
    static func text(_ micro: Int64, extraDigit: Bool) -> String {
        let whole = micro / 1_000_000
        let fraction = micro % 1_000_000
        if extraDigit { return "\(whole).\(String(format: "%06d", fraction))1" }
        return fraction == 0 ? "\(whole)" : "\(whole).\(String(format: "%06d", fraction))"
    }

    @Test("allow exactly when the oracle says so")
    func closes() throws {
        let environment = ProcessInfo.processInfo.environment
        let count = environment["CUSTODIAN_PROPERTY_CASES"].flatMap { Int($0) } ?? 2000
        var random = SplitMix64(state: environment["CUSTODIAN_PROPERTY_SEED"].flatMap { UInt64($0) } ?? 0xC057_0D1A)
        let agent = try #require(Address(eip55: Self.participants[0]))
        var allowed = 0
        for caseIndex in 0..<count {
            // A session of 2 or 3 participants, funded in micro-usdc.
            let size = Int.random(in: 2...3, using: &random)
            let members = Array(Self.participants.prefix(size))
            let funding = members.map { _ in Int64.random(in: 0...200, using: &random) * 500_000 }
            let total = funding.reduce(0, +)
            let weights = [100] + Array(repeating: 0, count: size - 1)
            let createAllocations = zip(members, funding).map {
                "{\"participant\":\"\($0)\",\"asset\":\"usdc\",\"amount\":\"\(Self.text($1, extraDigit: false))\"}"
            }.joined(separator: ",")
            let create =
                "[1,\"create_app_session\",{\"definition\":{\"application\":\"a\",\"protocol\":\"NitroRPC/0.4\","
                + "\"participants\":[\(members.map { "\"\($0)\"" }.joined(separator: ","))],\"weights\":\(weights),"
                + "\"quorum\":100,\"challenge\":0,\"nonce\":\(caseIndex + 1)},\"allocations\":[\(createAllocations)]},1]"
            let createRequest = try NitroRPCv0Reader().read(Array(create.utf8)).get()
            var open = Policy(assets: ["usdc": Policy.AssetRule(decimals: 6)])
            open.maxAgeMs = .max
            guard case .create(let definition, _, _) = createRequest.body,
                case .allow(let created) = open.evaluate(createRequest, state: LedgerState(), agent: agent, nowMs: 1)
            else {
                Issue.record("case \(caseIndex): the create was refused")
                return
            }
            var state = LedgerState()
            state.apply(created, atMs: 1)

            // A close: usually a complete redistribution, sometimes broken in one of several ways.
            var entries: [(participant: String, micro: Int64, extraDigit: Bool)] = []
            var remaining = total
            for (index, member) in members.enumerated() {
                let share = index == members.count - 1 ? remaining : Int64.random(in: 0...remaining, using: &random)
                remaining -= share
                entries.append((member, share, false))
            }
            switch Int.random(in: 0..<10, using: &random) {
            case 0: entries[0].micro += 1  // one micro-unit over
            case 1: entries.removeLast()  // a participant missing
            case 2: entries.append((Self.stranger, 0, false))  // a stranger (paid nothing)
            case 3: entries.append(entries[0])  // a duplicate
            case 4: entries[0].extraDigit = true  // seven fractional digits
            default: break
            }
            entries.shuffle(using: &random)

            // Limits: random, or exactly at the boundary of this close, or one micro-unit below it.
            let largest = entries.map(\.micro).max() ?? 0
            let ownShare = entries.filter { $0.participant == members[0] }.reduce(Int64(0)) { $0 + $1.micro }
            let lossHere = max(funding[0] - ownShare, 0)
            func limit(_ boundary: Int64, _ random: inout SplitMix64) -> Int64 {
                switch Int.random(in: 0..<4, using: &random) {
                case 0: boundary
                case 1: max(boundary - 1, 0)
                default: Int64.random(in: 0...400, using: &random) * 500_000
                }
            }
            let cap = limit(largest, &random)
            let maxLoss = limit(lossHere, &random)
            var policy = Policy(assets: ["usdc": Policy.AssetRule(decimals: 6)])
            policy.maxAgeMs = .max
            policy.assets["usdc"]?.maxAllocation = Amount(Self.text(cap, extraDigit: false))
            policy.assets["usdc"]?.maxOwnLoss = Amount(Self.text(maxLoss, extraDigit: false))

            // The oracle, in integers.
            let sum = entries.reduce(Int64(0)) { $0 + $1.micro * 10 + ($1.extraDigit ? 1 : 0) }
            let listed = entries.map(\.participant)
            let own = entries.filter { $0.participant == members[0] }.reduce(Int64(0)) { $0 + $1.micro }
            let heldAny = total != 0
            let oracle =
                sum == total * 10
                && listed.allSatisfy { members.contains($0) }
                && (!heldAny || members.allSatisfy { listed.contains($0) })
                && Set(listed).count == listed.count
                && entries.allSatisfy { !$0.extraDigit }
                && entries.allSatisfy { $0.micro <= cap }
                && funding[0] - own <= maxLoss

            let allocations = entries.map {
                "{\"participant\":\"\($0.participant)\",\"asset\":\"usdc\",\"amount\":\"\(Self.text($0.micro, extraDigit: $0.extraDigit))\"}"
            }.joined(separator: ",")
            let close =
                "[2,\"close_app_session\",{\"app_session_id\":\"\(definition.appSessionID)\",\"allocations\":[\(allocations)]},1]"
            let request = try NitroRPCv0Reader().read(Array(close.utf8)).get()
            let decision = policy.evaluate(request, state: state, agent: agent, nowMs: 1)
            let custodian: Bool
            switch decision {
            case .allow: custodian = true
            case .deny: custodian = false
            }
            #expect(custodian == oracle, "case \(caseIndex): custodian \(decision), oracle \(oracle): \(close)")
            if oracle { allowed += 1 }
        }
        // Both outcomes are exercised.
        #expect(allowed > count / 10 && allowed < count * 9 / 10, "\(allowed) of \(count) allowed")
    }
}
