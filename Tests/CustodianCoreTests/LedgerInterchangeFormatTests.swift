import CustodianCore
import CustodianTestSupport
import Foundation
import Testing

/// The interchange format round-trips every field of a ledger of both protocols, and reads strictly.
@Suite("Ledger interchange format")
struct LedgerInterchangeFormatTests {
    static let a = "0xFdEc8F58fA4b3bf07DD11eAF4c562Ee674e2C638"
    static let b = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"

    /// A ledger of a closed v0 session (with a loss) and a v1 session played to version 4.
    static func ledger() throws -> LedgerState {
        var policy = Policy(maxAgeMs: .max, maxFutureMs: .max)
        policy.assets = ["usdc": Policy.AssetRule(decimals: 6)]
        let agent = try #require(Address(eip55: a))
        func pair(_ x: String, _ y: String) -> String {
            #"[{"participant":"\#(a)","asset":"usdc","amount":"\#(x)"},{"participant":"\#(b)","asset":"usdc","amount":"\#(y)"}]"#
        }
        func update(_ id: String, _ intent: Int, _ version: Int, _ allocations: String) -> String {
            let method = intent == 1 ? "submit_deposit_state" : "submit_app_state"
            let extra = intent == 1 ? #","user_state":{}"# : ""
            return #"[1,\#(version),"app_sessions.v1.\#(method)",{"app_state_update":{"app_session_id":"\#(id)","#
                + #""intent":\#(intent),"version":"\#(version)","allocations":\#(allocations),"session_data":"x"}"#
                + #"\#(extra),"quorum_sigs":[]},1733000000000]"#
        }
        let v1Create =
            #"[1,1,"app_sessions.v1.create_app_session",{"definition":{"application_id":"chess","participants":[{"wallet_address":"\#(a)","signature_weight":1},{"wallet_address":"\#(b)","signature_weight":1}],"quorum":2,"nonce":"1733000000000"},"session_data":"","quorum_sigs":[]},1733000000000]"#
        let v0Create =
            #"[1,"create_app_session",{"definition":{"application":"chess","protocol":"NitroRPC/0.4","participants":["\#(a)","\#(b)"],"weights":[50,50],"quorum":100,"challenge":86400,"nonce":1733000000000},"allocations":\#(pair("100", "50"))},1733000000000]"#
        var state = LedgerState()
        var ids: [String] = []
        for message in [v0Create, v1Create] {
            let request = try RequestReader().read(Array(message.utf8)).get()
            guard
                case .allow(let effect) = policy.evaluate(request, state: state, agent: agent, nowMs: 1_733_000_000_000)
            else { throw VectorError("setup refused") }
            state.apply(effect, atMs: 1_733_000_000_000)
            ids.append(try #require(effect.session?.appSessionID))
        }
        let v0Close =
            #"[2,"close_app_session",{"app_session_id":"\#(ids[0])","allocations":\#(pair("60.5", "89.5"))},1733000000000]"#
        let steps = [
            v0Close, update(ids[1], 1, 2, #"[{"participant":"\#(a)","asset":"usdc","amount":"100"}]"#),
            update(ids[1], 1, 3, pair("100", "50")), update(ids[1], 0, 4, pair("70", "80")),
        ]
        for (index, message) in steps.enumerated() {
            let request = try RequestReader().read(Array(message.utf8)).get()
            let now = 1_733_000_001_000 + UInt64(index)
            guard case .allow(let effect) = policy.evaluate(request, state: state, agent: agent, nowMs: now) else {
                throw VectorError("step \(index) refused")
            }
            state.apply(effect, atMs: now)
        }
        return state
    }

    @Test func roundTrip() throws {
        let state = try Self.ledger()
        #expect(state.sessions.count == 2 && state.losses.count == 2)
        let agent = try #require(Address(eip55: Self.a))
        let bytes = LedgerInterchange.encode(
            state, agent: agent, exportedAt: "2026-11-30T00:00:00.000Z", auditSeq: 9, auditHead: "ab")
        let document = try LedgerInterchange.decode(bytes).get()
        #expect(document.agent == agent && document.auditSeq == 9 && document.auditHead == "ab")
        #expect(document.entries.count == 2)
        for entry in document.entries {
            #expect(state.session(entry.session.appSessionID) == entry.session)
            #expect(state.losses.filter { $0.sessionID == entry.session.appSessionID } == entry.losses)
        }
        // Python's reader agrees it is JSON, and it names both protocols.
        let object = try JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any]
        let protocols = (object?["sessions"] as? [[String: Any]])?.compactMap { $0["protocol"] as? String }
        #expect(Set(protocols ?? []) == ["nitrorpc/v0", "nitrolite/v1"])
    }

    @Test("refused: unknown and repeated keys, another format or version, an id that is not its definition's")
    func strict() throws {
        let state = try Self.ledger()
        let agent = try #require(Address(eip55: Self.a))
        let text = String(
            decoding: LedgerInterchange.encode(state, agent: agent, exportedAt: "t", auditSeq: 1, auditHead: "h"),
            as: UTF8.self)
        let id = try #require(state.sessions.keys.sorted().first)
        let other = try #require(state.sessions.keys.sorted().last)
        let cases: [(String, String)] = [
            (text.replacingOccurrences(of: #""status""#, with: #""Status""#), "unknown key"),
            (text.replacingOccurrences(of: #""version":1,"#, with: #""version":1,"version":1,"#), "appears twice"),
            (text.replacingOccurrences(of: #""version":1,"#, with: #""version":2,"#), "version is not 1"),
            (text.replacingOccurrences(of: "custodian-ledger-interchange", with: "eip-3076"), "format"),
            (text.replacingOccurrences(of: other, with: id), "is not its definition's"),
            (text.replacingOccurrences(of: #""amount":"70""#, with: #""amount":"070""#), "not a decimal string"),
            (text.replacingOccurrences(of: Self.b, with: Self.b.lowercased()), "EIP-55"),
            (
                text.replacingOccurrences(
                    of: #""signature_weight":1"#, with: #""signature_weight":99999999999999999999"#),
                "signature_weight"
            ),
            (text.replacingOccurrences(of: #""signature_weight":1"#, with: #""signature_weight":256"#), "not a uint8"),
        ]
        for (bytes, why) in cases {
            switch LedgerInterchange.decode(Array(bytes.utf8)) {
            case .success: Issue.record("read: \(why)")
            case .failure(let error): #expect(error.description.contains(why), "\(error) for \(why)")
            }
        }
    }
}
