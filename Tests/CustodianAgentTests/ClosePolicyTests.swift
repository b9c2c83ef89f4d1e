import CustodianAgent
import CustodianCore
import CustodianCrypto
import CustodianTestSupport
import Foundation
import Testing

func signingKey(hex: String) throws -> SigningKey {
    try SigningKey(secret: try SecureBytes(copying: try VectorFiles.bytes(hex: hex)))
}

let keyAHex = "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01ac362b318"

@Suite("Close decisions against vectors/close_policy")
struct ClosePolicyTests {
    @Test("the folder holds the 12 cases") func folderIsComplete() {
        #expect(VectorFiles.names("close_policy").count == 12)
    }

    @Test(arguments: VectorFiles.names("close_policy"))
    func decision(_ name: String) throws {
        let vector = try VectorFiles.load("close_policy", name)
        let policy = try PolicyFile.parse(Array(try #require(vector["policy_toml"] as? String).utf8)).policy
        let agentText = try #require(vector["agent_address"] as? String)
        let agent = try #require(Address(eip55: agentText))
        let session = try #require(vector["session"] as? [String: Any])
        let reader = NitroRPCv0Reader()

        // Establish the session the way the agent does: by signing its create.
        var state = LedgerState()
        let create = try reader.read(Array(try #require(session["create_message"] as? String).utf8)).get()
        let createNow = try #require((session["create_now_ms"] as? NSNumber)?.uint64Value)
        guard case .allow(let created) = policy.evaluate(create, state: state, agent: agent, nowMs: createNow) else {
            Issue.record("the create was refused")
            return
        }
        state.apply(created, atMs: createNow)
        let sessionID = try #require(session["app_session_id"] as? String)
        let tracked = try #require(state.sessions[sessionID])
        let totals = try #require(session["totals"] as? [String: String])
        #expect(tracked.totals.count == totals.count)
        for (asset, total) in totals { #expect(tracked.totals[ExactString(asset)] == Amount(total)) }

        let now = try #require((vector["now_ms"] as? NSNumber)?.uint64Value)
        let request = try reader.read(Array(try #require(vector["message"] as? String).utf8)).get()
        let decision = policy.evaluate(request, state: state, agent: agent, nowMs: now)
        switch (vector["expect"] as? String, decision) {
        case ("allow", .allow):
            #expect(Hex.encode(request.digest, prefixed: true) == vector["request_hash"] as? String)
            let key = try signingKey(hex: keyAHex)
            #expect(
                Hex.encode(try key.sign(digest: request.digest), prefixed: true) == vector["signature_a"] as? String)
        case ("reject", .deny(let denial)):
            #expect(denial.reason.rawValue == vector["reason"] as? String, "\(denial.detail)")
        case (let expected, let got):
            Issue.record("\(name): expected \(expected ?? "?"), got \(got)")
        }
    }
}
