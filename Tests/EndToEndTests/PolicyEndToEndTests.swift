import CustodianTestSupport
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Builds NitroRPC v0 messages with the current clock, as a client would.
enum Messages {
    static let a = "0xFdEc8F58fA4b3bf07DD11eAF4c562Ee674e2C638"
    static let b = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"

    static func nowMs() -> UInt64 { UInt64(Date().timeIntervalSince1970 * 1000) }

    static func definition(nonce: UInt64) -> String {
        "{\"application\":\"chess\",\"protocol\":\"NitroRPC/0.4\",\"participants\":[\"\(a)\",\"\(b)\"],"
            + "\"weights\":[50,50],\"quorum\":100,\"challenge\":86400,\"nonce\":\(nonce)}"
    }

    static func allocations(_ amountA: String, _ amountB: String) -> String {
        "[{\"participant\":\"\(a)\",\"asset\":\"usdc\",\"amount\":\"\(amountA)\"},"
            + "{\"participant\":\"\(b)\",\"asset\":\"usdc\",\"amount\":\"\(amountB)\"}]"
    }

    static func create(nonce: UInt64, _ amountA: String = "100", _ amountB: String = "50") -> String {
        "{\"req\":[1,\"create_app_session\",{\"definition\":\(definition(nonce: nonce)),\"allocations\":"
            + "\(allocations(amountA, amountB))},\(nowMs())],\"sig\":[]}"
    }

    static func close(id: String, _ amountA: String, _ amountB: String) -> String {
        "{\"req\":[2,\"close_app_session\",{\"app_session_id\":\"\(id)\",\"allocations\":"
            + "\(allocations(amountA, amountB))},\(nowMs())],\"sig\":[]}"
    }
}

@Suite("Policies in a running agent: reload, velocity across restarts, dry runs", .serialized)
struct PolicyEndToEndTests {
    static func policy(methods: String = "\"create_app_session\", \"submit_app_state\", \"close_app_session\"")
        -> String
    {
        """
        version = 1

        [requests]
        methods = [\(methods)]

        [sessions]

        [assets.usdc]
        decimals = 6

        [counterparties]
        allow = []

        [velocity]
        window_s = 86400
        max_own_loss = { usdc = "40" }

        """
    }

    static func waitFor(_ what: String, _ condition: () throws -> Bool) throws {
        let deadline = Date().addingTimeInterval(15)
        while Date() < deadline {
            if try condition() { return }
            Thread.sleep(forTimeInterval: 0.05)
        }
        Issue.record("timed out waiting for \(what)")
    }

    static func status(_ socket: String) throws -> [String: Any] {
        let output = try Harness.custodian(["status", "--socket", socket])
        return try JSONSerialization.jsonObject(with: Data(output.stdout.utf8)) as? [String: Any] ?? [:]
    }

    /// The app_session_id the agent computes for a create, from a dry run.
    static func sessionID(_ create: String, policy: String, in workspace: Workspace) throws -> String {
        let message = try workspace.write("id-\(UUID().uuidString)", create)
        let output = try Harness.custodian([
            "policy", "test", policy, "--message", message, "--address", Messages.a,
        ])
        let object = try JSONSerialization.jsonObject(with: Data(output.stdout.utf8)) as? [String: Any]
        return try #require(object?["app_session_id"] as? String)
    }

    @Test("SIGHUP: a valid policy replaces the old one and is audited with both hashes; an invalid one is refused")
    func reload() throws {
        let workspace = try Workspace()
        let (keyFile, passphrase) = try EndToEndTests.importKeyA(workspace)
        let policyFile = try workspace.write("policy.toml", Self.policy())
        let stateDir = workspace.path + "/state"
        let socket = workspace.path + "/agent.sock"
        let agent = try RunningAgent(
            arguments: [
                "--key-file", keyFile, "--policy", policyFile, "--state-dir", stateDir, "--passphrase-file", passphrase,
            ], socket: socket, logFile: workspace.path + "/agent.log")
        let first = try #require(try Self.status(socket)["policy_hash"] as? String)
        #expect(try Harness.custodian(["policy", "check", policyFile]).stdout == first + "\n")

        // A valid new policy that no longer allows closes.
        _ = try workspace.write("policy.toml", Self.policy(methods: "\"create_app_session\""))
        let second = try Harness.custodian(["policy", "check", policyFile]).stdout.trimmingCharacters(in: .newlines)
        #expect(second != first)
        kill(agent.process.processIdentifier, SIGHUP)
        try Self.waitFor("the new policy") { try Self.status(socket)["policy_hash"] as? String == second }
        let create = Messages.create(nonce: Messages.nowMs())
        #expect(try EndToEndTests.sign(agent, create, in: workspace).status == 0)
        let id = try Self.sessionID(create, policy: policyFile, in: workspace)
        let refused = try EndToEndTests.sign(agent, Messages.close(id: id, "75", "75"), in: workspace)
        #expect(refused.status == 2)
        #expect(refused.stderr.contains("payload.method_not_allowed"), "\(refused.stderr)")

        // An invalid policy: the agent keeps the one in force and records the failure.
        _ = try workspace.write(
            "policy.toml",
            "version = 1\n[requests]\nmethods = [\"close_app_session\"]\n[sessions]\n[assets]\n[counterparties]\n"
                + "allow = []\n[velocity]\nwindow_s = 1\nmax_own_loss = {}\n")
        kill(agent.process.processIdentifier, SIGHUP)
        try Self.waitFor("the failed reload in the audit log") {
            (try? String(contentsOfFile: stateDir + "/audit.log", encoding: .utf8))?.contains("policy_reload_failed")
                ?? false
        }
        #expect(try Self.status(socket)["policy_hash"] as? String == second)
        let still = try EndToEndTests.sign(agent, Messages.close(id: id, "75", "75"), in: workspace)
        #expect(still.stderr.contains("payload.method_not_allowed"), "\(still.stderr)")
        #expect(agent.stop() == 0)

        let records = try EndToEndTests.auditRecords(stateDir)
        let reloaded = records.first { $0["event"] as? String == "policy_reloaded" }
        #expect(reloaded?["policy_hash"] as? String == second)
        #expect(reloaded?["previous_policy_hash"] as? String == first)
        let failed = records.first { $0["event"] as? String == "policy_reload_failed" }
        #expect(failed?["policy_hash"] as? String == second)
        #expect((failed?["error"] as? String)?.contains("assets") == true)
    }

