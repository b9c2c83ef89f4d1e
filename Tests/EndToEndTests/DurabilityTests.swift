import CustodianClient
import CustodianCore
import CustodianTestSupport
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Thread-safe accumulation for the concurrent clients.
final class Collected<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [T] = []

    func append(_ item: T) {
        lock.lock()
        items.append(item)
        lock.unlock()
    }

    var all: [T] {
        lock.lock()
        defer { lock.unlock() }
        return items
    }
}

final class Flag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false

    func set() {
        lock.lock()
        value = true
        lock.unlock()
    }

    var isSet: Bool {
        lock.lock()
        defer { lock.unlock() }
        return value
    }
}

@Suite("Durability: nothing lost, nothing conflicting, nothing silently edited", .serialized)
struct DurabilityTests {
    static let policy = """
        version = 1
        [requests]
        methods = ["create_app_session", "submit_app_state", "close_app_session"]
        max_age_ms = 600000
        [assets.usdc]
        decimals = 6
        [sessions]
        max_participants = 8

        [counterparties]
        allow = []

        [velocity]
        window_s = 86400
        max_own_loss = {}

        """

    static func agentArguments(_ workspace: Workspace, key: (String, String), stateDir: String) throws -> [String] {
        let policyFile = try workspace.write("policy.toml", policy)
        return [
            "--key-file", key.0, "--policy", policyFile, "--state-dir", stateDir, "--passphrase-file", key.1,
            "--checkpoint-every", "25", "--snapshot-every", "7",
        ]
    }

    /// A signed message: the envelope text received and its req's allocations.
    struct Received: Sendable {
        var signature: String
        var req: String
    }

    /// The req span of a signed envelope `{"req":…,"sig":[…]}`.
    static func req(ofEnvelope envelope: String) -> String? {
        guard envelope.hasPrefix("{\"req\":"), let range = envelope.range(of: ",\"sig\":[", options: .backwards) else {
            return nil
        }
        return String(envelope[envelope.index(envelope.startIndex, offsetBy: 7)..<range.lowerBound])
    }

    static func sessionID(of create: String) throws -> String {
        let request = try NitroRPCv0Reader().read(Array(create.utf8)).get()
        guard case .create(let definition, _, _) = request.body else { throw HarnessError("not a create") }
        return definition.appSessionID
    }

    /// Two processes that spin: the host is loaded while the crash test runs, as a busy server is.
    final class BusyLoops {
        let processes: [Process]

        init(_ count: Int = 2) throws {
            processes = try (0..<count).map { _ in
                let process = Process()
                process.executableURL = URL(fileURLWithPath: "/bin/sh")
                // Spins while the test process lives, so that a killed test run leaves no loop behind.
                process.arguments = ["-c", "parent=$PPID; while kill -0 $parent 2>/dev/null; do :; done"]
                try process.run()
                return process
            }
        }

        deinit {
            // SIGKILL: the test runner's children inherit a blocked SIGTERM.
            for process in processes {
                kill(process.processIdentifier, SIGKILL)
                process.waitUntilExit()
            }
        }
    }

    static func nowMs() -> UInt64 { UInt64(Date().timeIntervalSince1970 * 1000) }

