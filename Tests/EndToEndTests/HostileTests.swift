import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Hostile clients and careless files, against the built binary: backpressure, linear parsing, descriptor limits,
/// slow senders, bounded refusals, private files, the policy read whole.
@Suite("Hostile clients and careless files", .serialized)
struct HostileTests {
    /// The agent's CPU time so far, in seconds (every thread's, from schedstat: nanoseconds, unlike the ticks of stat).
    static func cpuSeconds(_ pid: Int32) -> Double {
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
        var total = 0.0
        for task in tasks {
            guard let text = try? String(contentsOfFile: "/proc/\(pid)/task/\(task)/schedstat", encoding: .utf8),
                let first = text.split(separator: " ").first, let nanoseconds = Double(first)
            else { continue }
            total += nanoseconds / 1e9
        }
        return total
    }

    static func raiseOwnDescriptorLimit() {
        var files = rlimit(rlim_cur: 8192, rlim_max: 8192)
        setrlimit(Int32(RLIMIT_NOFILE.rawValue), &files)
    }

    static func startAgent(
        _ workspace: Workspace, extra: [String] = [], launcher: [String] = [], policy: String = HardeningTests.policy
    ) throws -> RunningAgent {
        let key = try EndToEndTests.importKeyA(workspace)
        let policyFile = try workspace.write("policy.toml", policy)
        return try RunningAgent(
            arguments: [
                "--key-file", key.0, "--policy", policyFile, "--state-dir", workspace.path + "/state",
                "--passphrase-file", key.1,
            ] + extra,
            socket: workspace.path + "/agent.sock", logFile: workspace.path + "/agent.log", launcher: launcher)
    }

    /// policies/default.toml.
    static func defaultPolicy() throws -> [UInt8] {
        Array(
            try Data(
                contentsOf: URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
                    .deletingLastPathComponent().appendingPathComponent("policies/default.toml")))
    }

    static func sha256Hex(_ path: String) throws -> String {
        let output = try Harness.run("/usr/bin/sha256sum", [path])
        return String(output.stdout.prefix(64))
    }