    @Test("the velocity window survives a restart; policy test reads a stopped agent's state and names the figures")
    func velocityAcrossRestart() throws {
        let workspace = try Workspace()
        let (keyFile, passphrase) = try EndToEndTests.importKeyA(workspace)
        let policyFile = try workspace.write("policy.toml", Self.policy())
        let stateDir = workspace.path + "/state"
        let socket = workspace.path + "/agent.sock"
        let arguments = [
            "--key-file", keyFile, "--policy", policyFile, "--state-dir", stateDir, "--passphrase-file", passphrase,
        ]
        var agent = try RunningAgent(arguments: arguments, socket: socket, logFile: workspace.path + "/agent1.log")
        let nonce = Messages.nowMs()
        let first = Messages.create(nonce: nonce)
        #expect(try EndToEndTests.sign(agent, first, in: workspace).status == 0)
        let firstID = try Self.sessionID(first, policy: policyFile, in: workspace)
        // A loses 20 of its 100.
        #expect(try EndToEndTests.sign(agent, Messages.close(id: firstID, "80", "70"), in: workspace).status == 0)
        #expect(agent.stop() == 0)

        agent = try RunningAgent(arguments: arguments, socket: socket, logFile: workspace.path + "/agent2.log")
        let second = Messages.create(nonce: nonce + 1)
        #expect(try EndToEndTests.sign(agent, second, in: workspace).status == 0)
        let secondID = try Self.sessionID(second, policy: policyFile, in: workspace)
        // 20 + 20.000001 > 40: refused although each close alone is within every per-session cap.
        let over = try EndToEndTests.sign(agent, Messages.close(id: secondID, "79.999999", "70.000001"), in: workspace)
        #expect(over.status == 2)
        #expect(over.stderr.contains("policy.velocity_exceeded"), "\(over.stderr)")
        #expect(agent.stop() == 0)

        // The dry run, on the stopped agent's state: the rule and the figures; nothing is signed or written.
        let logBefore = try Data(contentsOf: URL(fileURLWithPath: stateDir + "/audit.log"))
        let message = try workspace.write("over.json", Messages.close(id: secondID, "79.999999", "70.000001"))
        let dry = try Harness.custodian(["policy", "test", policyFile, "--message", message, "--state-dir", stateDir])
        #expect(dry.status == 2)
        let object = try JSONSerialization.jsonObject(with: Data(dry.stdout.utf8)) as? [String: Any]
        #expect(object?["decision"] as? String == "deny")
        #expect(object?["reason"] as? String == "policy.velocity_exceeded")
        let figures = object?["figures"] as? [String: String]
        #expect(figures?["cap"] == "40")
        #expect(figures?["prior_losses"] == "20")
        #expect(figures?["loss"] == "20.000001")
        // Explained by the states that make the figure up: the first session's close, which committed 20.
        let explanation = object?["explanation"] as? [[String: Any]] ?? []
        #expect(explanation.count == 1)
        #expect(explanation.first?["app_session_id"] as? String == firstID)
        #expect(explanation.first?["version"] as? Int == 2)
        #expect(explanation.first?["committed_loss_increase"] as? String == "20")
        let atCap = try workspace.write("at-cap.json", Messages.close(id: secondID, "80", "70"))
        let allowed = try Harness.custodian(["policy", "test", policyFile, "--message", atCap, "--state-dir", stateDir])
        #expect(allowed.status == 0, "\(allowed.stdout)")
        #expect(allowed.stdout.contains("\"decision\":\"allow\""))
        #expect(try Data(contentsOf: URL(fileURLWithPath: stateDir + "/audit.log")) == logBefore)
    }
}
