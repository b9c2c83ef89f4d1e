import CustodianClient
import CustodianCore
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Runs `custodian serve` to its exit (a start expected to fail) and returns its output.
func serveOnce(_ arguments: [String], socket: String) throws -> Harness.Output {
    try Harness.custodian(["serve", "--socket", socket] + arguments)
}

@Suite("History: never less than the evidence, never a second writer, never a decision before the start", .serialized)
struct HistoryTests {
    /// A state directory with a few decisions, a stop, its anchor and snapshots; the agent's arguments.
    static func stoppedAgent(_ workspace: Workspace, checkpointEvery: Int = 5) throws -> (String, [String]) {
        let key = try EndToEndTests.importKeyA(workspace)
        let stateDir = workspace.path + "/state"
        let arguments =
            try DurabilityTests.agentArguments(workspace, key: key, stateDir: stateDir)
            + ["--checkpoint-every", "\(checkpointEvery)"]
        let agent = try RunningAgent(
            arguments: arguments, socket: workspace.path + "/agent.sock", logFile: workspace.path + "/agent.log")
        for index in 0..<12 {
            let create = Messages.create(nonce: Messages.nowMs() + UInt64(index))
            #expect(try EndToEndTests.sign(agent, create, in: workspace).status == 0)
        }
        #expect(agent.stop() == 0)
        return (stateDir, arguments)
    }

    /// A file's text, "" when it is missing or empty (Foundation's String(contentsOfFile:) leaks its buffer when it
    /// reads an empty file, which LeakSanitizer reports).
    static func text(_ path: String) -> String {
        guard let handle = FileHandle(forReadingAtPath: path) else { return "" }
        defer { try? handle.close() }
        return String(decoding: (try? handle.readToEnd()) ?? Data(), as: UTF8.self)
    }

    /// The lines of a log, without their newlines.
    static func lines(_ path: String) throws -> [String] {
        try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").map(String.init)
    }

    @Test("a log moved away, emptied or cut at a line boundary beside its anchor and snapshots: start refuses, exit 1")
    func shorterHistoryRefused() throws {
        let workspace = try Workspace()
        let (stateDir, arguments) = try Self.stoppedAgent(workspace)
        let log = stateDir + "/audit.log"
        #expect(FileManager.default.fileExists(atPath: stateDir + "/audit.anchor"))
        let original = try Data(contentsOf: URL(fileURLWithPath: log))
        let lines = try Self.lines(log)
        let socket = workspace.path + "/again.sock"
        func refused(_ expected: String) throws {
            let output = try serveOnce(arguments, socket: socket)
            #expect(output.status == 1, "\(output.stderr)")
            #expect(output.stderr.contains(expected), "\(output.stderr)")
            #expect(output.stderr.contains("custodian: hint: restore audit.log"), "\(output.stderr)")
            #expect(!FileManager.default.fileExists(atPath: socket))
        }

        try FileManager.default.moveItem(atPath: log, toPath: log + ".1")  // rotated away
        try refused("audit.log is missing, but audit.anchor names record \(lines.count)")
        try FileManager.default.moveItem(atPath: log + ".1", toPath: log)

        try Data().write(to: URL(fileURLWithPath: log))
        try refused("is empty, but audit.anchor names record")

        // Cut at a line boundary, before the last checkpoint.
        let cut = lines.prefix(lines.count - 3).map { $0 + "\n" }.joined()
        try Data(cut.utf8).write(to: URL(fileURLWithPath: log))
        try refused("the audit log ends at record \(lines.count - 3), but audit.anchor names record \(lines.count)")
        let verify = try Harness.custodian(["audit", "verify", stateDir])
        #expect(verify.status == 2)
        #expect(verify.stderr.contains("records were cut"), "\(verify.stderr)")

        // Without the anchor, the snapshots still prove how far the log reached.
        try FileManager.default.removeItem(atPath: stateDir + "/audit.anchor")
        try Data(lines.prefix(4).map { $0 + "\n" }.joined().utf8).write(to: URL(fileURLWithPath: log))
        try refused("the audit log ends at record 4, but ledger.snapshot was taken at record")

        // The log as it was starts.
        try original.write(to: URL(fileURLWithPath: log))
        let agent = try RunningAgent(arguments: arguments, socket: socket, logFile: workspace.path + "/again.log")
        #expect(agent.stop() == 0, "the untouched log starts: \(agent.log)")

        // Forgetting is an explicit, audited command.
        let abandoned = try Self.lines(log).count
        let unconfirmed = try Harness.custodian(["state", "reset", "--state-dir", stateDir, "--reason", "test"])
        #expect(unconfirmed.status == 1)
        let reset = try Harness.custodian([
            "state", "reset", "--state-dir", stateDir, "--reason", "restored host", "--forget-signed-sessions",
        ])
        #expect(reset.status == 0, "\(reset.stderr)")
        let fresh = try RunningAgent(arguments: arguments, socket: socket, logFile: workspace.path + "/fresh.log")
        #expect(fresh.stop() == 0)
        let first = try EndToEndTests.auditRecords(stateDir).first
        #expect(first?["action"] as? String == "history_reset")
        #expect(first?["reason_text"] as? String == "restored host")
        #expect(first?["abandoned_log_records"] as? Int == abandoned)
    }

