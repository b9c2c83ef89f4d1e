import CustodianTestSupport
import Foundation
import Testing

@Suite("The built agent, end to end, checked by an independent Ethereum implementation", .serialized)
struct EndToEndTests {
    static let keyA = "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01ac362b318"
    static let addressA = "0xFdEc8F58fA4b3bf07DD11eAF4c562Ee674e2C638"

    /// The vectors are from 2024: this policy's window is wide enough for them.
    static let policy = """
        version = 1

        [requests]
        methods = ["create_app_session", "submit_app_state", "close_app_session"]
        max_age_ms = 100000000000000
        max_future_ms = 5000

        [sessions]
        applications = ["chess"]

        [assets.usdc]
        decimals = 6
        max_session_total = "10000"
        max_own_funding = "1000"
        max_allocation = "10000"
        max_own_loss = "1000"

        [counterparties]
        allow = []

        [velocity]
        window_s = 86400
        max_own_loss = {}

        """

    static func string(_ folder: String, _ name: String, _ field: String) throws -> String {
        let vector = try VectorFiles.load(folder, name)
        guard let text = vector[field] as? String else { throw HarnessError("\(name) has no \(field)") }
        return text
    }

    /// Imports key A into a sealed file in `workspace`; returns the key file and the passphrase file.
    static func importKeyA(_ workspace: Workspace) throws -> (String, String) {
        let hex = try workspace.write("keyA.hex", keyA + "\n")
        let passphrase = try workspace.write("passphrase", "correct horse battery staple\n")
        let keyFile = workspace.path + "/key.sealed"
        let output = try Harness.custodian([
            "key", "import", "--key-file", keyFile, "--private-key-file", hex, "--passphrase-file", passphrase,
            "--kdf", "interactive",
        ])
        #expect(output.status == 0, "\(output.stderr)")
        #expect(output.stdout == addressA + "\n")
        try FileManager.default.removeItem(atPath: hex)
        return (keyFile, passphrase)
    }

    static func sign(_ agent: RunningAgent, _ message: String, in workspace: Workspace) throws -> Harness.Output {
        let file = try workspace.write("message-\(UUID().uuidString)", message)
        return try Harness.custodian(["sign", "--socket", agent.socket, "--file", file])
    }

    /// The log's files in a state directory, in order: the sealed segments (uncompressed ones) by name, then
    /// audit.log unless it is the newest sealed segment under a second name (a rollover cut short).
    static func logFiles(_ stateDir: String) throws -> [String] {
        let names = try FileManager.default.contentsOfDirectory(atPath: stateDir)
        var files = names.filter { $0.hasPrefix("audit-") && $0.hasSuffix(".log") }.sorted().map { stateDir + "/" + $0 }
        let active = stateDir + "/audit.log"
        if FileManager.default.fileExists(atPath: active) {
            func inode(_ path: String) -> Int? {
                (try? FileManager.default.attributesOfItem(atPath: path))?[.systemFileNumber] as? Int
            }
            if files.last.map({ inode($0) != inode(active) }) ?? true { files.append(active) }
        }
        return files
    }

