import CustodianTestSupport
import Foundation
import Testing

/// `custodian ledger export` and `ledger import` (CONTRACT §2): a ledger moves to a fresh state directory on another
/// host, and the agent there refuses what the first agent already signed differently and accepts identical retries.
@Suite("Ledger export and import", .serialized)
struct LedgerInterchangeTests {
    static func startAgent(_ workspace: Workspace, stateDir: String, key: (String, String), log: String) throws
        -> RunningAgent
    {
        let policy = try workspace.write("policy-\(UUID().uuidString).toml", V1EndToEndTests.policy)
        let arguments = [
            "--key-file", key.0, "--policy", policy, "--state-dir", stateDir, "--passphrase-file", key.1,
        ]
        return try RunningAgent(
            arguments: arguments, socket: workspace.path + "/\(log).sock", logFile: workspace.path + "/\(log).log")
    }

    static func lastSessionID(_ stateDir: String) throws -> String {
        let records = try EndToEndTests.auditRecords(stateDir)
        return try #require(records.last { $0["event"] as? String == "sign" }?["app_session_id"] as? String)
    }

    @Test("export from one agent, import into a fresh state directory: conflicts refused, identical retries signed")
    func moveToAnotherHost() throws {
        let workspace = try Workspace()
        let key = try EndToEndTests.importKeyA(workspace)
        let first = workspace.path + "/first"
        var agent = try Self.startAgent(workspace, stateDir: first, key: key, log: "first")
        let nonce = Messages.nowMs()
        // A v0 session created and closed, and a v1 session funded and played to version 4.
        #expect(try EndToEndTests.sign(agent, Messages.create(nonce: nonce, "100", "50"), in: workspace).status == 0)
        let v0 = try Self.lastSessionID(first)
        let close = Messages.close(id: v0, "90", "60")
        let closed = try EndToEndTests.sign(agent, close, in: workspace)
        #expect(closed.status == 0, "\(closed.stderr)")
        #expect(try V1EndToEndTests.sign(agent, V1Messages.create(nonce: nonce), in: workspace).status == 0)
        let v1 = try Self.lastSessionID(first)
        #expect(
            try V1EndToEndTests.sign(agent, V1Messages.update(id: v1, intent: 1, version: 2, "100", nil), in: workspace)
                .status == 0)
        #expect(
            try V1EndToEndTests.sign(
                agent, V1Messages.update(id: v1, intent: 1, version: 3, "100", "50"), in: workspace
            ).status == 0)
        let operate = V1Messages.update(id: v1, intent: 0, version: 4, "80", "70")
        let operated = try V1EndToEndTests.sign(agent, operate, in: workspace)
        #expect(operated.status == 0, "\(operated.stderr)")
        #expect(agent.stop() == 0)

        let file = workspace.path + "/ledger.json"
        let export = try Harness.custodian(["ledger", "export", "--state-dir", first, "-o", file])
        #expect(export.status == 0, "\(export.stderr)")
        let mode = try FileManager.default.attributesOfItem(atPath: file)[.posixPermissions] as? Int
        #expect(mode == 0o600, "the ledger names counterparties and positions: private")
        let document = try #require(
            try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: file))) as? [String: Any])
        #expect(document["format"] as? String == "custodian-ledger-interchange")
        #expect(document["agent"] as? String == Messages.a)
        let sessions = try #require(document["sessions"] as? [[String: Any]])
        #expect(sessions.count == 2)
        #expect(Set(sessions.compactMap { $0["protocol"] as? String }) == ["nitrorpc/v0", "nitrolite/v1"])
        #expect(sessions.first { $0["app_session_id"] as? String == v0 }?["status"] as? String == "closed")

        // The second host: a fresh state directory, the same key.
        let second = workspace.path + "/second"
        let imported = try Harness.custodian(["ledger", "import", file, "--state-dir", second])
        #expect(imported.status == 0, "\(imported.stderr)")
        #expect(imported.stdout.contains("imported 2 session(s)"), "\(imported.stdout)")
        let again = try Harness.custodian(["ledger", "import", file, "--state-dir", second])
        #expect(again.stdout.contains("imported 0 session(s)") && again.stdout.contains("2 already there"))
        let imports = try EndToEndTests.auditRecords(second).filter { $0["action"] as? String == "ledger_import" }
        #expect(Set(imports.compactMap { $0["protocol"] as? String }) == ["nitrorpc/v0", "nitrolite/v1"])
        let verify = try Harness.custodian(["audit", "verify", second])
        #expect(verify.status == 0, "\(verify.stderr)")

        agent = try Self.startAgent(workspace, stateDir: second, key: key, log: "second")
        let otherClose = try EndToEndTests.sign(agent, Messages.close(id: v0, "100", "50"), in: workspace)
        #expect(otherClose.status == 2)
        #expect(otherClose.stderr.contains("policy.session_closed"), "\(otherClose.stderr)")
        let retry = try EndToEndTests.sign(agent, close, in: workspace)
        #expect(retry.status == 0, "\(retry.stderr)")
        #expect(retry.stdout == closed.stdout, "the identical close, signed again: the same signature (RFC 6979)")
        let otherOperate = try V1EndToEndTests.sign(
            agent, V1Messages.update(id: v1, intent: 0, version: 4, "70", "80"), in: workspace)
        #expect(otherOperate.stderr.contains("policy.version_conflict"), "\(otherOperate.stderr)")
        let operateRetry = try V1EndToEndTests.sign(agent, operate, in: workspace)
        #expect(operateRetry.status == 0, "\(operateRetry.stderr)")
        #expect(try V1EndToEndTests.quorumSig(operateRetry) == (try V1EndToEndTests.quorumSig(operated)))
        #expect(
            try V1EndToEndTests.sign(agent, V1Messages.update(id: v1, intent: 3, version: 5, "80", "70"), in: workspace)
                .status == 0)
        #expect(agent.stop() == 0)

        // A file that differs from what the directory holds: refused, nothing written.
        let text = try String(contentsOfFile: file, encoding: .utf8)
        let edited = try workspace.write(
            "edited.json", text.replacingOccurrences(of: #""amount":"90""#, with: #""amount":"91""#))
        let before = try Data(contentsOf: URL(fileURLWithPath: second + "/audit.log"))
        let conflict = try Harness.custodian(["ledger", "import", edited, "--state-dir", second])
        #expect(conflict.status == 2)
        #expect(conflict.stderr.contains("differ") && conflict.stderr.contains(v0), "\(conflict.stderr)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: second + "/audit.log")) == before)
        // A file whose session id is not its definition's, or with a key the format does not define.
        let forged = try workspace.write("forged.json", text.replacingOccurrences(of: v1, with: v0))
        let refusedForged = try Harness.custodian([
            "ledger", "import", forged, "--state-dir", workspace.path + "/third",
        ])
        #expect(refusedForged.status == 2, "\(refusedForged.stderr)")
        let unknown = try workspace.write(
            "unknown.json", text.replacingOccurrences(of: #""format""#, with: #""extra":1,"format""#))
        let refusedUnknown = try Harness.custodian([
            "ledger", "import", unknown, "--state-dir", workspace.path + "/third",
        ])
        #expect(refusedUnknown.status == 2 && refusedUnknown.stderr.contains("unknown key"), "\(refusedUnknown.stderr)")

        // Another key's state directory does not take A's ledger.
        let otherKey = workspace.path + "/other.sealed"
        let created = try Harness.custodian([
            "key", "new", "--key-file", otherKey, "--passphrase-file", key.1, "--kdf", "interactive",
        ])
        #expect(created.status == 0, "\(created.stderr)")
        let fourth = workspace.path + "/fourth"
        let other = try Self.startAgent(workspace, stateDir: fourth, key: (otherKey, key.1), log: "fourth")
        #expect(other.stop() == 0)
        let wrongAgent = try Harness.custodian(["ledger", "import", file, "--state-dir", fourth])
        #expect(wrongAgent.status == 2)
        #expect(wrongAgent.stderr.contains("a ledger belongs to one key"), "\(wrongAgent.stderr)")
        // And an agent of another key refuses a directory holding A's imported ledger.
        let refusedStart = try Harness.custodian([
            "serve", "--socket", workspace.path + "/x.sock", "--key-file", otherKey, "--policy",
            try workspace.write("p.toml", V1EndToEndTests.policy), "--state-dir", second, "--passphrase-file", key.1,
        ])
        #expect(refusedStart.status == 1, "\(refusedStart.stderr)")
        #expect(refusedStart.stderr.contains("belongs to \(Messages.a), not to this key"), "\(refusedStart.stderr)")
    }
}