    /// The crash test of CONTRACT §6's promise, as the host runs it: `CUSTODIAN_CRASH_KILLS` (default 40) SIGKILLs at
    /// random moments while 4 clients reconnect for every request as fast as they can (also while the agent
    /// starts) and two busy loops compete for the CPUs.
    @Test("SIGKILL at random moments, 40 times, under reconnecting clients and busy CPUs: nothing lost or misplaced")
    func crashLoop() throws {
        let kills = ProcessInfo.processInfo.environment["CUSTODIAN_CRASH_KILLS"].flatMap { Int($0) } ?? 40
        let workspace = try Workspace()
        let key = try EndToEndTests.importKeyA(workspace)
        let stateDir = workspace.path + "/state"
        let socket = workspace.path + "/agent.sock"
        // Small segments: the kills land before, inside and after rollovers too.
        let arguments =
            try Self.agentArguments(workspace, key: key, stateDir: stateDir) + ["--segment-max-records", "40"]
        let received = Collected<Received>()
        let closed = Collected<String>()
        let killedAt = Collected<UInt64>()
        var generator = SystemRandomNumberGenerator()
        let busy = try BusyLoops()
        let stop = Flag()
        let group = DispatchGroup()
        for client in 0..<4 {
            group.enter()
            Thread.detachNewThread {
                defer { group.leave() }
                var counter: UInt64 = 0
                // One connection per request, retried at once when the agent is down or starting.
                func sign(_ message: String) -> SignResult? {
                    while !stop.isSet {
                        do {
                            return try CustodianClient(socketPath: socket, timeoutSeconds: 5).sign(
                                message: Array(message.utf8))
                        } catch .unreachable(let why) where why.hasPrefix(socket) {
                            continue  // connect() failed: nothing was sent
                        } catch {
                            return nil  // refused, or the connection dropped by a kill: the decision may be lost
                        }
                    }
                    return nil
                }
                while !stop.isSet {
                    counter += 1
                    let nonce = UInt64(client) << 40 | counter
                    let create = Messages.create(nonce: nonce, "0", "10")
                    guard let id = try? Self.sessionID(of: create) else { return }
                    guard let signed = sign(create) else { continue }
                    received.append(
                        Received(signature: signed.signature, req: Self.req(ofEnvelope: signed.message) ?? ""))
                    guard let closedSigned = sign(Messages.close(id: id, "4", "6")) else { continue }
                    received.append(
                        Received(
                            signature: closedSigned.signature, req: Self.req(ofEnvelope: closedSigned.message) ?? ""))
                    closed.append(id)
                    // A conflicting close of an already closed session must never be signed.
                    if let earlier = closed.all.randomElement(), let bad = sign(Messages.close(id: earlier, "10", "0"))
                    {
                        received.append(
                            Received(signature: bad.signature, req: Self.req(ofEnvelope: bad.message) ?? ""))
                    }
                }
            }
        }
        for round in 0..<kills {
            let agent: RunningAgent
            do {
                agent = try RunningAgent(
                    arguments: arguments, socket: socket, logFile: workspace.path + "/agent\(round).log")
            } catch {
                // Kept for a post-mortem: the workspace (state directory and every run's log) goes with the test.
                let kept = "/tmp/custodian-crashloop-failure-\(Self.nowMs())"
                // cp -a goes on past the socket (FileManager's copy stopped there, before the state directory, the
                // second time this failed: in CI under AddressSanitizer, 2026-12-01).
                _ = try? Harness.run("/bin/cp", ["-a", workspace.path, kept])
                stop.set()
                throw HarnessError("round \(round): \(error); the workspace is copied to \(kept)")
            }
            Thread.sleep(forTimeInterval: Double.random(in: 0.02...0.4, using: &generator))
            kill(agent.process.processIdentifier, SIGKILL)
            killedAt.append(Self.nowMs())
            agent.process.waitUntilExit()
        }
        stop.set()
        #expect(group.wait(timeout: .now() + 30) == .success)
        withExtendedLifetime(busy) {}

        // Periodic snapshots (every 7 records) were written and vouched for between the kills, and starts used them.
        let fromSnapshot = (0..<kills).filter { round in
            (try? String(contentsOfFile: workspace.path + "/agent\(round).log", encoding: .utf8))?
                .contains("from the snapshot at seq") == true
        }
        #expect(fromSnapshot.count >= kills / 4, "starts from a snapshot: rounds \(fromSnapshot)")

        // A last, clean start: the restarted agent's state is what the log implies.
        let agent = try RunningAgent(arguments: arguments, socket: socket, logFile: workspace.path + "/final.log")
        let status = try PolicyEndToEndTests.status(socket)
        #expect(agent.stop() == 0)
        // The ledger the starts built from snapshots is the one the whole log implies: without the snapshots, a
        // start replays every segment and finds the same sessions.
        for name in ["ledger.snapshot", "ledger.snapshot.prev"] { unlink(stateDir + "/" + name) }
        let whole = try RunningAgent(arguments: arguments, socket: socket, logFile: workspace.path + "/whole.log")
        #expect(whole.log.contains("from the whole log"), "\(whole.log)")
        let replayed = try PolicyEndToEndTests.status(socket)
        #expect(whole.stop() == 0)
        #expect(replayed["sessions"] as? [String: Int] == status["sessions"] as? [String: Int])

        let verify = try Harness.custodian(["audit", "verify", stateDir, "--address", EndToEndTests.addressA])
        #expect(verify.status == 0, "\(verify.stderr)")
        let segments = try EndToEndTests.logFiles(stateDir)
        #expect(segments.count > 3, "the log rolled over at 40 records: \(segments.count) files")
        let all = try EndToEndTests.auditRecords(stateDir)
        // No decision before the start record of the run that made it: every record after a start record was made
        // before the first kill that followed that start (a decision of the next run, written before its own start
        // record, would sit here with a later time).
        let killTimes = killedAt.all
        var runEnds: UInt64 = .max
        var starts = 0
        var recoveredRollovers = 0
        for record in all {
            let time = UInt64(record["time_ms"] as? Int ?? 0)
            if record["event"] as? String == "start" {
                starts += 1
                runEnds = killTimes.first { $0 >= time } ?? .max
                continue
            }
            // A start that finds a rollover cut short begins the next segment before its own start record: that
            // record (reason "start") must be the new file's first, and decides nothing.
            if record["event"] as? String == "segment" && record["reason"] as? String == "start" {
                recoveredRollovers += 1
                continue
            }
            #expect(
                time <= runEnds, "seq \(record["seq"] ?? 0) (\(record["event"] ?? "")) decided after its run was killed"
            )
        }
        #expect(starts == killTimes.count + 2)  // and the two clean starts at the end
        let records = all.filter {
            $0["event"] as? String == "sign" && $0["decision"] as? String == "allow"
        }
        var logged: [String: String] = [:]
        for record in records {
            if let signature = record["signature"] as? String { logged[signature] = record["req"] as? String }
        }
        let got = received.all
        #expect(got.count > 40, "the clients got \(got.count) signatures")
        for item in got {
            #expect(logged[item.signature] == item.req, "a signature a client received is not in the log")
        }
        print(
            "crash loop: \(kills) SIGKILLs under 4 reconnecting clients and 2 busy loops; \(got.count) signatures "
                + "received, all in the log; \(all.count) records; \(starts) starts, \(fromSnapshot.count) from a "
                + "periodic snapshot; \(segments.count) log segments, \(recoveredRollovers) rollovers cut by a kill and "
                + "finished by the next start; no decision before its run's start record")
        // No session has two different signed closes.
        var closes: [String: Set<String>] = [:]
        var created = Set<String>()
        for record in records {
            guard let req = record["req"] as? String, let id = record["app_session_id"] as? String else { continue }
            let parsed = try JSONSerialization.jsonObject(with: Data(req.utf8)) as? [Any]
            let params = parsed?[2] as? [String: Any]
            if record["method"] as? String == "create_app_session" { created.insert(id) }
            if record["method"] as? String == "close_app_session", let allocations = params?["allocations"] {
                let canonical = try JSONSerialization.data(withJSONObject: allocations, options: .sortedKeys)
                closes[id, default: []].insert(String(decoding: canonical, as: UTF8.self))
            }
        }
        #expect(closes.values.allSatisfy { $0.count == 1 })
        let sessions = status["sessions"] as? [String: Int]
        #expect(sessions?["closed"] == closes.count)
        #expect(sessions?["open"] == created.count - closes.count)
    }

    @Test("audit verify finds and locates an edited amount, a deleted line, two swapped lines, a truncated last line")
    func tampering() throws {
        let workspace = try Workspace()
        let key = try EndToEndTests.importKeyA(workspace)
        let stateDir = workspace.path + "/state"
        let socket = workspace.path + "/agent.sock"
        let agent = try RunningAgent(
            arguments: try Self.agentArguments(workspace, key: key, stateDir: stateDir), socket: socket,
            logFile: workspace.path + "/agent.log")
        let nonce = Messages.nowMs()
        let create = Messages.create(nonce: nonce)
        #expect(try EndToEndTests.sign(agent, create, in: workspace).status == 0)
        let id = try Self.sessionID(of: create)
        #expect(try EndToEndTests.sign(agent, Messages.close(id: id, "100", "49"), in: workspace).status == 2)
        #expect(try EndToEndTests.sign(agent, Messages.close(id: id, "75", "75"), in: workspace).status == 0)
        #expect(agent.stop() == 0)
        let original = try String(contentsOfFile: stateDir + "/audit.log", encoding: .utf8)
        var lines = original.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        #expect(lines.removeLast().isEmpty)
        func verify(_ text: String) throws -> Harness.Output {
            let path = try workspace.write("tampered-\(UUID().uuidString).log", text)
            return try Harness.custodian(["audit", "verify", path, "--address", EndToEndTests.addressA])
        }
        func joined(_ lines: [String]) -> String { lines.map { $0 + "\n" }.joined() }
        #expect(try verify(original).status == 0)

        let closeLine = try #require(
            lines.firstIndex { $0.contains("\"decision\":\"allow\"") && $0.contains("close_app_session") })
        var edited = lines
        edited[closeLine] = edited[closeLine].replacingOccurrences(
            of: "\\\"amount\\\":\\\"75\\\"", with: "\\\"amount\\\":\\\"7\\\"")
        #expect(edited[closeLine] != lines[closeLine])
        let editedResult = try verify(joined(edited))
        #expect(editedResult.status == 2)
        #expect(editedResult.stderr.contains("line \(closeLine + 1):"), "\(editedResult.stderr)")
        #expect(editedResult.stderr.contains("edited"))

        var deleted = lines
        deleted.remove(at: 3)
        let deletedResult = try verify(joined(deleted))
        #expect(deletedResult.status == 2)
        #expect(deletedResult.stderr.contains("line 4:"), "\(deletedResult.stderr)")

        var swapped = lines
        swapped.swapAt(2, 3)
        let swappedResult = try verify(joined(swapped))
        #expect(swappedResult.status == 2)
        #expect(swappedResult.stderr.contains("line 3:"), "\(swappedResult.stderr)")

        let truncated = String(original.dropLast(12))
        let truncatedResult = try verify(truncated)
        #expect(truncatedResult.status == 2)
        #expect(truncatedResult.stderr.contains("line \(lines.count): truncated"), "\(truncatedResult.stderr)")

        // The last line is a checkpoint: an edit of its signature is caught by the signature itself.
        var forged = lines
        let last = lines.count - 1
        forged[last] = forged[last].replacingOccurrences(of: "\"signature\":\"0x", with: "\"signature\":\"0x00")
        forged[last] = forged[last].replacingOccurrences(of: "\"signature\":\"0x00", with: "\"signature\":\"0x1")
        let forgedResult = try verify(joined(forged))
        #expect(forgedResult.status == 2)
        #expect(forgedResult.stderr.contains("line \(lines.count):"), "\(forgedResult.stderr)")
    }

    @Test("a full disk under the state directory: refused with audit.unavailable and nothing signed; then recovery")
    func fullDisk() throws {
        let workspace = try Workspace()
        let key = try EndToEndTests.importKeyA(workspace)
        let mount = workspace.path + "/small"
        try FileManager.default.createDirectory(atPath: mount, withIntermediateDirectories: false)
        let mounted = try Harness.run("/bin/mount", ["-t", "tmpfs", "-o", "size=256k,mode=0700", "tmpfs", mount])
        try #require(mounted.status == 0, "cannot mount a tmpfs: \(mounted.stderr)")
        defer { _ = try? Harness.run("/bin/umount", ["-l", mount]) }
        let stateDir = mount + "/state"
        let socket = workspace.path + "/agent.sock"
        let agent = try RunningAgent(
            arguments: try Self.agentArguments(workspace, key: key, stateDir: stateDir), socket: socket,
            logFile: workspace.path + "/agent.log")
        let first = Messages.create(nonce: Messages.nowMs())
        #expect(try EndToEndTests.sign(agent, first, in: workspace).status == 0)

        // Fill the filesystem.
        let filler = mount + "/filler"
        let handle = try #require(
            FileHandle(
                forWritingAtPath: {
                    _ = FileManager.default.createFile(atPath: filler, contents: nil); return filler
                }()))
        let block = Data(count: 4096)
        while (try? handle.write(contentsOf: block)) != nil {}
        try handle.close()

        // The log's last page may still have room for a record or two; sign until the first refusal.
        var refusedMessage: String?
        var open = 1
        for attempt in 1...50 {
            let message = Messages.create(nonce: Messages.nowMs() + UInt64(attempt))
            let logBefore = try Data(contentsOf: URL(fileURLWithPath: stateDir + "/audit.log"))
            let result = try EndToEndTests.sign(agent, message, in: workspace)
            if result.status == 0 {
                open += 1
                continue
            }
            #expect(result.status == 2)
            #expect(result.stdout.isEmpty, "no signature leaves")
            #expect(result.stderr.contains("audit.unavailable"), "\(result.stderr)")
            #expect(try Data(contentsOf: URL(fileURLWithPath: stateDir + "/audit.log")) == logBefore)
            refusedMessage = message
            break
        }
        let second = try #require(refusedMessage, "the full filesystem never refused a record")
        #expect((try PolicyEndToEndTests.status(socket)["sessions"] as? [String: Int])?["open"] == open)

        // Space again: the agent recovers by itself.
        try FileManager.default.removeItem(atPath: filler)
        let recovered = try EndToEndTests.sign(agent, second, in: workspace)
        #expect(recovered.status == 0, "\(recovered.stderr)")
        #expect((try PolicyEndToEndTests.status(socket)["sessions"] as? [String: Int])?["open"] == open + 1)
        #expect(agent.stop() == 0)
        let verify = try Harness.custodian(["audit", "verify", stateDir + "/audit.log"])
        #expect(verify.status == 0, "\(verify.stderr)")
    }
}

