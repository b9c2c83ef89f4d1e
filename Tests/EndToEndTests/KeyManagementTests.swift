import CustodianClient
import Foundation
import Testing

@Suite("Keys from where users keep them: V3 keystores; key passwd", .serialized)
struct KeyManagementTests {
    static let vectorAddress = "0x008AeEda4D805471dF9b2A5B0f38A0C3bCBA786b"
    static let vectors = Harness.repository.appendingPathComponent("Tests/KeystoreVectors")

    static func importKeystore(_ keystore: String, password: String, in workspace: Workspace) throws -> Harness.Output {
        let passwordFile = try workspace.write("keystore-password-\(UUID().uuidString)", password + "\n")
        let passphrase = try workspace.write("passphrase-\(UUID().uuidString)", "new passphrase\n")
        return try Harness.custodian([
            "key", "import", "--key-file", workspace.path + "/key-\(UUID().uuidString)", "--keystore", keystore,
            "--keystore-passphrase-file", passwordFile, "--passphrase-file", passphrase, "--kdf", "interactive",
        ])
    }

    @Test(
        "the Web3 Secret Storage vectors (scrypt and pbkdf2, password testpassword) import to their key",
        arguments: ["web3_secret_storage_scrypt.json", "web3_secret_storage_pbkdf2.json"])
    func vectors(_ name: String) throws {
        let workspace = try Workspace()
        let path = Self.vectors.appendingPathComponent(name).path
        let imported = try Self.importKeystore(path, password: "testpassword", in: workspace)
        #expect(imported.status == 0, "\(imported.stderr)")
        #expect(imported.stdout == Self.vectorAddress + "\n")
        let wrong = try Self.importKeystore(path, password: "testpassworD", in: workspace)
        #expect(wrong.status == 2)
        #expect(wrong.stderr.contains("wrong keystore password"), "\(wrong.stderr)")
    }

    @Test("a keystore written by eth-account imports; edited ones are refused, each with its reason")
    func ethAccountKeystore() throws {
        let workspace = try Workspace()
        let script = Harness.repository.appendingPathComponent("Tests/EndToEndTests/oracle.py").path
        let key = EndToEndTests.keyA
        for (kdf, work) in [("scrypt", "16384"), ("pbkdf2", "10000")] {
            let written = try Harness.run(try Harness.python(), [script, "encrypt", key, "pässword", kdf, work])
            #expect(written.status == 0, "\(written.stderr)")
            let keystore = try workspace.write("\(kdf).json", written.stdout)
            let imported = try Self.importKeystore(keystore, password: "pässword", in: workspace)
            #expect(imported.status == 0, "\(imported.stderr)")
            #expect(imported.stdout == EndToEndTests.addressA + "\n")

            // Another address than the key's: edited.
            let otherAddress = written.stdout.replacingOccurrences(
                of: "FdEc8F58fA4b3bf07DD11eAF4c562Ee674e2C638", with: "f39Fd6e51aad88F6F4ce6aB8827279cffFb92266")
            #expect(otherAddress != written.stdout)
            let edited = try Self.importKeystore(
                try workspace.write("\(kdf)-address.json", otherAddress), password: "pässword", in: workspace)
            #expect(edited.status == 2)
            #expect(edited.stderr.contains("the keystore was edited"), "\(edited.stderr)")

            // A changed ciphertext: the MAC no longer matches.
            let object = try JSONSerialization.jsonObject(with: Data(written.stdout.utf8)) as? [String: Any]
            let ciphertext = try #require((object?["crypto"] as? [String: Any])?["ciphertext"] as? String)
            let flipped = (ciphertext.first == "0" ? "1" : "0") + ciphertext.dropFirst()
            let tampered = try Self.importKeystore(
                try workspace.write(
                    "\(kdf)-ciphertext.json", written.stdout.replacingOccurrences(of: ciphertext, with: flipped)),
                password: "pässword", in: workspace)
            #expect(tampered.status == 2)
            #expect(tampered.stderr.contains("MAC does not match"), "\(tampered.stderr)")
        }
        let version2 = try Self.importKeystore(
            try workspace.write("v2.json", "{\"version\":2,\"crypto\":{}}"), password: "x", in: workspace)
        #expect(version2.status == 2)
        #expect(version2.stderr.contains("not a V3 keystore"), "\(version2.stderr)")
    }