    @Test("temporaries of an interrupted atomic replace are removed at start, and said so")
    func temporariesRemoved() throws {
        let workspace = try Workspace()
        let (stateDir, arguments) = try Self.stoppedAgent(workspace)
        let left = ["ledger.snapshot.tmp-4242-0a1b2c3d", "audit.anchor.tmp-4242-deadbeef"]
        for name in left { _ = try workspace.write("state/" + name, "partial") }
        let unrelated = try workspace.write("state/notes.tmp-1", "kept")
        let agent = try RunningAgent(
            arguments: arguments, socket: workspace.path + "/again.sock", logFile: workspace.path + "/again.log")
        #expect(agent.stop() == 0)
        for name in left {
            #expect(!FileManager.default.fileExists(atPath: stateDir + "/" + name))
            #expect(agent.log.contains("removed \(name), left by an interrupted write"), "\(agent.log)")
        }
        #expect(FileManager.default.fileExists(atPath: unrelated))
    }

    @Test("a log renamed while serving: audit.unavailable, nothing signed; signing again once it is back")
    func renamedWhileServing() throws {
        let workspace = try Workspace()
        let key = try EndToEndTests.importKeyA(workspace)
        let stateDir = workspace.path + "/state"
        let agent = try RunningAgent(
            arguments: try DurabilityTests.agentArguments(workspace, key: key, stateDir: stateDir),
            socket: workspace.path + "/agent.sock", logFile: workspace.path + "/agent.log")
        let log = stateDir + "/audit.log"
        #expect(try EndToEndTests.sign(agent, Messages.create(nonce: Messages.nowMs()), in: workspace).status == 0)
        try FileManager.default.moveItem(atPath: log, toPath: log + ".rotated")
        let refused = try EndToEndTests.sign(agent, Messages.create(nonce: Messages.nowMs() + 1), in: workspace)
        #expect(refused.status == 2)
        #expect(refused.stdout.isEmpty, "no signature leaves")
        #expect(refused.stderr.contains("audit.unavailable"), "\(refused.stderr)")
        // A new file at the path is not the log either.
        try Data().write(to: URL(fileURLWithPath: log))
        let replaced = try EndToEndTests.sign(agent, Messages.create(nonce: Messages.nowMs() + 2), in: workspace)
        #expect(replaced.stderr.contains("audit.unavailable"), "\(replaced.stderr)")
        try FileManager.default.removeItem(atPath: log)
        try FileManager.default.moveItem(atPath: log + ".rotated", toPath: log)
        let signed = try EndToEndTests.sign(agent, Messages.create(nonce: Messages.nowMs() + 3), in: workspace)
        #expect(signed.status == 0, "\(signed.stderr)")
        #expect(agent.stop() == 0)
        let verify = try Harness.custodian(["audit", "verify", stateDir])
        #expect(verify.status == 0, "\(verify.stderr)")
        let decisions = try EndToEndTests.auditRecords(stateDir).filter { $0["event"] as? String == "sign" }
        #expect(decisions.count == 2, "the refused requests were never recorded in the moved or new file")
    }