@Suite("Operators: session list, show and release; one writer per state directory", .serialized)
struct OperatorTests {
    @Test("a session stuck behind a signed, never-executed close is released by an audited operator action")
    func release() throws {
        let workspace = try Workspace()
        let key = try EndToEndTests.importKeyA(workspace)
        let stateDir = workspace.path + "/state"
        let socket = workspace.path + "/agent.sock"
        let arguments = try DurabilityTests.agentArguments(workspace, key: key, stateDir: stateDir)
        var agent = try RunningAgent(arguments: arguments, socket: socket, logFile: workspace.path + "/agent1.log")
        let create = Messages.create(nonce: Messages.nowMs())
        #expect(try EndToEndTests.sign(agent, create, in: workspace).status == 0)
        let id = try DurabilityTests.sessionID(of: create)
        #expect(try EndToEndTests.sign(agent, Messages.close(id: id, "75", "75"), in: workspace).status == 0)
        let conflicting = Messages.close(id: id, "100", "50")
        #expect(try EndToEndTests.sign(agent, conflicting, in: workspace).stderr.contains("policy.session_closed"))

        // While the agent runs, neither a second agent nor an operator may write its log.
        let second = try Harness.custodian(["serve", "--socket", workspace.path + "/second.sock"] + arguments)
        #expect(second.status == 1)
        #expect(second.stderr.contains("another custodian process is using"), "\(second.stderr)")
        let early = try Harness.custodian([
            "session", "release", id, "--state-version", "2", "--reason", "x", "--state-dir", stateDir,
        ])
        #expect(early.status == 1)
        #expect(early.stderr.contains("an agent is running"), "\(early.stderr)")
        #expect(agent.stop() == 0)

        let list = try Harness.custodian(["session", "list", "--state-dir", stateDir])
        #expect(list.status == 0)
        #expect(list.stdout.contains("\"app_session_id\":\"\(id)\",\"status\":\"closed\""), "\(list.stdout)")
        let released = try Harness.custodian([
            "session", "release", id, "--state-version", "2", "--reason", "the close was never executed by ClearNode",
            "--state-dir", stateDir,
        ])
        #expect(released.status == 0, "\(released.stderr)")
        #expect(released.stdout.contains("closed at version 2 -> open at version 1"), "\(released.stdout)")
        let show = try Harness.custodian(["session", "show", id, "--state-dir", stateDir])
        let shown = try JSONSerialization.jsonObject(with: Data(show.stdout.utf8)) as? [String: Any]
        #expect(shown?["status"] as? String == "open")
        let history = shown?["history"] as? [[String: Any]] ?? []
        #expect(history.map { $0["event"] as? String } == ["sign", "sign", "sign", "operator"])
        #expect(history.last?["reason_text"] as? String == "the close was never executed by ClearNode")

        // The restarted agent replays the release: the other close can now be signed.
        agent = try RunningAgent(arguments: arguments, socket: socket, logFile: workspace.path + "/agent2.log")
        let signed = try EndToEndTests.sign(agent, conflicting, in: workspace)
        #expect(signed.status == 0, "\(signed.stderr)")
        #expect(agent.stop() == 0)
        let verify = try Harness.custodian(["audit", "verify", stateDir + "/audit.log"])
        #expect(verify.status == 0, "\(verify.stderr)")
        let operatorRecord = try EndToEndTests.auditRecords(stateDir).first { $0["event"] as? String == "operator" }
        #expect((operatorRecord?["peer"] as? [String: Any])?["uid"] as? Int == Int(getuid()))
        #expect((operatorRecord?["policy_hash"] as? String)?.count == 64)
    }
}