    @Test("key passwd re-seals under a new passphrase: the old one no longer opens the file")
    func passwd() throws {
        let workspace = try Workspace()
        let (keyFile, oldPassphrase) = try EndToEndTests.importKeyA(workspace)
        let before = try String(contentsOfFile: keyFile, encoding: .utf8)
        let newPassphrase = try workspace.write("new-passphrase", "an entirely new passphrase\n")
        let wrong = try workspace.write("wrong", "not the passphrase\n")
        let refused = try Harness.custodian([
            "key", "passwd", "--key-file", keyFile, "--passphrase-file", wrong, "--new-passphrase-file", newPassphrase,
        ])
        #expect(refused.status == 2)
        #expect(try String(contentsOfFile: keyFile, encoding: .utf8) == before, "a refused passwd changes nothing")

        let changed = try Harness.custodian([
            "key", "passwd", "--key-file", keyFile, "--passphrase-file", oldPassphrase, "--new-passphrase-file",
            newPassphrase,
        ])
        #expect(changed.status == 0, "\(changed.stderr)")
        #expect(changed.stdout == EndToEndTests.addressA + "\n")
        let after = try String(contentsOfFile: keyFile, encoding: .utf8)
        #expect(after != before)
        #expect(after.contains("ops=2 mem=67108864"), "the Argon2id cost is kept")
        let mode = try FileManager.default.attributesOfItem(atPath: keyFile)[.posixPermissions] as? Int
        #expect(mode == 0o600)
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: workspace.path).filter {
            $0.contains(".tmp-")
        }
        #expect(leftovers.isEmpty)

        // The old passphrase no longer opens it; the new one does (a second passwd back proves it).
        let old = try Harness.custodian([
            "key", "passwd", "--key-file", keyFile, "--passphrase-file", oldPassphrase, "--new-passphrase-file", wrong,
        ])
        #expect(old.status == 2)
        #expect(old.stderr.contains("wrong passphrase"), "\(old.stderr)")
        let policy = try workspace.write("policy.toml", DurabilityTests.policy)
        let socket = workspace.path + "/agent.sock"
        let agent = try RunningAgent(
            arguments: [
                "--key-file", keyFile, "--policy", policy, "--state-dir", workspace.path + "/state",
                "--passphrase-file",
                newPassphrase,
            ], socket: socket, logFile: workspace.path + "/agent.log")
        #expect(try Harness.custodian(["status", "--socket", socket]).stdout.contains(EndToEndTests.addressA))
        #expect(agent.stop() == 0)
    }
}

@Suite("The Swift client library's async API")
struct SwiftClientTests {
    @Test("CustodianClient.sign and status, concurrently, from async code")
    func asyncClient() async throws {
        let workspace = try Workspace()
        let (keyFile, passphrase) = try EndToEndTests.importKeyA(workspace)
        let policy = try workspace.write("policy.toml", DurabilityTests.policy)
        let socket = workspace.path + "/agent.sock"
        let agent = try RunningAgent(
            arguments: [
                "--key-file", keyFile, "--policy", policy, "--state-dir", workspace.path + "/state",
                "--passphrase-file",
                passphrase,
            ], socket: socket, logFile: workspace.path + "/agent.log")
        let nonce = Messages.nowMs()
        let results = try await withThrowingTaskGroup(of: SignResult.self) { group in
            for index in 0..<8 {
                let message = Array(Messages.create(nonce: nonce + UInt64(index)).utf8)
                group.addTask { try await CustodianClient.sign(message: message, socketPath: socket) }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(results.count == 8)
        #expect(results.allSatisfy { $0.address == EndToEndTests.addressA })
        #expect(Set(results.map(\.signature)).count == 8)
        let status = try await CustodianClient.status(socketPath: socket)
        #expect(status.contains("\"open\":8"), "\(status)")
        #expect(agent.stop() == 0)
    }
}
