import CustodianClient
import CustodianTestSupport
import Foundation
import Testing

/// Builds Nitrolite v1 frames (PROTOCOL-v1 §2) with the current clock, as the @yellow-org/sdk sends them.
enum V1Messages {
    static let a = Messages.a
    static let b = Messages.b

    static func definition(nonce: UInt64) -> String {
        #"{"application_id":"chess","participants":[{"wallet_address":"\#(a)","signature_weight":1},"#
            + #"{"wallet_address":"\#(b)","signature_weight":1}],"quorum":2,"nonce":"\#(nonce)"}"#
    }

    static func create(nonce: UInt64, quorumSigs: [String] = []) -> String {
        #"[1,1,"app_sessions.v1.create_app_session",{"definition":\#(definition(nonce: nonce)),"session_data":"","#
            + #""quorum_sigs":\#(list(quorumSigs))},\#(Messages.nowMs())]"#
    }

    static func list(_ signatures: [String]) -> String {
        "[" + signatures.map { "\"\($0)\"" }.joined(separator: ",") + "]"
    }

    /// An app-state update: intent 0 operate, 1 deposit, 2 withdraw, 3 close; `amounts` (A's, B's) in usdc, nil for
    /// an entry left out.
    static func update(
        id: String, intent: Int, version: Int, _ amountA: String?, _ amountB: String?, quorumSigs: [String] = []
    ) -> String {
        var allocations: [String] = []
        if let amountA { allocations.append(#"{"participant":"\#(a)","asset":"usdc","amount":"\#(amountA)"}"#) }
        if let amountB { allocations.append(#"{"participant":"\#(b)","asset":"usdc","amount":"\#(amountB)"}"#) }
        let method = intent == 1 ? "app_sessions.v1.submit_deposit_state" : "app_sessions.v1.submit_app_state"
        let userState = intent == 1 ? #","user_state":{"asset":"usdc","transition":"commit"}"# : ""
        return #"[1,\#(version),"\#(method)",{"app_state_update":{"app_session_id":"\#(id)","intent":\#(intent),"#
            + #""version":"\#(version)","allocations":[\#(allocations.joined(separator: ","))],"session_data":""}"#
            + #"\#(userState),"quorum_sigs":\#(list(quorumSigs))},\#(Messages.nowMs())]"#
    }
}

@Suite("Nitrolite v1 end to end, checked by eth-abi and eth-keys", .serialized)
struct V1EndToEndTests {
    static let policy = """
        version = 1

        [requests]
        methods = [
            "create_app_session", "submit_app_state", "close_app_session",
            "app_sessions.v1.create_app_session", "app_sessions.v1.submit_app_state",
            "app_sessions.v1.submit_deposit_state",
        ]

        [sessions]
        applications = ["chess"]

        [assets.usdc]
        decimals = 6
        max_own_funding = "1000"
        max_own_loss = "60"

        [counterparties]
        allow = []

        [velocity]
        window_s = 86400
        max_own_loss = { usdc = "45" }

        """

    /// Signs `frame` through `custodian sign`; for an allowance, checks the printed frame is the one sent with the
    /// quorum signature appended, and that eth-abi's hash of it recovers (eth-keys) to A.
    static func sign(_ agent: RunningAgent, _ frame: String, in workspace: Workspace) throws -> Harness.Output {
        let output = try EndToEndTests.sign(agent, frame, in: workspace)
        guard output.status == 0 else { return output }
        let printed = output.stdout.trimmingCharacters(in: .newlines)
        #expect(output.stdout.hasSuffix("\n") && !printed.contains("\n"), "one line")
        let file = try workspace.write("signed-\(UUID().uuidString).json", printed)
        #expect(try Harness.oracle(["v1-frame", file]) == Messages.a, "\(printed)")
        // The frame as sent, with A's quorum signature appended to quorum_sigs and nothing else changed.
        let signature = try Self.quorumSig(output)
        let marker = #""quorum_sigs":["#
        let start = try #require(frame.range(of: marker))
        let end = try #require(frame[start.upperBound...].firstIndex(of: "]"))
        let separator = end == start.upperBound ? "" : ","
        #expect(printed == String(frame[..<end]) + separator + "\"" + signature + "\"" + String(frame[end...]))
        return output
    }

    static func quorumSig(_ output: Harness.Output) throws -> String {
        let frame = try JSONSerialization.jsonObject(with: Data(output.stdout.utf8)) as? [Any]
        let payload = try #require(frame?[3] as? [String: Any])
        return try #require((payload["quorum_sigs"] as? [String])?.last)
    }

    @Test(
        "create, deposit, operate, withdraw and close through custodian sign; conflicts refused; a v0 session beside it; a restart; audit verify"
    )
    func lifecycle() throws {
        let workspace = try Workspace()
        let (keyFile, passphrase) = try EndToEndTests.importKeyA(workspace)
        let policyFile = try workspace.write("policy.toml", Self.policy)
        let stateDir = workspace.path + "/state"
        let arguments = [
            "--key-file", keyFile, "--policy", policyFile, "--state-dir", stateDir, "--passphrase-file", passphrase,
        ]
        let socket = workspace.path + "/agent.sock"
        var agent = try RunningAgent(arguments: arguments, socket: socket, logFile: workspace.path + "/agent1.log")
        let nonce = Messages.nowMs()
        let theirs = "0xa1" + String(repeating: "ab", count: 65)

        let createFrame = V1Messages.create(nonce: nonce, quorumSigs: [theirs])
        let created = try Self.sign(agent, createFrame, in: workspace)
        #expect(created.status == 0, "\(created.stderr)")
        let records = try EndToEndTests.auditRecords(stateDir).filter { $0["event"] as? String == "sign" }
        let id = try #require(records.last?["app_session_id"] as? String)
        #expect(records.last?["protocol"] as? String == "nitrolite/v1")
        #expect(records.last?["req"] as? String == createFrame, "the frame as received is what the log keeps")

        func step(_ intent: Int, _ version: Int, _ a: String?, _ b: String?) throws -> Harness.Output {
            try Self.sign(agent, V1Messages.update(id: id, intent: intent, version: version, a, b), in: workspace)
        }
        #expect(try step(1, 2, "100", nil).status == 0, "A deposits 100")
        #expect(try step(1, 3, "100", "50").status == 0, "B deposits 50")
        let operate = try step(0, 4, "70", "80")
        #expect(operate.status == 0, "\(operate.stderr)")
        // Another content for the signed version 4: refused.
        let conflict = try step(0, 4, "60", "90")
        #expect(conflict.status == 2)
        #expect(conflict.stderr.contains("policy.version_conflict"), "\(conflict.stderr)")
        // An operate that would cost A 70 of its 100 (max_own_loss 60).
        let loss = try step(0, 5, "30", "120")
        #expect(loss.status == 2)
        #expect(loss.stderr.contains("policy.own_loss_exceeded"), "\(loss.stderr)")
        #expect(try step(2, 5, "50", "80").status == 0, "A withdraws 20")

        // A restart: the session, its version and its committed loss come back from the log.
        #expect(agent.stop() == 0)
        agent = try RunningAgent(arguments: arguments, socket: socket, logFile: workspace.path + "/agent2.log")
        let moved = try step(3, 6, "40", "90")
        #expect(moved.status == 2)
        #expect(moved.stderr.contains("policy.close_not_current"), "\(moved.stderr)")
        let close = try Self.sign(
            agent, V1Messages.update(id: id, intent: 3, version: 6, "50", "80", quorumSigs: [theirs]), in: workspace)
        #expect(close.status == 0, "\(close.stderr)")
        let closeSig = try Self.quorumSig(close)
        #expect(close.stdout.contains(#""quorum_sigs":["\#(theirs)","\#(closeSig)"]"#), "theirs first, then A's")

        // A v0 session beside it, in the same log and the same velocity window: A's v1 session committed a loss of
        // 30 (the operate); a v0 close losing 20 more would pass the cap of 45, one losing 15 reaches it.
        let v0First = Messages.create(nonce: nonce + 1, "100", "50")
        #expect(try EndToEndTests.sign(agent, v0First, in: workspace).status == 0)
        let v0ID = try #require(
            try EndToEndTests.auditRecords(stateDir).last { $0["event"] as? String == "sign" }?["app_session_id"]
                as? String)
        let over = try EndToEndTests.sign(agent, Messages.close(id: v0ID, "80", "70"), in: workspace)
        #expect(over.status == 2)
        #expect(over.stderr.contains("policy.velocity_exceeded"), "\(over.stderr)")
        #expect(try EndToEndTests.sign(agent, Messages.close(id: v0ID, "85", "65"), in: workspace).status == 0)
        // A frame that does not read (type 2, a response) is refused, and its record names the protocol of its shape.
        let unreadable = try EndToEndTests.sign(agent, "[2,1,\"app_sessions.v1.submit_app_state\",{},1]", in: workspace)
        #expect(unreadable.stderr.contains("payload.malformed"), "\(unreadable.stderr)")
        let refusal = try EndToEndTests.auditRecords(stateDir).last { $0["event"] as? String == "sign" }
        #expect(refusal?["protocol"] as? String == "nitrolite/v1" && refusal?["message_sha256"] != nil)
        // A v1 request naming the v0 session is not one of its states.
        let crossed = try Self.sign(
            agent, V1Messages.update(id: v0ID, intent: 0, version: 2, "85", "65"), in: workspace)
        #expect(crossed.stderr.contains("policy.session_unknown"), "\(crossed.stderr)")

        // SIGKILL, then a start that replays the log: the closed v1 session answers a retry of its close with the
        // same signature and refuses another close.
        kill(agent.process.processIdentifier, SIGKILL)
        agent.process.waitUntilExit()
        agent = try RunningAgent(arguments: arguments, socket: socket, logFile: workspace.path + "/agent3.log")
        // Through the Swift client this time: its result carries the quorum signature and the state's hash.
        let retryFrame = V1Messages.update(id: id, intent: 3, version: 6, "50", "80", quorumSigs: [theirs])
        let retry = try CustodianClient(socketPath: socket).sign(message: Array(retryFrame.utf8))
        #expect(retry.quorumSig == closeSig)
        #expect(retry.quorumSig == "0xa1" + retry.signature.dropFirst(2))
        #expect(try Harness.recoverV1(hash: retry.requestHash, quorumSig: closeSig) == Messages.a)
        #expect(
            retry.message
                == retryFrame.replacingOccurrences(
                    of: #""quorum_sigs":["\#(theirs)"]"#, with: #""quorum_sigs":["\#(theirs)","\#(closeSig)"]"#))
        let second = try step(3, 6, "60", "70")
        #expect(second.stderr.contains("policy.session_closed"), "\(second.stderr)")
        #expect(agent.stop() == 0)

        let verify = try Harness.custodian(["audit", "verify", stateDir, "--address", Messages.a])
        #expect(verify.status == 0, "\(verify.stderr)")
        let all = try EndToEndTests.auditRecords(stateDir).filter { $0["event"] as? String == "sign" }
        #expect(all.contains { $0["protocol"] as? String == "nitrorpc/v0" })
        #expect(
            all.filter { $0["protocol"] as? String == "nitrolite/v1" && $0["decision"] as? String == "allow" }.count
                == 7)
        // The checker is independent: a tampered amount recovers to someone else.
        let tampered = close.stdout.replacingOccurrences(of: #""amount":"50""#, with: #""amount":"51""#)
        let file = try workspace.write("tampered.json", tampered)
        #expect(try Harness.oracle(["v1-frame", file]) != Messages.a)
    }

    @Test(
        "a state directory written before v1 (older checkpoints, a v3 snapshot, a v3 release record) verifies and serves"
    )
    func olderStateDirectory() throws {
        let workspace = try Workspace()
        let fixture = Harness.repository.appendingPathComponent("Tests/Fixtures/before-v1").path
        let files = ["key.sealed", "passphrase", "policy.toml", "close.json"]
        let stateFiles = ["audit.log", "audit.anchor", "ledger.snapshot", "ledger.snapshot.prev"]
        #expect(FileManager.default.fileExists(atPath: fixture + "/state/audit.log"), "the fixture is missing")
        try FileManager.default.createDirectory(
            atPath: workspace.path + "/state", withIntermediateDirectories: false,
            attributes: [.posixPermissions: 0o700])
        // A clone does not keep file modes: the agent wants its secrets and state private.
        for name in files {
            try FileManager.default.copyItem(atPath: fixture + "/" + name, toPath: workspace.path + "/" + name)
            try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: workspace.path + "/" + name)
        }
        for name in stateFiles {
            let target = workspace.path + "/state/" + name
            try FileManager.default.copyItem(atPath: fixture + "/state/" + name, toPath: target)
            try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: target)
        }
        let stateDir = workspace.path + "/state"
        let before = try EndToEndTests.auditRecords(stateDir)
        #expect(before.filter { $0["event"] as? String == "checkpoint" && $0["signed_text"] == nil }.count == 3)
        let verify = try Harness.custodian(["audit", "verify", stateDir, "--address", Messages.a])
        #expect(verify.status == 0, "\(verify.stderr)")

        let arguments = [
            "--key-file", workspace.path + "/key.sealed", "--policy", workspace.path + "/policy.toml", "--state-dir",
            stateDir, "--passphrase-file", workspace.path + "/passphrase",
        ]
        let socket = workspace.path + "/agent.sock"
        let agent = try RunningAgent(arguments: arguments, socket: socket, logFile: workspace.path + "/agent.log")
        let status =
            try JSONSerialization.jsonObject(
                with: Data(try Harness.custodian(["status", "--socket", socket]).stdout.utf8)) as? [String: Any]
        #expect((status?["sessions"] as? [String: Int])?["open"] == 1, "the release returned the session to open")
        // The released close can be signed again: the release record's v3 state was read.
        let close = try String(contentsOfFile: workspace.path + "/close.json", encoding: .utf8)
        let signed = try EndToEndTests.sign(agent, close, in: workspace)
        #expect(signed.status == 0, "\(signed.stderr)")
        #expect(agent.stop() == 0)
        let after = try EndToEndTests.auditRecords(stateDir)
        let labelled = after.filter { $0["event"] as? String == "checkpoint" && $0["signed_text"] != nil }
        #expect(labelled.count == 1, "the new stop signs a labelled checkpoint")
        let reverify = try Harness.custodian(["audit", "verify", stateDir, "--address", Messages.a])
        #expect(reverify.status == 0, "older and labelled checkpoints in one log: \(reverify.stderr)")
        let snapshot = try Data(contentsOf: URL(fileURLWithPath: stateDir + "/ledger.snapshot"))
        #expect(snapshot.starts(with: Data("custodian ledger snapshot v5\n".utf8)))
    }

    @Test("an edited v1 allowance is found: its request_hash is the ABI hash of the frame read again")
    func editedV1Record() throws {
        let workspace = try Workspace()
        let (keyFile, passphrase) = try EndToEndTests.importKeyA(workspace)
        let stateDir = workspace.path + "/state"
        let arguments = [
            "--key-file", keyFile, "--policy", try workspace.write("policy.toml", Self.policy), "--state-dir",
            stateDir, "--passphrase-file", passphrase,
        ]
        let agent = try RunningAgent(
            arguments: arguments, socket: workspace.path + "/a.sock", logFile: workspace.path + "/a.log")
        #expect(try Self.sign(agent, V1Messages.create(nonce: Messages.nowMs()), in: workspace).status == 0)
        let id = try #require(
            try EndToEndTests.auditRecords(stateDir).last { $0["event"] as? String == "sign" }?["app_session_id"]
                as? String)
        #expect(
            try Self.sign(agent, V1Messages.update(id: id, intent: 1, version: 2, "100", nil), in: workspace).status
                == 0)
        // A crash: the deposit is the last line, so its own hashes are what guard it.
        kill(agent.process.processIdentifier, SIGKILL)
        agent.process.waitUntilExit()
        try? FileManager.default.removeItem(atPath: stateDir + "/audit.anchor")
        let log = stateDir + "/audit.log"
        let lines = try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n").map(String.init)
        let last = try #require(lines.last)
        #expect(last.contains(#""protocol":"nitrolite/v1""#) && last.contains(#"\"amount\":\"100\""#))
        for (edit, what) in [
            (last.replacingOccurrences(of: #"\"amount\":\"100\""#, with: #"\"amount\":\"101\""#), "an amount"),
            (
                last.replacingOccurrences(of: #"\"amount\":\"100\""#, with: #"\"amount\":\"100.0\""#),
                "an amount's spelling, same value"
            ),
            (
                last.replacingOccurrences(of: #""protocol":"nitrolite/v1""#, with: #""protocol":"nitrorpc/v0""#),
                "the protocol"
            ),
        ] {
            try Data((lines.dropLast() + [edit]).map { $0 + "\n" }.joined().utf8).write(to: URL(fileURLWithPath: log))
            let verify = try Harness.custodian(["audit", "verify", log, "--address", Messages.a])
            if what == "an amount's spelling, same value" {
                // The hash covers the values, which are unchanged: only the text differs, and the signature stands.
                #expect(verify.status == 0, "\(what): \(verify.stderr)")
            } else {
                #expect(verify.status == 2, "\(what): \(verify.stderr)")
                #expect(verify.stderr.contains("at line \(lines.count):"), "\(what): \(verify.stderr)")
            }
        }
    }
}