extension OperatorTests {
    static func submit(id: String, version: UInt64, _ amountA: String, _ amountB: String) -> String {
        "{\"req\":[\(version + 10),\"submit_app_state\",{\"app_session_id\":\"\(id)\",\"intent\":\"operate\","
            + "\"version\":\(version),\"allocations\":\(Messages.allocations(amountA, amountB))},\(Messages.nowMs())],"
            + "\"sig\":[]}"
    }

    @Test("releases pop one state at a time, by version: two releases return a session to its create, not oblivion")
    func releaseByVersion() throws {
        let workspace = try Workspace()
        let key = try EndToEndTests.importKeyA(workspace)
        let stateDir = workspace.path + "/state"
        let socket = workspace.path + "/agent.sock"
        let policy = try workspace.write(
            "policy.toml",
            """
            version = 1
            [requests]
            methods = ["create_app_session", "submit_app_state", "close_app_session"]
            max_age_ms = 600000
            [sessions]
            [assets.usdc]
            decimals = 6
            max_own_loss = "500"
            [counterparties]
            allow = []
            [velocity]
            window_s = 86400
            max_own_loss = {}

            """)
        let arguments = [
            "--key-file", key.0, "--policy", policy, "--state-dir", stateDir, "--passphrase-file", key.1,
        ]
        var agent = try RunningAgent(arguments: arguments, socket: socket, logFile: workspace.path + "/agent1.log")
        let create = Messages.create(nonce: Messages.nowMs(), "1000", "0")
        #expect(try EndToEndTests.sign(agent, create, in: workspace).status == 0)
        let id = try DurabilityTests.sessionID(of: create)
        for (version, a, b) in [(UInt64(2), "900", "100"), (3, "800", "200")] {
            let signed = try EndToEndTests.sign(agent, Self.submit(id: id, version: version, a, b), in: workspace)
            #expect(signed.status == 0, "\(signed.stderr)")
        }
        let lossy = Messages.close(id: id, "0", "1000")
        #expect(try EndToEndTests.sign(agent, lossy, in: workspace).stderr.contains("policy.own_loss_exceeded"))
        #expect(agent.stop() == 0)

        func release(_ version: String, _ extra: [String] = []) throws -> Harness.Output {
            try Harness.custodian(
                ["session", "release", id, "--state-version", version, "--reason", "test", "--state-dir", stateDir]
                    + extra)
        }
        let older = try release("2")
        #expect(older.status == 2 && older.stderr.contains("not the latest signed state"), "\(older.stderr)")
        var released = try release("3")
        #expect(
            released.stdout.contains("open at version 3 -> open at version 2"), "\(released.stdout) \(released.stderr)")
        released = try release("2")
        #expect(
            released.stdout.contains("open at version 2 -> open at version 1"), "\(released.stdout) \(released.stderr)")
        let create1 = try release("1")
        #expect(create1.status == 2 && create1.stderr.contains("--forget-session"), "\(create1.stderr)")

        // The session is back at its create: the same definition with other funding, and the lossy close, refused.
        agent = try RunningAgent(arguments: arguments, socket: socket, logFile: workspace.path + "/agent2.log")
        guard case .create(let definition, _, _) = try NitroRPCv0Reader().read(Array(create.utf8)).get().body else {
            throw HarnessError("not a create")
        }
        let unfunded = try EndToEndTests.sign(
            agent, Messages.create(nonce: definition.nonce, "0", "1000"), in: workspace)
        #expect(unfunded.stderr.contains("policy.session_exists"), "\(unfunded.stderr)")
        let refused = try EndToEndTests.sign(agent, lossy, in: workspace)
        #expect(refused.stderr.contains("policy.own_loss_exceeded"), "\(refused.stderr)")
        let next = try EndToEndTests.sign(agent, Self.submit(id: id, version: 2, "700", "300"), in: workspace)
        #expect(next.status == 0, "version 2 is the next again: \(next.stderr)")
        #expect(agent.stop() == 0)
        #expect(try Harness.custodian(["audit", "verify", stateDir]).status == 0)
    }
}