    static func auditRecords(_ stateDir: String) throws -> [[String: Any]] {
        let text = try logFiles(stateDir).map { try String(contentsOfFile: $0, encoding: .utf8) }.joined()
        return try text.split(separator: "\n").map {
            guard let record = try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] else {
                throw HarnessError("an audit line is not an object")
            }
            return record
        }
    }

    @Test("import key A, sign V1 and V2 through custodian sign, refuse bad closes, survive a restart")
    func signingAgent() throws {
        let workspace = try Workspace()
        let (keyFile, passphrase) = try Self.importKeyA(workspace)
        let policyFile = try workspace.write("policy.toml", Self.policy)
        let stateDir = workspace.path + "/state"
        let arguments = [
            "--key-file", keyFile, "--policy", policyFile, "--state-dir", stateDir, "--passphrase-file", passphrase,
        ]
        let socket = workspace.path + "/agent.sock"

        // V1: a bare create req. The envelope carries the very bytes, and eth-keys recovers A over them.
        var agent = try RunningAgent(arguments: arguments, socket: socket, logFile: workspace.path + "/agent1.log")
        let v1 = try Self.string("sign", "create_v1.json", "req")
        let signedV1 = try Self.sign(agent, v1, in: workspace)
        #expect(signedV1.status == 0, "\(signedV1.stderr)")
        let lines = signedV1.stdout.split(separator: "\n", omittingEmptySubsequences: false)
        #expect(lines.count == 2 && lines[1].isEmpty, "one line on stdout")
        let prefix = "{\"req\":" + v1 + ",\"sig\":[\""
        #expect(signedV1.stdout.hasPrefix(prefix), "the req bytes are kept unchanged")
        let signatureV1 = String(signedV1.stdout.dropFirst(prefix.count).prefix(132))
        #expect(signedV1.stdout == prefix + signatureV1 + "\"]}\n")
        #expect(try Harness.recover(bytes: Array(v1.utf8), signature: signatureV1, in: workspace.path) == Self.addressA)

        // A restarted agent still knows the session it signed the creation of.
        #expect(agent.stop() == 0, "a clean stop on SIGTERM")
        #expect(!FileManager.default.fileExists(atPath: socket), "the socket is removed at a clean stop")
        agent = try RunningAgent(arguments: arguments, socket: socket, logFile: workspace.path + "/agent2.log")
        let status = try Harness.custodian(["status", "--socket", socket])
        let statusObject = try JSONSerialization.jsonObject(with: Data(status.stdout.utf8)) as? [String: Any]
        #expect((statusObject?["sessions"] as? [String: Int])?["open"] == 1)
        #expect(statusObject?["address"] as? String == Self.addressA)

        // Off by one smallest unit, and a payment to a non-participant: refused with their reasons.
        let short = try Self.string("close_policy", "reject_sum_off_by_one_unit.json", "message")
        let refusedShort = try Self.sign(agent, short, in: workspace)
        #expect(refusedShort.status == 2)
        #expect(refusedShort.stdout.isEmpty)
        #expect(refusedShort.stderr.contains("policy.sum_mismatch"), "\(refusedShort.stderr)")
        let stranger = try Self.string("close_policy", "reject_participant_unknown.json", "message")
        let refusedStranger = try Self.sign(agent, stranger, in: workspace)
        #expect(refusedStranger.status == 2)
        #expect(refusedStranger.stderr.contains("policy.participant_unknown"), "\(refusedStranger.stderr)")

        // V2, as an envelope that already holds B's signature: B's kept first, A's appended.
        let v2 = try Self.string("sign", "close_v2.json", "req")
        let vector = try VectorFiles.load("sign", "close_v2.json")
        let signatures = try #require(vector["signatures"] as? [[String: Any]])
        let signatureB = try #require(signatures.first { $0["signer"] as? String == "B" }?["signature"] as? String)
        let signedV2 = try Self.sign(agent, "{\"req\":\(v2),\"sig\":[\"\(signatureB)\"]}", in: workspace)
        #expect(signedV2.status == 0, "\(signedV2.stderr)")
        let prefixV2 = "{\"req\":" + v2 + ",\"sig\":[\"" + signatureB + "\",\""
        #expect(signedV2.stdout.hasPrefix(prefixV2))
        let signatureV2 = String(signedV2.stdout.dropFirst(prefixV2.count).prefix(132))
        #expect(signedV2.stdout == prefixV2 + signatureV2 + "\"]}\n")
        #expect(try Harness.recover(bytes: Array(v2.utf8), signature: signatureV2, in: workspace.path) == Self.addressA)
        #expect(agent.stop() == 0)

        // The audit log: both refusals with their reasons, both allowances with the returned signatures.
        let records = try Self.auditRecords(stateDir)
        let signs = records.filter { $0["event"] as? String == "sign" }
        #expect(
            signs.contains {
                $0["decision"] as? String == "deny" && $0["reason"] as? String == "policy.sum_mismatch"
                    && $0["req"] as? String != nil
            })
        #expect(
            signs.contains {
                $0["decision"] as? String == "deny" && $0["reason"] as? String == "policy.participant_unknown"
            })
        #expect(signs.contains { $0["decision"] as? String == "allow" && $0["signature"] as? String == signatureV1 })
        #expect(signs.contains { $0["decision"] as? String == "allow" && $0["signature"] as? String == signatureV2 })
        #expect(signs.first { $0["signature"] as? String == signatureV2 }?["req"] as? String == v2)

        // The chain verifies, and eth-account recovers A from every checkpoint, which signs the labelled text
        // CONTRACT §6 gives (never 32 raw bytes, which a v1 quorum signature could be).
        let verify = try Harness.custodian(["audit", "verify", stateDir + "/audit.log", "--address", Self.addressA])
        #expect(verify.status == 0, "\(verify.stderr)")
        let checkpoints = records.filter { $0["event"] as? String == "checkpoint" }
        #expect(checkpoints.count == 2, "one per clean stop")
        for checkpoint in checkpoints {
            let head = try #require(checkpoint["head"] as? String)
            let seq = try #require((checkpoint["seq"] as? NSNumber)?.uint64Value)
            let signature = try #require(checkpoint["signature"] as? String)
            let text = "custodian audit checkpoint seq=\(seq) head=\(head)"
            #expect(checkpoint["signed_text"] as? String == text)
            #expect(try Harness.recoverCheckpoint(text: text, signature: signature) == Self.addressA)
            #expect(try Harness.recoverCheckpoint(head: head, signature: signature) != Self.addressA)
        }
        // Every file the agent wrote is private.
        for path in [stateDir + "/audit.log", keyFile] {
            let mode = try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int
            #expect(mode == 0o600, "\(path)")
        }
        let stateMode = try FileManager.default.attributesOfItem(atPath: stateDir)[.posixPermissions] as? Int
        #expect(stateMode == 0o700)
    }

    @Test("a wrong passphrase fails with a clear error and exit code 2; the key file holds no plaintext key")
    func wrongPassphrase() throws {
        let workspace = try Workspace()
        let (keyFile, _) = try Self.importKeyA(workspace)
        let wrong = try workspace.write("wrong", "correct horse battery stapler\n")
        let policyFile = try workspace.write("policy.toml", Self.policy)
        let output = try Harness.custodian([
            "serve", "--socket", workspace.path + "/agent.sock", "--key-file", keyFile, "--policy", policyFile,
            "--state-dir", workspace.path + "/state", "--passphrase-file", wrong,
        ])
        #expect(output.status == 2)
        #expect(output.stderr.hasPrefix("custodian: error: "))
        #expect(output.stderr.contains("wrong passphrase"), "\(output.stderr)")
        #expect(!FileManager.default.fileExists(atPath: workspace.path + "/agent.sock"))

        let sealed = try Data(contentsOf: URL(fileURLWithPath: keyFile))
        let text = String(decoding: sealed, as: UTF8.self).lowercased()
        let hex = String(Self.keyA.dropFirst(2))
        #expect(!text.contains(hex))
        #expect(text.contains(Self.addressA.lowercased()), "the address is in the header")
        let raw = try VectorFiles.bytes(hex: Self.keyA)
        #expect(sealed.range(of: Data(raw)) == nil)
        #expect(sealed.range(of: Data(raw.prefix(8))) == nil)
        // The right passphrase still opens it: key address needs none.
        let address = try Harness.custodian(["key", "address", "--key-file", keyFile])
        #expect(address.stdout == Self.addressA + "\n")
    }

    @Test("exit codes: 3 when no agent answers, 1 for a usage error, 2 for an invalid policy")
    func exitCodes() throws {
        let workspace = try Workspace()
        let message = try workspace.write("m", "[]")
        let unreachable = try Harness.custodian(["sign", "--socket", workspace.path + "/none.sock", "--file", message])
        #expect(unreachable.status == 3)
        #expect(unreachable.stderr.contains("custodian: hint:"))
        let usage = try Harness.custodian(["sign", "--no-such-flag"])
        #expect(usage.status == 1)
        #expect(usage.stderr.hasPrefix("custodian: error: "))
        let invalid = try workspace.write("bad.toml", "version = 1\n[requests]\nmethods = [\"transfer\"]\n")
        let check = try Harness.custodian(["policy", "check", invalid])
        #expect(check.status == 2)
        #expect(check.stderr.contains("unknown method \"transfer\""), "\(check.stderr)")
        // The agent refuses to start with an invalid policy, before it asks for the key.
        let (keyFile, passphrase) = try Self.importKeyA(workspace)
        let serve = try Harness.custodian([
            "serve", "--socket", workspace.path + "/agent.sock", "--key-file", keyFile, "--policy", invalid,
            "--state-dir", workspace.path + "/state", "--passphrase-file", passphrase,
        ])
        #expect(serve.status == 1)
        #expect(serve.stderr.contains("invalid policy"), "\(serve.stderr)")
        #expect(serve.stderr.contains("custodian: hint: custodian policy check"))
        #expect(!FileManager.default.fileExists(atPath: workspace.path + "/agent.sock"))
    }
}