    @Test("a client pipelining 10,000 requests with 60 KB ids without reading: memory stays bounded, others are served")
    func pipeliningWithoutReading() throws {
        let workspace = try Workspace()
        let agent = try Self.startAgent(workspace, extra: ["--rate-limit", "0"])
        let pid = agent.process.processIdentifier
        let before = try HardeningTests.residentKiB(pid)
        let connection = try RawConnection(agent.socket)
        let id = String(repeating: "7", count: 60_000)
        let line = Array("{\"jsonrpc\":\"2.0\",\"id\":\"\(id)\",\"method\":\"address\"}\n".utf8)
        let sent = SharedCounter()
        let writer = Thread {
            for _ in 0..<10_000 {
                guard connection.send(line) else { return }
                sent.increment()
            }
        }
        writer.start()
        // The client writes until the agent stops reading it; the agent must not buffer what it cannot send.
        var peak = before
        for _ in 0..<20 {
            Thread.sleep(forTimeInterval: 0.2)
            peak = max(peak, try HardeningTests.residentKiB(pid))
            let status = try Harness.custodian(["status", "--socket", agent.socket])
            #expect(status.status == 0, "another client is served meanwhile: \(status.stderr)")
        }
        #expect(sent.value < 10_000, "the agent read everything: no backpressure")
        if ProcessInfo.processInfo.environment["CUSTODIAN_SANITIZER"] == nil {
            #expect(peak - before <= 16 * 1024, "RSS grew from \(before) KiB to \(peak) KiB")
        }
        // Reading drains it: every reply arrives in order, then the agent reads on.
        var replies = 0
        var buffer: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 20)
        while replies < 200 {
            let count = chunk.withUnsafeMutableBytes { recv(connection.fd, $0.baseAddress, $0.count, 0) }
            guard count > 0 else { break }
            buffer += chunk[0..<count]
            while let newline = buffer.firstIndex(of: 0x0A) {
                #expect(String(decoding: buffer[0..<newline], as: UTF8.self).contains(EndToEndTests.addressA))
                buffer.removeSubrange(0...newline)
                replies += 1
            }
        }
        // One read may end past the 200th reply (a chunk holds several): at least 200, each checked above.
        #expect(replies >= 200)
        shutdown(connection.fd, Int32(SHUT_RDWR))
        while writer.isExecuting { Thread.sleep(forTimeInterval: 0.01) }
        #expect(agent.stop() == 0)
    }

    @Test("a line with the most keys that fit is refused, in time linear in its size")
    func manyKeys() throws {
        let workspace = try Workspace()
        let agent = try Self.startAgent(workspace, extra: ["--rate-limit", "0"])
        let pid = agent.process.processIdentifier
        // Both about 64 KiB, both parsed in full and refused: a request of 600 allocations, and one whose
        // parameters hold as many distinct keys as fit ("k0":0,"k1":0,…).
        var allocations: [String] = []
        while allocations.joined(separator: ",").utf8.count < 60_000 {
            allocations.append("{\"participant\":\"\(Messages.a)\",\"asset\":\"usdc\",\"amount\":\"1\"}")
        }
        let ordinary =
            "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"status\",\"params\":{\"allocations\":[\(allocations.joined(separator: ","))]}}\n"
        var keys: [String] = []
        while keys.joined(separator: ",").utf8.count < 60_000 { keys.append("\"k\(keys.count)\":0") }
        let manyKeys =
            "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"status\",\"params\":{\(keys.joined(separator: ","))}}\n"
        #expect(ordinary.utf8.count < 65_536 && manyKeys.utf8.count < 65_536)
        let connection = try RawConnection(agent.socket)
        func cost(_ line: String) -> Double {
            let bytes = Array(line.utf8)
            let start = Self.cpuSeconds(pid)
            for _ in 0..<100 {
                connection.send(bytes)
                let reply = connection.readLine() ?? ""
                #expect(reply.contains("\"error\""), "\(reply.prefix(200))")
            }
            return Self.cpuSeconds(pid) - start
        }
        _ = cost(ordinary)  // warm up
        let ordinaryCost = cost(ordinary)
        let manyKeysCost = cost(manyKeys)
        print("many keys: \(manyKeysCost / ordinaryCost) × an ordinary 64 KiB line (\(keys.count) keys)")
        #expect(manyKeysCost <= 10 * ordinaryCost, "\(manyKeysCost) s against \(ordinaryCost) s for 100 lines")
        #expect(agent.stop() == 0)
    }

    @Test("under ulimit -n 256 the agent lowers max_connections and says so; held connections cost no CPU")
    func descriptorLimit() throws {
        Self.raiseOwnDescriptorLimit()
        let workspace = try Workspace()
        let agent = try Self.startAgent(
            workspace, launcher: ["/bin/sh", "-c", "ulimit -n 256 && exec \"$0\" \"$@\""])
        let pid = agent.process.processIdentifier
        #expect(agent.log.contains("max_connections lowered to 192"), "\(agent.log)")
        // More connections than fit: those over the limit are told so and closed, not left hanging.
        var held: [RawConnection] = []
        for _ in 0..<192 { held.append(try RawConnection(agent.socket)) }
        // Time for the agent to admit them all (FIFO from the backlog: the extras below come after them).
        Thread.sleep(forTimeInterval: 1)
        var refusedExtra = 0
        for _ in 0..<60 {
            let extra = try RawConnection(agent.socket)
            let answer = String(decoding: extra.readToEnd(), as: UTF8.self)
            if answer.contains("too many connections") { refusedExtra += 1 }
        }
        #expect(refusedExtra == 60)
        let before = Self.cpuSeconds(pid)
        Thread.sleep(forTimeInterval: 5)
        let used = Self.cpuSeconds(pid) - before
        #expect(used < 0.5, "the agent used \(used) s of CPU in 5 s while full")
        // A new client is served once another closes (as soon as the agent has seen it close: under ThreadSanitizer
        // on a host loaded by the other suites' busy loops, that took more than 5 s once).
        held.removeLast()
        var status = try Harness.custodian(["status", "--socket", agent.socket])
        let deadline = Date().addingTimeInterval(30)
        while status.status != 0 && Date() < deadline {
            Thread.sleep(forTimeInterval: 0.1)
            status = try Harness.custodian(["status", "--socket", agent.socket])
        }
        #expect(status.status == 0, "\(status.stderr)")
        held.removeAll()
        #expect(agent.stop() == 0)

        // Too few descriptors to serve at all: refused, with the limit to set.
        let tiny = try Harness.run(
            "/bin/sh",
            [
                "-c", "ulimit -n 40 && exec \"$0\" \"$@\"", try Harness.binary(), "serve", "--socket",
                workspace.path + "/tiny.sock",
            ]
                + (try HardeningTests.agentArguments(
                    workspace, key: (workspace.path + "/key.sealed", workspace.path + "/passphrase"))))
        #expect(tiny.status == 1)
        #expect(tiny.stderr.contains("open-file limit is 40"), "\(tiny.stderr)")
        #expect(tiny.stderr.contains("LimitNOFILE="), "\(tiny.stderr)")
    }

    @Test("1,000 non-blocking clients connecting in a burst all connect")
    func connectBurst() throws {
        Self.raiseOwnDescriptorLimit()
        let workspace = try Workspace()
        let agent = try Self.startAgent(workspace)
        var descriptors: [Int32] = []
        defer { for fd in descriptors { close(fd) } }
        var failures: [String] = []
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (index, byte) in agent.socket.utf8.enumerated() { raw[index] = byte }
        }
        for _ in 0..<1000 {
            let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
            descriptors.append(fd)
            let result = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
                }
            }
            if result != 0 { failures.append(String(cString: strerror(errno))) }
        }
        #expect(failures.isEmpty, "\(failures.count) of 1000 failed: \(Set(failures))")
        #expect(agent.stop() == 0)
    }

    @Test("a client sending a byte per second is closed at the line deadline")
    func slowSender() throws {
        let workspace = try Workspace()
        let agent = try Self.startAgent(workspace, extra: ["--idle-timeout-s", "2"])
        let connection = try RawConnection(agent.socket)
        let line = Array("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"status\"}\n".utf8)
        let began = Date()
        var closedAfter: Double?
        for byte in line {
            guard connection.send([byte]) else { break }
            var poll = pollfd(fd: connection.fd, events: Int16(POLLIN), revents: 0)
            if Glibc.poll(&poll, 1, 500) > 0 {
                closedAfter = Date().timeIntervalSince(began)
                break
            }
        }
        let answer = String(decoding: connection.readToEnd(), as: UTF8.self)
        #expect(answer.contains("line not complete within 2 s"), "\(answer)")
        #expect((closedAfter ?? 99) < 4, "closed after \(closedAfter ?? -1) s")
        #expect(agent.stop() == 0)
    }

    @Test("100 refused 60 KB requests grow the log by under 1 MB, and the log still verifies")
    func boundedRefusals() throws {
        let workspace = try Workspace()
        // A policy that lists its applications: a create for another is refused by the policy, its req recorded.
        let agent = try Self.startAgent(workspace, extra: ["--rate-limit", "0"], policy: EndToEndTests.policy)
        let logPath = workspace.path + "/state/audit.log"
        let before = try FileManager.default.attributesOfItem(atPath: logPath)[.size] as? Int ?? 0
        let connection = try RawConnection(agent.socket)
        // Half refused by the policy (an application it does not list, 60 KB long: its req is kept in part), half
        // refused by the reader (a method name of 60 KB: the detail that quotes it is cut).
        let application = String(repeating: "a", count: 60_000)
        let definition =
            "{\\\"application\\\":\\\"\(application)\\\",\\\"protocol\\\":\\\"NitroRPC/0.4\\\",\\\"participants\\\":"
            + "[\\\"\(Messages.a)\\\",\\\"\(Messages.b)\\\"],\\\"weights\\\":[50,50],\\\"quorum\\\":100,"
            + "\\\"challenge\\\":86400,\\\"nonce\\\":1}"
        let policyRefused =
            "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"sign\",\"params\":{\"message\":\"{\\\"req\\\":[1,"
            + "\\\"create_app_session\\\",{\\\"definition\\\":\(definition),\\\"allocations\\\":[]},\(Messages.nowMs())],"
            + "\\\"sig\\\":[]}\"}}\n"
        let readerRefused =
            "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"sign\",\"params\":{\"message\":\"{\\\"req\\\":[1,\\\""
            + String(repeating: "m", count: 60_000) + "\\\",{},\(Messages.nowMs())],\\\"sig\\\":[]}\"}}\n"
        for index in 0..<100 {
            connection.send(Array((index % 2 == 0 ? policyRefused : readerRefused).utf8))
            let reply = connection.readLine() ?? ""
            #expect(reply.contains("-3200"), "\(reply.prefix(300))")
        }
        #expect(agent.stop() == 0)
        let after = try FileManager.default.attributesOfItem(atPath: logPath)[.size] as? Int ?? 0
        #expect(after - before < 1_000_000, "the log grew by \(after - before) bytes")
        let records = try EndToEndTests.auditRecords(workspace.path + "/state")
        let kept = records.filter { ($0["req_bytes"] as? Int ?? 0) > 60_000 }
        #expect(kept.count == 50, "refusals that keep the start of their req: \(kept.count)")
        #expect(kept.allSatisfy { ($0["req"] as? String)?.utf8.count ?? 0 <= 4096 })
        let verify = try Harness.custodian(["audit", "verify", workspace.path + "/state"])
        #expect(verify.status == 0, "\(verify.stdout) \(verify.stderr)")
    }

    @Test("key and passphrase files open to others are refused, with the chmod that fixes them; a symlinked log too")
    func privateFiles() throws {
        let workspace = try Workspace()
        let (keyFile, passphrase) = try EndToEndTests.importKeyA(workspace)
        let policy = try workspace.write("policy.toml", HardeningTests.policy)
        func serve(_ stateDir: String) throws -> Harness.Output {
            try Harness.custodian([
                "serve", "--socket", workspace.path + "/agent.sock", "--key-file", keyFile, "--policy", policy,
                "--state-dir", stateDir, "--passphrase-file", passphrase,
            ])
        }
        chmod(keyFile, 0o644)
        var output = try serve(workspace.path + "/state")
        #expect(output.status == 1)
        #expect(output.stderr.contains("chmod 600 \(keyFile)"), "\(output.stderr)")
        let address = try Harness.custodian(["key", "address", "--key-file", keyFile])
        #expect(address.status != 0 && address.stderr.contains("chmod 600 \(keyFile)"), "\(address.stderr)")
        chmod(keyFile, 0o600)
        chmod(passphrase, 0o640)
        output = try serve(workspace.path + "/state")
        #expect(output.status != 0)
        #expect(output.stderr.contains("chmod 600 \(passphrase)"), "\(output.stderr)")
        chmod(passphrase, 0o600)
        // audit.log a symbolic link (to a log elsewhere): refused, nothing followed.
        let stateDir = workspace.path + "/linked"
        mkdir(stateDir, 0o700)
        let elsewhere = try workspace.write("elsewhere.log", "")
        symlink(elsewhere, stateDir + "/audit.log")
        output = try serve(stateDir)
        #expect(output.status == 1)
        #expect(output.stderr.contains("not a regular file"), "\(output.stderr)")
        // (Its size, not its text: Foundation's String(contentsOfFile:) leaks an empty file's buffer, which
        // LeakSanitizer reports.)
        #expect((try FileManager.default.attributesOfItem(atPath: elsewhere)[.size] as? Int) == 0)
    }

    @Test("a policy cut at each table boundary or at random points is refused at start and at reload")
    func cutPolicies() throws {
        let workspace = try Workspace()
        let full = try Self.defaultPolicy()
        var cuts = full.indices.filter { full[$0] == UInt8(ascii: "[") && ($0 == 0 || full[$0 - 1] == 0x0A) }
        var generator = SystemRandomNumberGenerator()
        let lastKey = full.count - 1
        for _ in 0..<6 { cuts.append(Int.random(in: 1..<lastKey, using: &generator)) }
        let key = try EndToEndTests.importKeyA(workspace)
        // At start.
        for cut in cuts {
            let policy = try workspace.write("cut.toml", String(decoding: full[0..<cut], as: UTF8.self))
            let output = try Harness.custodian([
                "serve", "--socket", workspace.path + "/agent.sock", "--key-file", key.0, "--policy", policy,
                "--state-dir", workspace.path + "/state", "--passphrase-file", key.1,
            ])
            #expect(output.status == 1 && output.stderr.contains("invalid policy"), "cut at \(cut): \(output.stderr)")
        }
        // At reload: the old policy stays in force.
        let policyPath = try workspace.write("policy.toml", String(decoding: full, as: UTF8.self))
        let agent = try RunningAgent(
            arguments: [
                "--key-file", key.0, "--policy", policyPath, "--state-dir", workspace.path + "/state",
                "--passphrase-file", key.1,
            ], socket: workspace.path + "/agent.sock", logFile: workspace.path + "/agent.log")
        let hash = try PolicyEndToEndTests.status(agent.socket)["policy_hash"] as? String
        for (index, cut) in cuts.enumerated() {
            // Rewritten in place, as an editor or a shell redirection does.
            let handle = try #require(FileHandle(forWritingAtPath: policyPath))
            try handle.truncate(atOffset: 0)
            try handle.write(contentsOf: Data(full[0..<cut]))
            try handle.close()
            kill(agent.process.processIdentifier, SIGHUP)
            try PolicyEndToEndTests.waitFor("reload \(index + 1) refused") {
                ((try? String(contentsOfFile: workspace.path + "/state/audit.log", encoding: .utf8)) ?? "")
                    .components(separatedBy: "policy_reload_failed").count - 1 == index + 1
            }
            #expect(try PolicyEndToEndTests.status(agent.socket)["policy_hash"] as? String == hash)
        }
        #expect(agent.stop() == 0)
    }

    @Test("a policy rewritten in place while it reloads is never applied half-read")
    func rewrittenDuringReload() throws {
        let workspace = try Workspace()
        let key = try EndToEndTests.importKeyA(workspace)
        let first = String(decoding: try Self.defaultPolicy(), as: UTF8.self)
        let second = first.replacingOccurrences(of: "max_age_ms = 30000", with: "max_age_ms = 20000")
        let hashes = [
            try Self.sha256Hex(try workspace.write("first.toml", first)),
            try Self.sha256Hex(try workspace.write("second.toml", second)),
        ]
        let policyPath = try workspace.write("policy.toml", first)
        let agent = try RunningAgent(
            arguments: [
                "--key-file", key.0, "--policy", policyPath, "--state-dir", workspace.path + "/state",
                "--passphrase-file", key.1,
            ], socket: workspace.path + "/agent.sock", logFile: workspace.path + "/agent.log")
        let stop = SharedCounter()
        let writer = Thread {
            var index = 0
            while stop.value == 0 {
                let text = Array((index % 2 == 0 ? second : first).utf8)
                if let handle = FileHandle(forWritingAtPath: policyPath) {
                    try? handle.truncate(atOffset: 0)
                    try? handle.write(contentsOf: Data(text[0..<(text.count / 2)]))
                    usleep(2000)
                    try? handle.write(contentsOf: Data(text[(text.count / 2)...]))
                    try? handle.close()
                }
                index += 1
                usleep(1000)
            }
        }
        writer.start()
        for _ in 0..<40 {
            kill(agent.process.processIdentifier, SIGHUP)
            usleep(50_000)
        }
        stop.increment()
        while writer.isExecuting { Thread.sleep(forTimeInterval: 0.01) }
        Thread.sleep(forTimeInterval: 0.5)
        #expect(agent.stop() == 0)
        let records = try EndToEndTests.auditRecords(workspace.path + "/state")
        let reloaded = records.filter { $0["event"] as? String == "policy_reloaded" }
        #expect(!reloaded.isEmpty, "no reload took effect")
        for record in reloaded {
            #expect(hashes.contains(record["policy_hash"] as? String ?? ""), "a policy applied half-read: \(record)")
        }
    }
}

/// A counter shared with a thread.
final class SharedCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0

    var value: Int { lock.withLock { count } }

    func increment() { lock.withLock { count += 1 } }
}