@Suite("Signals")
struct SignalTests {
    /// Whether the process handles or ignores SIGTERM yet (bit 14 of SigCgt or SigIgn).
    static func sigtermDisposed(_ pid: Int32) -> Bool {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return false }
        for line in status.split(separator: "\n") where line.hasPrefix("SigCgt:") || line.hasPrefix("SigIgn:") {
            if let mask = UInt64(line.split(separator: "\t").last ?? "", radix: 16), mask & (1 << 14) != 0 {
                return true
            }
        }
        return false
    }

    @Test("a SIGTERM that arrives while the agent starts is not lost: the agent stops cleanly once started")
    func sigtermDuringStart() throws {
        let workspace = try Workspace()
        // A key with the moderate Argon2id cost: unsealing takes about a second, the window for the signal.
        let passphrase = try workspace.write("passphrase", "slow to unseal\n")
        let keyFile = workspace.path + "/key.sealed"
        let created = try Harness.custodian([
            "key", "new", "--key-file", keyFile, "--passphrase-file", passphrase, "--kdf", "moderate",
        ])
        #expect(created.status == 0)
        let key = (keyFile, passphrase)
        let stateDir = workspace.path + "/state"
        // Launched detached, as a service manager would (and with no descriptor of this process inherited:
        // Foundation's Process would otherwise wait for it).
        let arguments =
            [try Harness.binary(), "serve", "--socket", workspace.path + "/agent.sock"]
            + (try DurabilityTests.agentArguments(workspace, key: key, stateDir: stateDir))
        let launcher = """
            import signal, subprocess, sys
            log = open(sys.argv[1], "w")
            # An empty signal mask, as systemd gives a service: a blocked SIGTERM would wait, pending, for a handler.
            p = subprocess.Popen(sys.argv[2:], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
                                 start_new_session=True, close_fds=True,
                                 preexec_fn=lambda: signal.pthread_sigmask(signal.SIG_SETMASK, []))
            print(p.pid)
            """
        let launched = try Harness.run("/usr/bin/python3", ["-c", launcher, workspace.path + "/agent.log"] + arguments)
        let pid = try #require(Int32(launched.stdout.trimmingCharacters(in: .whitespacesAndNewlines)))
        defer { kill(pid, SIGKILL) }
        let deadline = Date().addingTimeInterval(10)
        while !Self.sigtermDisposed(pid) && Date() < deadline { usleep(200) }
        Thread.sleep(forTimeInterval: 0.3)  // now inside the unsealing
        #expect(!FileManager.default.fileExists(atPath: workspace.path + "/agent.sock"), "still starting")
        kill(pid, SIGTERM)
        let stopped = Date().addingTimeInterval(15)
        while kill(pid, 0) == 0 && Date() < stopped {
            // A zombie (exited, not yet reaped by init) counts as stopped.
            if let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
                status.contains("State:\tZ")
            {
                break
            }
            Thread.sleep(forTimeInterval: 0.05)
        }
        let log = (try? String(contentsOfFile: workspace.path + "/agent.log", encoding: .utf8)) ?? ""
        #expect(log.contains("custodian: stopped"), "the agent ignored a SIGTERM sent during its start: \(log)")
    }
}