    /// Rewrites `lines` from index `from` on with consecutive seqs and a recomputed chain (what an editor without
    /// the key can do), by Python's hashlib.
    static func rechain(_ lines: [String], in workspace: Workspace) throws -> [String] {
        let input = try workspace.write("chain-in-\(UUID().uuidString)", lines.map { $0 + "\n" }.joined())
        let script = """
            import hashlib, json, re, sys
            lines = open(sys.argv[1]).read().splitlines()
            prev = "0" * 64
            out = []
            for number, line in enumerate(lines, 1):
                line = re.sub(r'^\\{"seq":\\d+,', '{"seq":%d,' % number, line)
                line = re.sub(r',"prev":"[0-9a-f]{64}"\\}$', ',"prev":"%s"}' % prev, line)
                if '"event":"checkpoint"' in line:
                    line = re.sub(r'"head":"[0-9a-f]{64}"', '"head":"%s"' % prev, line)
                out.append(line)
                prev = hashlib.sha256(line.encode()).hexdigest()
            print("\\n".join(out))
            """
        let output = try Harness.run("/usr/bin/python3", ["-c", script, input])
        guard output.status == 0 else { throw HarnessError(output.stderr) }
        return output.stdout.split(separator: "\n").map(String.init)
    }

    @Test("an edited last record, a deleted and re-chained close, a forged checkpoint: start names audit verify's line")
    func tamperedHistoryRefused() throws {
        let workspace = try Workspace()
        let key = try EndToEndTests.importKeyA(workspace)
        let stateDir = workspace.path + "/state"
        let arguments =
            try DurabilityTests.agentArguments(workspace, key: key, stateDir: stateDir) + ["--checkpoint-every", "4"]
        let socket = workspace.path + "/agent.sock"
        let agent = try RunningAgent(arguments: arguments, socket: socket, logFile: workspace.path + "/agent.log")
        let create = Messages.create(nonce: Messages.nowMs())
        #expect(try EndToEndTests.sign(agent, create, in: workspace).status == 0)
        let id = try DurabilityTests.sessionID(of: create)
        #expect(try EndToEndTests.sign(agent, Messages.close(id: id, "75", "75"), in: workspace).status == 0)
        for index in 1...8 {
            #expect(
                try EndToEndTests.sign(agent, Messages.create(nonce: Messages.nowMs() + UInt64(index)), in: workspace)
                    .status == 0)
        }
        // A crash: the last record is a decision, not a stop's checkpoint.
        kill(agent.process.processIdentifier, SIGKILL)
        agent.process.waitUntilExit()
        let log = stateDir + "/audit.log"
        let lines = try Self.lines(log)
        #expect(lines.last?.contains("\"event\":\"sign\"") == true)
        try FileManager.default.removeItem(atPath: stateDir + "/audit.anchor")
        for name in ["ledger.snapshot", "ledger.snapshot.prev"] {
            try? FileManager.default.removeItem(atPath: stateDir + "/" + name)
        }

        func expectSameLine(_ tampered: [String], _ line: Int, _ what: String) throws {
            try Data(tampered.map { $0 + "\n" }.joined().utf8).write(to: URL(fileURLWithPath: log))
            let verify = try Harness.custodian(["audit", "verify", log, "--address", EndToEndTests.addressA])
            #expect(verify.status == 2, "\(what): \(verify.stderr)")
            #expect(verify.stderr.contains("at line \(line):"), "\(what): \(verify.stderr)")
            let start = try serveOnce(arguments, socket: socket)
            #expect(start.status == 1, "\(what): \(start.stderr)")
            #expect(start.stderr.contains("at line \(line):"), "\(what): \(start.stderr)")
            #expect(start.stderr.contains("custodian: hint: custodian audit verify"), "\(what): \(start.stderr)")
        }

        // The last record: a create's allocation changed (no later prev covers it; its request_hash does).
        var edited = lines
        let last = lines.count - 1
        edited[last] = edited[last].replacingOccurrences(
            of: "\\\"amount\\\":\\\"100\\\"", with: "\\\"amount\\\":\\\"10\\\"")
        #expect(edited[last] != lines[last])
        try expectSameLine(edited, lines.count, "edited last record")

