import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Security properties of the running agent, each asserted directly.
@Suite("Hardening: callers, process, system-call filter, socket, limits, units", .serialized)
struct HardeningTests {
    static let nobody = ["/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]

    static let policy = """
        version = 1
        [requests]
        methods = ["create_app_session", "submit_app_state", "close_app_session"]
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

    /// A workspace another user can traverse, with a copy of the binary that user can run.
    static func sharedWorkspace() throws -> (Workspace, String) {
        let workspace = try Workspace()
        chmod(workspace.path, 0o711)
        let binary = workspace.path + "/custodian"
        try FileManager.default.copyItem(atPath: try Harness.binary(), toPath: binary)
        chmod(binary, 0o755)
        return (workspace, binary)
    }

    static func agentArguments(_ workspace: Workspace, key: (String, String), extra: [String] = []) throws -> [String] {
        let policyFile = try workspace.write("policy.toml", policy)
        return [
            "--key-file", key.0, "--policy", policyFile, "--state-dir", workspace.path + "/state", "--passphrase-file",
            key.1,
        ] + extra
    }

    @Test("a caller of another uid is refused with -32004 and audited; an allowed uid is served")
    func callerCheck() throws {
        let (workspace, binary) = try Self.sharedWorkspace()
        let key = try EndToEndTests.importKeyA(workspace)
        let socket = workspace.path + "/agent.sock"
        var agent = try RunningAgent(
            arguments: try Self.agentArguments(workspace, key: key), socket: socket,
            logFile: workspace.path + "/agent1.log")
        // Open the file permissions, so that only the SO_PEERCRED check stands between nobody and the agent.
        chmod(socket, 0o666)
        let refused = try Harness.run(
            Self.nobody[0], Array(Self.nobody.dropFirst()) + [binary, "status", "--socket", socket])
        #expect(refused.status == 2)
        #expect(refused.stderr.contains("caller not allowed"), "\(refused.stderr)")
        #expect(refused.stdout.isEmpty)
        #expect(try Harness.custodian(["status", "--socket", socket]).status == 0, "the agent's own uid is served")
        #expect(agent.stop() == 0)
        let records = try EndToEndTests.auditRecords(workspace.path + "/state")
        let refusal = records.first { $0["event"] as? String == "caller_refused" }
        #expect((refusal?["peer"] as? [String: Any])?["uid"] as? Int == 65534)

        // --allow-uid adds to the agent's own uid, which is always served.
        agent = try RunningAgent(
            arguments: try Self.agentArguments(workspace, key: key, extra: ["--allow-uid", "65534"]),
            socket: socket, logFile: workspace.path + "/agent2.log")
        chmod(socket, 0o666)
        let served = try Harness.run(
            Self.nobody[0], Array(Self.nobody.dropFirst()) + [binary, "status", "--socket", socket])
        #expect(served.status == 0, "\(served.stderr)")
        #expect(served.stdout.contains(EndToEndTests.addressA))
        #expect(try Harness.custodian(["status", "--socket", socket]).status == 0, "the agent's own uid is served")
        let daemon = try Harness.run(
            "/usr/bin/setpriv", ["--reuid=1", "--regid=1", "--clear-groups", binary, "status", "--socket", socket])
        #expect(daemon.status == 2 && daemon.stderr.contains("caller not allowed"), "\(daemon.stderr)")
        #expect(agent.stop() == 0)
    }

    @Test("the agent is not dumpable, has a core limit of 0, refuses ptrace by its own uid, and runs filtered")
    func processHygiene() throws {
        let (workspace, binary) = try Self.sharedWorkspace()
        let key = try EndToEndTests.importKeyA(workspace)
        // Everything the agent reads or writes belongs to nobody, which it runs as.
        let home = workspace.path + "/home"
        try FileManager.default.createDirectory(atPath: home, withIntermediateDirectories: false)
        for path in [key.0, key.1] {
            try FileManager.default.moveItem(atPath: path, toPath: home + "/" + (path as NSString).lastPathComponent)
        }
        let policyFile = home + "/policy.toml"
        try Data(Self.policy.utf8).write(to: URL(fileURLWithPath: policyFile))
        for path in [home, home + "/key.sealed", home + "/passphrase", policyFile] { chown(path, 65534, 65534) }
        chmod(home, 0o700)
        let agent = try RunningAgent(
            arguments: [
                "--key-file", home + "/key.sealed", "--policy", policyFile, "--state-dir", home + "/state",
                "--passphrase-file", home + "/passphrase", "--allow-uid", "0",
            ], socket: home + "/agent.sock", logFile: workspace.path + "/agent.log", launcher: Self.nobody,
            binary: binary)
        let pid = agent.process.processIdentifier
        let status = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
        #expect(status.contains("Uid:\t65534"), "the agent runs as nobody")
        #expect(status.contains("Seccomp:\t2"), "a seccomp filter is in force")
        let limits = try String(contentsOfFile: "/proc/\(pid)/limits", encoding: .utf8)
        let core = limits.split(separator: "\n").first { $0.hasPrefix("Max core file size") }
        #expect(core?.split(separator: " ", omittingEmptySubsequences: true).dropFirst(4).prefix(2) == ["0", "0"])
        // Not dumpable: the kernel hands the process's /proc files to root.
        let owner = try FileManager.default.attributesOfItem(atPath: "/proc/\(pid)/environ")[.ownerAccountID] as? Int
        #expect(owner == 0)

        // ptrace by the same uid: a control process of nobody can be attached, the agent cannot.
        let script = Harness.repository.appendingPathComponent("Tests/EndToEndTests/ptrace_attach.py").path
        let scriptCopy = workspace.path + "/ptrace_attach.py"
        try FileManager.default.copyItem(atPath: script, toPath: scriptCopy)
        chmod(scriptCopy, 0o644)
        let control = Process()
        control.executableURL = URL(fileURLWithPath: Self.nobody[0])
        control.arguments = Array(Self.nobody.dropFirst()) + ["/bin/sleep", "30"]
        try control.run()
        defer { control.terminate() }
        Thread.sleep(forTimeInterval: 0.2)
        let python = "/usr/bin/python3"
        let attachControl = try Harness.run(
            Self.nobody[0], Array(Self.nobody.dropFirst()) + [python, scriptCopy, "\(control.processIdentifier)"])
        #expect(attachControl.stdout.hasPrefix("attached"), "control: \(attachControl.stdout) \(attachControl.stderr)")
        let attachAgent = try Harness.run(
            Self.nobody[0], Array(Self.nobody.dropFirst()) + [python, scriptCopy, "\(pid)"])
        #expect(attachAgent.stdout.hasPrefix("refused errno=1"), "agent: \(attachAgent.stdout) \(attachAgent.stderr)")
        #expect(agent.stop() == 0)
    }

    @Test("after the filter is in force, the process cannot execve or open an AF_INET socket")
    func syscallFilter() throws {
        let output = try Harness.custodian(["sandbox-check"])
        #expect(output.status == 0, "\(output.stdout)")
        #expect(output.stdout.contains("socket(AF_INET): denied"))
        #expect(output.stdout.contains("execve(/bin/true): denied"))
        #expect(output.stdout.contains("socket(AF_UNIX): allowed"))
        #expect(output.stdout.hasSuffix("filter holds\n"))
    }

    @Test("refuses a socket directory others can write, and a socket where another agent answers; replaces a stale one")
    func socketPath() throws {
        let workspace = try Workspace()
        let key = try EndToEndTests.importKeyA(workspace)
        let open = workspace.path + "/open"
        try FileManager.default.createDirectory(atPath: open, withIntermediateDirectories: false)
        chmod(open, 0o777)
        let arguments = try Self.agentArguments(workspace, key: key)
        let refused = try Harness.custodian(["serve", "--socket", open + "/agent.sock"] + arguments)
        #expect(refused.status == 1)
        #expect(refused.stderr.contains("not writable by others"), "\(refused.stderr)")

        let socket = workspace.path + "/agent.sock"
        let agent = try RunningAgent(arguments: arguments, socket: socket, logFile: workspace.path + "/agent1.log")
        let second = try Harness.custodian(
            ["serve", "--socket", socket]
                + (try Self.agentArguments(workspace, key: key)).map {
                    $0 == workspace.path + "/state" ? workspace.path + "/state2" : $0
                })
        #expect(second.status == 1)
        #expect(second.stderr.contains("another agent is listening"), "\(second.stderr)")
        #expect(try Harness.custodian(["status", "--socket", socket]).status == 0, "the first agent still serves")

        // Killed without a chance to clean up: the socket file stays, and a new agent replaces it.
        kill(agent.process.processIdentifier, SIGKILL)
        agent.process.waitUntilExit()
        #expect(FileManager.default.fileExists(atPath: socket))
        let restarted = try RunningAgent(arguments: arguments, socket: socket, logFile: workspace.path + "/agent2.log")
        #expect(try Harness.custodian(["status", "--socket", socket]).status == 0)
        #expect(restarted.stop() == 0)
    }

    static func residentKiB(_ pid: Int32) throws -> Int {
        let status = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
        let line = status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") } ?? ""
        return Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "") ?? 0
    }

    @Test("limits: an over-long line closes its connection without the agent growing; idle and flooding callers")
    func limits() throws {
        // Room for a thousand connections on both sides.
        var files = rlimit(rlim_cur: 4096, rlim_max: 4096)
        setrlimit(Int32(RLIMIT_NOFILE.rawValue), &files)
        let workspace = try Workspace()
        let key = try EndToEndTests.importKeyA(workspace)
        let socket = workspace.path + "/agent.sock"
        let agent = try RunningAgent(
            arguments: try Self.agentArguments(
                workspace, key: key, extra: ["--idle-timeout-s", "2", "--rate-limit", "20"]),
            socket: socket, logFile: workspace.path + "/agent.log")
        let pid = agent.process.processIdentifier

        // A line over 65,536 bytes: an error reply, then the connection closes.
        let before = try Self.residentKiB(pid)
        for _ in 0..<20 {
            let connection = try RawConnection(socket)
            connection.send([UInt8](repeating: UInt8(ascii: "x"), count: 1 << 20))
            let answer = String(decoding: connection.readToEnd(), as: UTF8.self)
            #expect(
                answer.contains("-32600") && answer.contains("line longer than 65536 bytes"), "\(answer.prefix(200))")
        }
        let after = try Self.residentKiB(pid)
        // Under a sanitizer the allocator keeps freed memory in quarantine on purpose: RSS says nothing there.
        if ProcessInfo.processInfo.environment["CUSTODIAN_SANITIZER"] == nil {
            #expect(after - before < 16 * 1024, "RSS grew from \(before) KiB to \(after) KiB")
        }

        // A thousand idle connections do not keep an allowed client out.
        var idle: [RawConnection] = []
        for _ in 0..<1000 { idle.append(try RawConnection(socket)) }
        let status = try Harness.custodian(["status", "--socket", socket])
        #expect(status.status == 0, "\(status.stderr)")
        // ...and the idle timeout closes them.
        Thread.sleep(forTimeInterval: 3)
        #expect(idle[0].readLine() == nil, "an idle connection was closed")
        #expect(idle[999].readLine() == nil)
        idle.removeAll()

        // A caller over its rate (20/s here) gets -32005 before anything is parsed.
        let flood = try RawConnection(socket)
        let request = Array("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"address\"}\n".utf8)
        flood.send(Array((0..<60).map { _ in request }.joined()))
        var limited = 0
        var served = 0
        for _ in 0..<60 {
            guard let line = flood.readLine() else { break }
            if line.contains("-32005") { limited += 1 } else if line.contains("\"result\"") { served += 1 }
        }
        #expect(limited > 0 && served > 0 && limited + served == 60, "served \(served), limited \(limited)")
        #expect(agent.stop() == 0)
    }

    @Test("socket activation: the agent serves on the socket systemd passes (LISTEN_FDS) and leaves it in place")
    func socketActivation() throws {
        let activate = try #require(
            ["/usr/bin/systemd-socket-activate", "/bin/systemd-socket-activate"].first {
                FileManager.default.isExecutableFile(atPath: $0)
            }, "systemd-socket-activate is missing: scripts/setup installs systemd")
        let workspace = try Workspace()
        let key = try EndToEndTests.importKeyA(workspace)
        let socket = workspace.path + "/activated.sock"
        // systemd-socket-activate closes every other inherited descriptor before it execs the agent, which
        // Foundation's Process takes for an exit; so it runs detached, and is tracked by its pid.
        let command =
            ([activate, "-l", socket, try Harness.binary(), "serve", "--socket", socket]
            + (try Self.agentArguments(workspace, key: key))).map { "'\($0)'" }.joined(separator: " ")
        let launched = try Harness.run(
            "/bin/sh", ["-c", "\(command) >'\(workspace.path)/agent.log' 2>&1 </dev/null & echo $!"])
        let pid = try #require(Int32(launched.stdout.trimmingCharacters(in: .whitespacesAndNewlines)))
        defer {
            kill(pid, SIGTERM)
            Thread.sleep(forTimeInterval: 0.5)
            kill(pid, SIGKILL)
        }
        // The first connection makes systemd-socket-activate start the agent with the listening socket as fd 3.
        var status = try Harness.custodian(["status", "--socket", socket])
        let deadline = Date().addingTimeInterval(15)
        while status.status != 0 && Date() < deadline {
            Thread.sleep(forTimeInterval: 0.1)
            status = try Harness.custodian(["status", "--socket", socket])
        }
        #expect(status.status == 0, "\(status.stderr)")
        #expect(status.stdout.contains(EndToEndTests.addressA))
        let records = try EndToEndTests.auditRecords(workspace.path + "/state")
        #expect(records.first?["event"] as? String == "start")
        // The agent runs in the launcher's process (exec), with the socket systemd-style as fd 3.
        let target = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/fd/3")
        #expect(target.hasPrefix("socket:"))
        kill(pid, SIGTERM)
        let stopped = Date().addingTimeInterval(10)
        while kill(pid, 0) == 0 && Date() < stopped { Thread.sleep(forTimeInterval: 0.05) }
        #expect(FileManager.default.fileExists(atPath: socket), "systemd, not the agent, owns an activated socket")
    }

    @Test("the systemd units pass systemd-analyze verify")
    func systemdUnits() throws {
        let analyze = ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"].first {
            FileManager.default.isExecutableFile(atPath: $0)
        }
        let tool = try #require(analyze, "systemd-analyze is missing: scripts/setup installs systemd")
        let workspace = try Workspace()
        let deploy = Harness.repository.appendingPathComponent("deploy")
        // The unit names its installed binary; verify checks that it exists, so point it at the built one.
        let service = try String(contentsOf: deploy.appendingPathComponent("custodian.service"), encoding: .utf8)
            .replacingOccurrences(of: "/usr/local/bin/custodian", with: try Harness.binary())
        let socketUnit = try String(contentsOf: deploy.appendingPathComponent("custodian.socket"), encoding: .utf8)
        let servicePath = try workspace.write("custodian.service", service, mode: 0o644)
        let socketPath = try workspace.write("custodian.socket", socketUnit, mode: 0o644)
        let metrics = try String(
            contentsOf: deploy.appendingPathComponent("custodian-metrics.service"), encoding: .utf8
        ).replacingOccurrences(of: "/usr/local/bin/custodian", with: try Harness.binary())
        let metricsPath = try workspace.write("custodian-metrics.service", metrics, mode: 0o644)
        let timer = try String(contentsOf: deploy.appendingPathComponent("custodian-metrics.timer"), encoding: .utf8)
        let timerPath = try workspace.write("custodian-metrics.timer", timer, mode: 0o644)
        var archive: [String] = []
        for name in ["custodian-archive.service", "custodian-archive.timer"] {
            let text = try String(contentsOf: deploy.appendingPathComponent(name), encoding: .utf8)
            archive.append(try workspace.write(name, text, mode: 0o644))
        }
        // The PostgreSQL ledger's drop-in, as systemd merges it: its sections after the unit's own.
        let dropIn = try String(contentsOf: deploy.appendingPathComponent("custodian-ledger.conf"), encoding: .utf8)
        let ledgerDirectory = workspace.path + "/ledger"
        try FileManager.default.createDirectory(atPath: ledgerDirectory, withIntermediateDirectories: true)
        let ledgerService = ledgerDirectory + "/custodian.service"
        try (service + "\n" + dropIn).write(toFile: ledgerService, atomically: true, encoding: .utf8)
        _ = try workspace.write("ledger/custodian.socket", socketUnit, mode: 0o644)
        let output = try Harness.run(tool, ["verify", socketPath, servicePath, metricsPath, timerPath] + archive)
        let ledger = try Harness.run(tool, ["verify", ledgerService])
        #expect(ledger.status == 0, "\(ledger.stderr)")
        #expect(ledger.stderr.isEmpty, "\(ledger.stderr)")
        #expect(output.status == 0, "\(output.stderr)")
        #expect(output.stderr.isEmpty, "\(output.stderr)")
    }
}
