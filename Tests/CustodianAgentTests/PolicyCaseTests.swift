import CustodianAgent
import CustodianCore
import CustodianTestSupport
import Foundation
import Testing

/// The table-driven policy suite: Tests/PolicyCases, one case per file, written by its generate.py with the
/// expectation stated by hand in each.
@Suite("Policy cases (Tests/PolicyCases)")
struct PolicyCaseTests {
    static let folder = "../PolicyCases"

    static func cases() -> [String] { VectorFiles.names(folder) }

    @Test("every reason code has a refused case and an allowed case at its boundary")
    func coverage() {
        let names = Self.cases()
        #expect(names.count == 126, "Tests/PolicyCases holds \(names.count) cases; generate.py writes 126")
        // Channel-state reasons have their own cases (ChannelTransitionTests, the v1-channels vectors).
        for reason in ReasonCode.allCases
        where reason != .auditUnavailable && reason != .ledgerUnavailable && !ReasonCode.channelStates.contains(reason)
        {
            #expect(names.contains { $0.hasPrefix(reason.rawValue + "__reject_") }, "no refused case for \(reason)")
            #expect(names.contains { $0.hasPrefix(reason.rawValue + "__allow_") }, "no allowed case for \(reason)")
        }
    }

    @Test(arguments: cases())
    func decision(_ name: String) throws {
        let vector = try VectorFiles.load(Self.folder, name)
        let policy = try PolicyFile.parse(Array(try #require(vector["policy_toml"] as? String).utf8)).policy
        try Self.check(vector, policy: policy, name: name)
    }

    /// Runs a case (setup steps that must be allowed, then the message) and checks its expectation.
    static func check(_ vector: [String: Any], policy: Policy, name: String) throws {
        let agentText = try #require(vector["agent_address"] as? String)
        let agent = try #require(Address(eip55: agentText))
        let reader = RequestReader()
        var state = LedgerState()
        for (index, step) in (vector["setup"] as? [[String: Any]] ?? []).enumerated() {
            let message = try #require(step["message"] as? String)
            let now = try #require((step["now_ms"] as? NSNumber)?.uint64Value)
            let request = try reader.read(Array(message.utf8)).get()
            guard case .allow(let effect) = policy.evaluate(request, state: state, agent: agent, nowMs: now) else {
                Issue.record("\(name): setup step \(index) was refused")
                return
            }
            state.apply(effect, atMs: now)
        }
        let message = try #require(vector["message"] as? String)
        let now = try #require((vector["now_ms"] as? NSNumber)?.uint64Value)
        let decision: Decision
        switch reader.read(Array(message.utf8)) {
        case .failure(let denial): decision = .deny(denial)
        case .success(let request): decision = policy.evaluate(request, state: state, agent: agent, nowMs: now)
        }
        switch (vector["expect"] as? String, decision) {
        case ("allow", .allow(let effect)):
            let warnings = vector["warnings"] as? [String] ?? []
            #expect(effect.warnings.map(\.reason.rawValue) == warnings, "\(name)")
        case ("reject", .deny(let denial)):
            #expect(denial.reason.rawValue == vector["reason"] as? String, "\(name): \(denial.detail)")
            for (key, value) in vector["figures"] as? [String: String] ?? [:] {
                #expect(denial.figures.contains(Figure(key, value)), "figure \(key) = \(value) in \(denial.figures)")
            }
        case (let expected, let got):
            Issue.record("\(name): expected \(expected ?? "?"), got \(got)")
        }
    }
}