        // The close deleted and the chain recomputed: the first checkpoint after it no longer verifies.
        let closeIndex = try #require(lines.firstIndex { $0.contains("close_app_session") })
        var deleted = lines
        deleted.remove(at: closeIndex)
        let rechained = try Self.rechain(deleted, in: workspace)
        let checkpointAfter = try #require(
            rechained.indices.first { $0 >= closeIndex && rechained[$0].contains("\"event\":\"checkpoint\"") })
        try expectSameLine(rechained, checkpointAfter + 1, "deleted and re-chained close")

        // A forged checkpoint signature in the middle.
        let checkpoint = try #require(lines.indices.first { lines[$0].contains("\"event\":\"checkpoint\"") })
        var forged = lines
        let marker = try #require(forged[checkpoint].range(of: "\"signature\":\"0x"))
        let digit = forged[checkpoint][marker.upperBound]
        forged[checkpoint].replaceSubrange(
            marker.upperBound..<forged[checkpoint].index(after: marker.upperBound), with: digit == "0" ? "1" : "0")
        try expectSameLine(forged, checkpoint + 1, "forged checkpoint")

        // The untouched log starts.
        try Data(lines.map { $0 + "\n" }.joined().utf8).write(to: URL(fileURLWithPath: log))
        let again = try RunningAgent(arguments: arguments, socket: socket, logFile: workspace.path + "/again.log")
        #expect(again.stop() == 0)
    }

    @Test("a start held before its records are durable: a client that connects waits, nothing is signed before them")
    func nothingBeforeTheStart() throws {
        let workspace = try Workspace()
        let key = try EndToEndTests.importKeyA(workspace)
        let stateDir = workspace.path + "/state"
        let socket = workspace.path + "/agent.sock"
        let hold = try workspace.write("hold", "")
        let logFile = workspace.path + "/agent.log"
        _ = FileManager.default.createFile(atPath: logFile, contents: nil)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try Harness.binary())
        process.arguments =
            ["serve", "--socket", socket]
            + (try DurabilityTests.agentArguments(workspace, key: key, stateDir: stateDir))
        process.environment = ProcessInfo.processInfo.environment.merging(["CUSTODIAN_TEST_HOLD_START": hold]) { $1 }
        process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: logFile))
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        defer {
            if process.isRunning {
                process.terminate()
                process.waitUntilExit()
            }
        }
        let deadline = Date().addingTimeInterval(20)
        while !Self.text(logFile).contains("holding the start") {
            try #require(Date() < deadline && process.isRunning, "the agent never reached the seam")
            Thread.sleep(forTimeInterval: 0.02)
        }
        // The socket is bound: the client connects and sends, and no answer comes while the start is held.
        let connection = try RawConnection(socket)
        var shortTimeout = timeval(tv_sec: 1, tv_usec: 0)
        _ = setsockopt(connection.fd, SOL_SOCKET, SO_RCVTIMEO, &shortTimeout, socklen_t(MemoryLayout<timeval>.size))
        var params = JSONWriter()
        params.beginObject()
        params.field("message", Messages.create(nonce: Messages.nowMs()))
        params.endObject()
        let line =
            #"{"jsonrpc":"2.0","id":1,"method":"sign","params":"# + String(decoding: params.bytes, as: UTF8.self)
            + "}\n"
        #expect(connection.send(Array(line.utf8)))
        #expect(connection.readLine() == nil, "an answer before the start records")
        let logged = Self.text(stateDir + "/audit.log")
        #expect(logged.isEmpty, "records before the start: \(logged)")
        // Released: the start records, then the decision.
        try FileManager.default.removeItem(atPath: hold)
        var longTimeout = timeval(tv_sec: 20, tv_usec: 0)
        _ = setsockopt(connection.fd, SOL_SOCKET, SO_RCVTIMEO, &longTimeout, socklen_t(MemoryLayout<timeval>.size))
        let reply = try #require(connection.readLine())
        #expect(reply.contains("\"signature\""), "\(reply)")
        process.terminate()
        process.waitUntilExit()
        let events = try EndToEndTests.auditRecords(stateDir).map { $0["event"] as? String ?? "" }
        #expect(Array(events.prefix(3)) == ["start", "policy_loaded", "sign"], "\(events)")
    }
}
