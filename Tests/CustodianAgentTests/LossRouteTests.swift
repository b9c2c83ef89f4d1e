import CustodianAgent
import CustodianCore
import Foundation
import Testing

/// The routes money left by before loss was defined for every signed state (issue: "Every path money leaves by is
/// capped"), against the shipped default policy: at most 1000 usdc per session and 5000 usdc a day.
@Suite("Every path money leaves by is capped")
struct LossRouteTests {
    static let a = "0xFdEc8F58fA4b3bf07DD11eAF4c562Ee674e2C638"
    static let p = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"

    static func definition(_ nonce: Int) -> String {
        "{\"application\":\"chess\",\"protocol\":\"NitroRPC/0.4\",\"participants\":[\"\(a)\",\"\(p)\"],"
            + "\"weights\":[50,50],\"quorum\":100,\"challenge\":86400,\"nonce\":\(nonce)}"
    }

    static func allocations(_ amountA: String, _ amountP: String) -> String {
        "[{\"participant\":\"\(a)\",\"asset\":\"usdc\",\"amount\":\"\(amountA)\"},"
            + "{\"participant\":\"\(p)\",\"asset\":\"usdc\",\"amount\":\"\(amountP)\"}]"
    }

    /// Evaluates requests in order against one ledger, applying the allowed ones.
    struct Agent {
        let policy: Policy
        let address: Address
        var state = LedgerState()
        var now: UInt64 = 1_800_000_000_000
        var id = 1

        init() throws {
            let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
                .deletingLastPathComponent().appendingPathComponent("policies/default.toml").path
            policy = try PolicyFile.load(path: path).policy
            address = try #require(Address(eip55: LossRouteTests.a))
        }

        /// The reason it was refused for, or nil if signed; and the session id of a create.
        mutating func sign(_ method: String, _ params: String) throws -> (ReasonCode?, String?) {
            now += 1000
            id += 1
            let message = "{\"req\":[\(id),\"\(method)\",\(params),\(now)],\"sig\":[]}"
            let request = try NitroRPCv0Reader().read(Array(message.utf8)).get()
            switch policy.evaluate(request, state: state, agent: address, nowMs: now) {
            case .deny(let denial): return (denial.reason, nil)
            case .allow(let effect):
                state.apply(effect, atMs: now)
                return (nil, effect.session?.appSessionID)
            }
        }

        mutating func create(_ nonce: Int) throws -> String? {
            let (reason, id) = try sign(
                "create_app_session",
                "{\"definition\":\(LossRouteTests.definition(nonce)),\"allocations\":\(LossRouteTests.allocations("1000", "0"))}"
            )
            #expect(reason == nil, "create \(nonce): \(String(describing: reason))")
            return id
        }

        mutating func submit(_ id: String, _ intent: String, _ version: Int, _ amountA: String, _ amountP: String)
            throws -> ReasonCode?
        {
            try sign(
                "submit_app_state",
                "{\"app_session_id\":\"\(id)\",\"intent\":\"\(intent)\",\"version\":\(version),"
                    + "\"allocations\":\(LossRouteTests.allocations(amountA, amountP))}"
            ).0
        }

        mutating func close(_ id: String, _ amountA: String, _ amountP: String) throws -> ReasonCode? {
            try sign(
                "close_app_session",
                "{\"app_session_id\":\"\(id)\",\"allocations\":\(LossRouteTests.allocations(amountA, amountP))}"
            ).0
        }
    }

    @Test("operate-then-withdraw is refused at the state that passes the daily cap, at the same session as closes")
    func operateThenWithdraw() throws {
        // The close route: each session created A 1000 / P 0 and closed A 0 / P 1000.
        var closes = try Agent()
        var closeRefusedAt: Int?
        for session in 1...6 {
            guard let id = try closes.create(session) else { continue }
            if let reason = try closes.close(id, "0", "1000") {
                #expect(reason == .velocityExceeded)
                closeRefusedAt = session
                break
            }
        }
        // The side door: operate v2 A 0 / P 1000, then P withdraws it (v3 A 0 / P 0).
        var operates = try Agent()
        var operateRefusedAt: Int?
        var drained: [String] = []
        for session in 1...6 {
            guard let id = try operates.create(100 + session) else { continue }
            if let reason = try operates.submit(id, "operate", 2, "0", "1000") {
                #expect(reason == .velocityExceeded)
                operateRefusedAt = session
                break
            }
            #expect(try operates.submit(id, "withdraw", 3, "0", "0") == nil)
            drained.append(id)
        }
        #expect(closeRefusedAt == 6)
        #expect(operateRefusedAt == closeRefusedAt, "the same session count as the close route")
        // The drained sessions' closes lose nothing more than their operates committed: signed, and the window
        // still holds 5000, so a further loss anywhere is refused.
        for id in drained { #expect(try operates.close(id, "0", "0") == nil) }
        let fresh = try #require(try operates.create(200))
        #expect(try operates.submit(fresh, "operate", 2, "999.999999", "0.000001") == .velocityExceeded)
    }
}
