import CustodianClient
import CustodianCore
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// The PostgreSQL server the tests use: started by scripts/test (scripts/postgres start DIR) with DIR in
/// CUSTODIAN_TEST_POSTGRES, stopped after. Each test makes its own database on it.
enum Postgres {
    static let directory = ProcessInfo.processInfo.environment["CUSTODIAN_TEST_POSTGRES"]
    static let port = ProcessInfo.processInfo.environment["CUSTODIAN_PG_PORT"] ?? "54329"
    static let script = Harness.repository.path + "/scripts/postgres"

    static func psql(_ database: String, _ sql: String, user: String = "postgres") throws -> String {
        let output = try psqlOutput(database, ["-c", sql], user: user)
        guard output.status == 0 else { throw HarnessError("psql: \(output.stderr)") }
        return output.stdout
    }

    static func psqlOutput(_ database: String, _ arguments: [String], user: String = "postgres") throws
        -> Harness.Output
    {
        guard let directory else { throw HarnessError("CUSTODIAN_TEST_POSTGRES is not set") }
        return try Harness.run(
            "/usr/bin/psql",
            ["-h", directory, "-p", port, "-U", user, "-d", database, "-qtAX", "-v", "ON_ERROR_STOP=1"] + arguments)
    }

    /// A new, empty database; its URL.
    static func newDatabase() throws -> String {
        guard let directory else { throw HarnessError("CUSTODIAN_TEST_POSTGRES is not set") }
        let name = "t\(UInt64.random(in: 0...UInt64.max))"
        _ = try psql("postgres", "CREATE DATABASE \(name)")
        return "postgresql://postgres@/\(name)?host=\(directory)&port=\(port)"
    }

    static func database(of url: String) -> String {
        guard let at = url.range(of: "@/"), let query = url.range(of: "?") else { return "" }
        return String(url[at.upperBound..<query.lowerBound])
    }

    /// scripts/postgres stop / start on the tests' server. Spawned and awaited directly (posix_spawn, waitpid):
    /// Foundation's Process was seen waiting forever for this script after it had exited (the server it starts
    /// outlives it).
    static func server(_ command: String) throws {
        guard let directory else { throw HarnessError("CUSTODIAN_TEST_POSTGRES is not set") }
        let output = directory + "/control.log"
        let arguments = [
            "/bin/sh", "-c", "exec \"$0\" \"$1\" \"$2\" >>\"$3\" 2>&1 </dev/null", script, command, directory, output,
        ]
        var pid: pid_t = 0
        let argv = arguments.map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        guard posix_spawn(&pid, "/bin/sh", nil, nil, argv, environ) == 0 else {
            throw HarnessError("cannot run scripts/postgres")
        }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        guard status == 0 else {
            throw HarnessError(
                "scripts/postgres \(command) failed: \((try? String(contentsOfFile: output, encoding: .utf8)) ?? "")")
        }
    }
}

/// Two agents of one key, each with its own state directory and socket, on one ledger database. Its agents are
/// started and stopped by the test's thread alone; client threads only `sign` (sockets by path).
final class AgentPair: @unchecked Sendable {
    let workspace: Workspace
    let key: (String, String)
    /// The agents' URL (the owner's, unless a test gives them a role of their own).
    var url: String
    /// The database's name.
    let database: String
    let policyFile: String
    var agents: [RunningAgent?] = [nil, nil]
    var runs = 0

    init(policy: String = DurabilityTests.policy) throws {
        workspace = try Workspace()
        key = try EndToEndTests.importKeyA(workspace)
        url = try Postgres.newDatabase()
        database = Postgres.database(of: url)
        policyFile = try workspace.write("policy.toml", policy)
    }

    func socket(_ index: Int) -> String { workspace.path + "/agent\(index).sock" }
    func stateDir(_ index: Int) -> String { workspace.path + "/state\(index)" }

    func arguments(_ index: Int) -> [String] {
        [
            "--key-file", key.0, "--policy", policyFile, "--state-dir", stateDir(index), "--passphrase-file", key.1,
            "--checkpoint-every", "25", "--ledger-url", url,
        ]
    }

    /// The log file of the latest start.
    var lastLog = ""

    /// Starts agent `index`; a start the database refused (it could not settle with it in time: on a loaded host
    /// the other agent may hold the ledger's lock for long) is tried again, `attempts` times in all, as systemd's
    /// Restart= would.
    func start(_ index: Int, attempts: Int = 3) throws {
        for attempt in 1...attempts {
            runs += 1
            lastLog = workspace.path + "/agent\(index)-run\(runs).log"
            do {
                agents[index] = try RunningAgent(arguments: arguments(index), socket: socket(index), logFile: lastLog)
                return
            } catch {
                let log = (try? String(contentsOfFile: lastLog, encoding: .utf8)) ?? ""
                guard attempt < attempts, log.contains("the ledger database") else { throw error }
                Thread.sleep(forTimeInterval: 0.5)
            }
        }
    }

    func kill(_ index: Int) {
        guard let agent = agents[index] else { return }
        Glibc.kill(agent.process.processIdentifier, SIGKILL)
        agent.process.waitUntilExit()
        agents[index] = nil
    }

    func stop(_ index: Int) -> Int32? {
        defer { agents[index] = nil }
        return agents[index]?.stop()
    }

    func sign(_ index: Int, _ message: String) -> Result<SignResult, ClientError> {
        Result { () throws(ClientError) -> SignResult in
            try CustodianClient(socketPath: socket(index), timeoutSeconds: 10).sign(message: Array(message.utf8))
        }
    }

    /// The independent reader (Tests/EndToEndTests/ledger_check.py): both logs against each other and the database.
    func check(received: [String] = []) throws -> Harness.Output {
        let signatures = try workspace.write("received.txt", received.joined(separator: "\n") + "\n")
        return try Harness.run(
            try Harness.python(),
            [
                Harness.repository.path + "/Tests/EndToEndTests/ledger_check.py", "--database",
                database, "--host", Postgres.directory ?? "", "--port", Postgres.port,
                "--received", signatures,
                stateDir(0), stateDir(1),
            ])
    }
}

@Suite(
    "The ledger on PostgreSQL: two agents of one key never give two answers", .serialized,
    .enabled(if: Postgres.directory != nil, "scripts/test starts the server (CUSTODIAN_TEST_POSTGRES)"))
struct PostgresLedgerTests {
    static func reason(_ result: Result<SignResult, ClientError>) -> String? {
        guard case .failure(.refused(_, _, let reason, _)) = result else { return nil }
        return reason
    }

    @Test("A session created on one agent is closed on the other; a conflicting close is refused on both")
    func pairShares() throws {
        let pair = try AgentPair()
        try pair.start(0)
        try pair.start(1)
        let create = Messages.create(nonce: 1, "0", "10")
        let id = try DurabilityTests.sessionID(of: create)
        let created = try pair.sign(0, create).get()
        // The identical create on the other agent: a retry, signed the same.
        #expect(try pair.sign(1, create).get().signature == created.signature)
        let closed = try pair.sign(1, Messages.close(id: id, "4", "6")).get()
        #expect(!closed.signature.isEmpty)
        #expect(Self.reason(pair.sign(0, Messages.close(id: id, "10", "0"))) == "policy.session_closed")
        #expect(Self.reason(pair.sign(1, Messages.close(id: id, "10", "0"))) == "policy.session_closed")
        // A restart of both: the ledger is the database's.
        #expect(pair.stop(0) == 0)
        #expect(pair.stop(1) == 0)
        try pair.start(1)
        #expect(Self.reason(pair.sign(1, Messages.close(id: id, "0", "10"))) == "policy.session_closed")
        #expect(pair.stop(1) == 0)
        // policy test judges a message against the database's ledger.
        let conflicting = try pair.workspace.write("conflicting.json", Messages.close(id: id, "0", "10"))
        let dryRun = try Harness.custodian([
            "policy", "test", pair.policyFile, "--message", conflicting, "--ledger-url", pair.url,
        ])
        #expect(
            dryRun.status == 2 && dryRun.stdout.contains("policy.session_closed"), "\(dryRun.stdout)\(dryRun.stderr)")
        let fresh = try pair.workspace.write("fresh.json", Messages.create(nonce: 2, "0", "10"))
        let allowed = try Harness.custodian([
            "policy", "test", pair.policyFile, "--message", fresh, "--ledger-url", pair.url,
        ])
        #expect(allowed.status == 0, "\(allowed.stdout)\(allowed.stderr)")
        let check = try pair.check(received: [created.signature, closed.signature])
        #expect(check.status == 0, "\(check.stdout)\(check.stderr)")
    }

    @Test("A release on the database: a stopped agent's transaction, applied by the other while it runs")
    func releaseOnDatabase() throws {
        let pair = try AgentPair()
        try pair.start(0)
        try pair.start(1)
        let create = Messages.create(nonce: 1, "0", "10")
        let id = try DurabilityTests.sessionID(of: create)
        _ = try pair.sign(0, create).get()
        _ = try pair.sign(1, Messages.close(id: id, "4", "6")).get()
        #expect(pair.stop(0) == 0)
        func release(_ version: String, _ extra: [String]) throws -> Harness.Output {
            try Harness.custodian(
                ["session", "release", id, "--state-version", version, "--reason", "node never executed it"]
                    + ["--state-dir", pair.stateDir(0)] + extra)
        }
        // The local tool refuses a database agent's state directory; a release of another version is refused.
        let local = try release("2", [])
        #expect(local.status != 0 && local.stderr.contains("keeps its ledger in PostgreSQL"), "\(local.stderr)")
        let wrong = try release("1", ["--ledger-url", pair.url])
        #expect(wrong.status == 2 && wrong.stderr.contains("not the latest signed state"), "\(wrong.stderr)")
        // Released through agent 0's state directory while agent 1 runs: agent 1 may now sign another close.
        let released = try release("2", ["--ledger-url", pair.url])
        #expect(released.status == 0, "\(released.stderr)")
        #expect(released.stdout.contains("closed at version 2 -> open at version 1"), "\(released.stdout)")
        let again = try pair.sign(1, Messages.close(id: id, "5", "5")).get()
        #expect(!again.signature.isEmpty)
        // Agent 0, restarted, knows the new close: the old one is refused.
        try pair.start(0)
        #expect(Self.reason(pair.sign(0, Messages.close(id: id, "4", "6"))) == "policy.session_closed")
        #expect(pair.stop(0) == 0)
        #expect(pair.stop(1) == 0)
        let verify = try Harness.custodian([
            "audit", "verify", "--ledger-url", pair.url, pair.stateDir(0), pair.stateDir(1),
        ])
        #expect(verify.status == 0, "\(verify.stdout)\(verify.stderr)")
        let records = try String(contentsOfFile: pair.stateDir(0) + "/audit.log", encoding: .utf8)
        #expect(records.contains(#""action":"session_release""#) && records.contains(#""ledger_txn":"#))
    }

    /// Sends `first` to agent 0 and `second` to agent 1 at the same instant; both results.
    static func race(_ pair: AgentPair, _ first: String, _ second: String) -> [Result<SignResult, ClientError>] {
        let results = Collected<(Int, Result<SignResult, ClientError>)>()
        let ready = DispatchGroup()
        let go = DispatchSemaphore(value: 0)
        let done = DispatchGroup()
        for (index, message) in [first, second].enumerated() {
            ready.enter()
            done.enter()
            Thread.detachNewThread {
                ready.leave()
                go.wait()
                results.append((index, pair.sign(index, message)))
                done.leave()
            }
        }
        ready.wait()
        go.signal()
        go.signal()
        done.wait()
        return results.all.sorted { $0.0 < $1.0 }.map(\.1)
    }

    @Test("Conflicting states and closes sent to both agents at once, in many rounds, on busy CPUs: one is signed")
    func conflicts() throws {
        let rounds = ProcessInfo.processInfo.environment["CUSTODIAN_PG_ROUNDS"].flatMap { Int($0) } ?? 40
        let pair = try AgentPair()
        try pair.start(0)
        try pair.start(1)
        let busy = try DurabilityTests.BusyLoops()
        var received: [String] = []
        var wins = [0, 0]
        for round in 0..<rounds {
            let create = Messages.create(nonce: UInt64(1000 + round), "0", "10")
            let id = try DurabilityTests.sessionID(of: create)
            received.append(try pair.sign(round % 2, create).get().signature)
            // Two different states at version 2, one to each agent at once.
            let states = Self.race(
                pair, OperatorTests.submit(id: id, version: 2, "3", "7"),
                OperatorTests.submit(id: id, version: 2, "5", "5"))
            let signedStates = states.compactMap { try? $0.get() }
            #expect(signedStates.count == 1, "round \(round): \(states)")
            for (index, result) in states.enumerated() {
                switch result {
                case .success(let signed):
                    received.append(signed.signature)
                    wins[index] += 1
                case .failure:
                    #expect(Self.reason(result) == "policy.version_conflict", "round \(round): \(result)")
                }
            }
            // Two different closes, one to each agent at once.
            let closes = Self.race(pair, Messages.close(id: id, "1", "9"), Messages.close(id: id, "9", "1"))
            #expect(closes.compactMap { try? $0.get() }.count == 1, "round \(round): \(closes)")
            for result in closes {
                if case .success(let signed) = result { received.append(signed.signature) }
            }
        }
        withExtendedLifetime(busy) {}
        #expect(pair.stop(0) == 0)
        #expect(pair.stop(1) == 0)
        let check = try pair.check(received: received)
        #expect(check.status == 0, "\(check.stdout)\(check.stderr)")
        #expect(check.stdout.contains("\(rounds * 3) received signatures; 0 problem(s)"), "\(check.stdout)")
        print("conflicts: the states were won \(wins[0]) times by agent 0 and \(wins[1]) by agent 1; \(check.stdout)")
    }

    @Test(
        "Chaos: clients on both agents while each is SIGKILLed and restarted and the database is stopped and started")
    func chaos() throws {
        let events = ProcessInfo.processInfo.environment["CUSTODIAN_PG_CHAOS_EVENTS"].flatMap { Int($0) } ?? 16
        let pair = try AgentPair()
        try pair.start(0)
        try pair.start(1)
        let busy = try DurabilityTests.BusyLoops()
        let received = Collected<String>()
        let closed = Collected<String>()
        let unavailable = Collected<String>()
        let stop = Flag()
        let group = DispatchGroup()
        for client in 0..<4 {
            group.enter()
            Thread.detachNewThread {
                defer { group.leave() }
                var counter: UInt64 = 0
                // A request to a random agent, to the other when that one is down.
                func sign(_ message: String) -> SignResult? {
                    for attempt in 0..<2 {
                        let index = attempt == 0 ? Int.random(in: 0...1) : 1 - (client % 2)
                        switch pair.sign(index, message) {
                        case .success(let signed):
                            received.append(signed.signature)
                            return signed
                        case .failure(let error):
                            if PostgresLedgerTests.reason(.failure(error)) == "ledger.unavailable" {
                                unavailable.append(message)
                            }
                        }
                    }
                    return nil
                }
                while !stop.isSet {
                    counter += 1
                    let create = Messages.create(nonce: UInt64(client) << 40 | counter, "0", "10")
                    guard let id = try? DurabilityTests.sessionID(of: create), sign(create) != nil else {
                        Thread.sleep(forTimeInterval: 0.01)
                        continue
                    }
                    guard sign(Messages.close(id: id, "4", "6")) != nil else { continue }
                    closed.append(id)
                    // A conflicting close of a closed session, on either agent, must never be signed.
                    if let earlier = closed.all.randomElement() { _ = sign(Messages.close(id: earlier, "10", "0")) }
                }
            }
        }
        var databaseStops = 0
        var refusedWhileDown = 0
        var otherRefusedWhileDown = 0
        for event in 0..<events {
            Thread.sleep(forTimeInterval: Double.random(in: 0.1...0.5))
            if event % 4 == 3 {
                // The database goes away for a while: a decision then is refused with ledger.unavailable.
                try Postgres.server("stop")
                databaseStops += 1
                let probe = Messages.create(nonce: 1 << 50 | UInt64(event), "0", "10")
                for index in 0..<2 where pair.agents[index] != nil {
                    if Self.reason(pair.sign(index, probe)) == "ledger.unavailable" { refusedWhileDown += 1 }
                    // So are a node's answer handed to observe and an operator's challenge: nothing recorded.
                    let client = CustodianClient(socketPath: pair.socket(index), timeoutSeconds: 10)
                    let observed = Result { () throws(ClientError) in try client.observe(message: Array("[]".utf8)) }
                    let challenged = Result { () throws(ClientError) in
                        try client.challengeChannel("0x" + String(repeating: "ab", count: 32))
                    }
                    for result in [observed.map { _ in () }, challenged.map { _ in () }] {
                        guard case .failure(.refused(_, _, let reason, _)) = result, reason == "ledger.unavailable"
                        else {
                            Issue.record("while the database is down: \(result)")
                            continue
                        }
                        otherRefusedWhileDown += 1
                    }
                }
                // An agent killed now cannot start: it must first settle with the database (its log may lack a
                // batch the database holds). It starts once the database is back, as systemd's Restart= would.
                var restart: Int?
                if event % 8 == 7 {
                    let index = Int.random(in: 0...1)
                    pair.kill(index)
                    #expect(throws: (any Error).self) { try pair.start(index, attempts: 1) }
                    let log = (try? String(contentsOfFile: pair.lastLog, encoding: .utf8)) ?? ""
                    #expect(log.contains("the ledger database is unavailable"), "\(log)")
                    restart = index
                }
                Thread.sleep(forTimeInterval: Double.random(in: 0.2...1.0))
                try Postgres.server("start")
                if let restart { try pair.start(restart) }
            } else {
                let index = Int.random(in: 0...1)
                pair.kill(index)
                Thread.sleep(forTimeInterval: Double.random(in: 0...0.3))
                try pair.start(index)
            }
        }
        // Service resumes by itself: each agent signs a new session within seconds.
        for index in 0..<2 {
            let create = Messages.create(nonce: 1 << 52 | UInt64(index), "0", "10")
            var signed: SignResult?
            let deadline = Date().addingTimeInterval(15)
            while signed == nil && Date() < deadline {
                signed = try? pair.sign(index, create).get()
                if signed == nil { Thread.sleep(forTimeInterval: 0.1) }
            }
            #expect(signed != nil, "agent \(index) did not sign again after the chaos")
            if let signed { received.append(signed.signature) }
        }
        stop.set()
        #expect(group.wait(timeout: .now() + 60) == .success)
        withExtendedLifetime(busy) {}
        #expect(pair.stop(0) == 0)
        #expect(pair.stop(1) == 0)
        #expect(refusedWhileDown == 2 * databaseStops, "every probe while the database was down: ledger.unavailable")
        #expect(otherRefusedWhileDown == 4 * databaseStops)
        #expect(closed.all.count > 10, "too little was signed to prove anything: \(closed.all.count) closes")
        let check = try pair.check(received: received.all)
        #expect(check.status == 0, "\(check.stdout)\(check.stderr)")
        print(
            "chaos: \(events) events (\(databaseStops) database stops), \(closed.all.count) sessions closed, "
                + "\(unavailable.all.count) client requests refused with ledger.unavailable; \(check.stdout)")
    }

    @Test("Migration and audit: imports (a conflict refused), logs against the database, a lost transaction refused")
    func migrationAndAudit() throws {
        let pair = try AgentPair()
        // A local-ledger agent's history: S1 closed, S2 open.
        let local = pair.arguments(0).prefix { $0 != "--ledger-url" }
        var agent: RunningAgent? = try RunningAgent(
            arguments: Array(local), socket: pair.socket(0), logFile: pair.workspace.path + "/local.log")
        let create1 = Messages.create(nonce: 1, "0", "10")
        let create2 = Messages.create(nonce: 2, "0", "10")
        let s1 = try DurabilityTests.sessionID(of: create1)
        let s2 = try DurabilityTests.sessionID(of: create2)
        _ = try pair.sign(0, create1).get()
        _ = try pair.sign(0, Messages.close(id: s1, "4", "6")).get()
        _ = try pair.sign(0, create2).get()
        #expect(agent?.stop() == 0)
        agent = nil
        // On the database before the import: the agent starts, but decides nothing (its own ledger is not there).
        try pair.start(0)
        let refused = pair.sign(0, Messages.close(id: s2, "5", "5"))
        #expect(Self.reason(refused) == "ledger.unavailable")
        #expect("\(refused)".contains("custodian ledger import"), "\(refused)")
        #expect(pair.stop(0) == 0)
        // A conflicting ledger of the same key (S2 closed otherwise), imported first through the other agent: it
        // goes in. The first agent's import then conflicts on S2 and adds nothing.
        let otherDir = pair.workspace.path + "/other"
        var other: RunningAgent? = try RunningAgent(
            arguments: [
                "--key-file", pair.key.0, "--policy", pair.policyFile, "--state-dir", otherDir,
                "--passphrase-file", pair.key.1,
            ],
            socket: pair.socket(1), logFile: pair.workspace.path + "/other.log")
        _ = try pair.sign(1, create2).get()
        _ = try pair.sign(1, Messages.close(id: s2, "10", "0")).get()
        #expect(other?.stop() == 0)
        other = nil
        let exported = try Harness.custodian(["ledger", "export", "--state-dir", otherDir])
        #expect(exported.status == 0, "\(exported.stderr)")
        let file = try pair.workspace.write("other.json", exported.stdout)
        let first = try Harness.custodian([
            "ledger", "import", file, "--state-dir", pair.stateDir(1), "--ledger-url", pair.url,
        ])
        #expect(first.status == 0, "\(first.stderr)")
        #expect(first.stdout.contains("imported 1 session(s) into the ledger database"), "\(first.stdout)")
        let conflicting = try Harness.custodian([
            "ledger", "import", "--state-dir", pair.stateDir(0), "--ledger-url", pair.url,
        ])
        #expect(conflicting.status == 2, "\(conflicting.stdout)\(conflicting.stderr)")
        #expect(conflicting.stderr.contains(s2), "\(conflicting.stderr)")
        // Without the conflict (S2 released from the database's view is not possible: a fresh database instead).
        let again = try Harness.custodian([
            "ledger", "import", file, "--state-dir", pair.stateDir(1), "--ledger-url", pair.url,
        ])
        #expect(
            again.stdout.contains("imported 0 session(s) into the ledger database; 1 already there"), "\(again.stdout)")
        // The first agent still decides nothing (its S1 is not in the database), and says why.
        try pair.start(0)
        #expect(Self.reason(pair.sign(0, Messages.close(id: s1, "4", "6"))) == "ledger.unavailable")
        #expect(pair.stop(0) == 0)
        // The other agent signs on: S2 is closed for both.
        try pair.start(1)
        #expect(Self.reason(pair.sign(1, Messages.close(id: s2, "5", "5"))) == "policy.session_closed")
        let create3 = Messages.create(nonce: 3, "0", "10")
        let created3 = try pair.sign(1, create3).get()
        #expect(pair.stop(1) == 0)
        // Every log against the database: state0 wrote only refusals in its transactions.
        let verify = try Harness.custodian([
            "audit", "verify", "--ledger-url", pair.url, pair.stateDir(0), pair.stateDir(1),
        ])
        #expect(verify.status == 0, "\(verify.stdout)\(verify.stderr)")
        #expect(verify.stdout.contains("ledger transactions, each in exactly one of 2 logs"), "\(verify.stdout)")
        let ledger = try Harness.custodian(["ledger", "export", "--ledger-url", pair.url])
        #expect(ledger.status == 0, "\(ledger.stderr)")
        let s3 = try DurabilityTests.sessionID(of: create3)
        #expect(ledger.stdout.contains(s2) && ledger.stdout.contains(s3) && !created3.signature.isEmpty)
        // The state directory of an agent on the database is not taken for a whole ledger by the local tools.
        let partial = try Harness.custodian(["ledger", "export", "--state-dir", pair.stateDir(1)])
        #expect(partial.status != 0 && partial.stderr.contains("keeps its ledger in PostgreSQL"), "\(partial.stderr)")
        let local1 = pair.arguments(1).prefix { $0 != "--ledger-url" }
        #expect(throws: (any Error).self) {
            _ = try RunningAgent(
                arguments: Array(local1), socket: pair.socket(1), logFile: pair.workspace.path + "/local1.log")
        }
        // The database loses agent 1's last transaction (restored from an older backup): verify names it, and the
        // agent does not start on less history than its log holds.
        let database = Postgres.database(of: pair.url)
        let agent1 = try String(contentsOfFile: pair.stateDir(1) + "/ledger.agent", encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let last = try Postgres.psql(database, "SELECT max(txn) FROM custodian_txns WHERE agent = '\(agent1)'")
            .trimmingCharacters(in: .whitespacesAndNewlines)
        _ = try Postgres.psql(
            database, "DELETE FROM custodian_txns WHERE txn = \(last); UPDATE custodian_ledger SET txn = txn - 1")
        let broken = try Harness.custodian([
            "audit", "verify", "--ledger-url", pair.url, pair.stateDir(0), pair.stateDir(1),
        ])
        #expect(broken.status == 2, "\(broken.stdout)\(broken.stderr)")
        #expect(broken.stderr.contains("names ledger transaction \(last)"), "\(broken.stderr)")
        #expect(throws: (any Error).self) { try pair.start(1, attempts: 1) }
        let log = (try? String(contentsOfFile: pair.lastLog, encoding: .utf8)) ?? ""
        #expect(log.contains("names ledger transaction \(last), which the database does not hold"), "\(log)")
    }

    @Test("Migration of v1 home channels: imported with the key's outflows; the database's agent goes on from them")
    func channelMigration() throws {
        let setup = try ChannelEndToEndTests.Setup()
        let workspace = setup.workspace
        let url = try Postgres.newDatabase()
        var copy = setup.void
        var deposited = copy
        func sign(_ agent: RunningAgent, _ state: ChannelStateWire, creation: Bool = false) throws -> Harness.Output {
            let frame =
                creation
                ? ChannelMessages.creation(state, nonce: setup.nonce) : ChannelMessages.submit(state)
            return try EndToEndTests.sign(agent, frame, in: workspace)
        }
        // On the local ledger: the channel created, 200 deposited, 20 sent to B (an outflow of the window).
        var agent = try setup.start("local")
        for (transition, account, amount) in [
            (ChannelTransition.acknowledgement, ChannelState.zeroID, "0"), (.homeDeposit, setup.channelID, "200"),
            (.transferSend, Messages.b.lowercased(), "20"),
        ] {
            let state = try ChannelEndToEndTests.next(copy, transition, account, amount)
            let signed = try sign(agent, state, creation: transition == .acknowledgement)
            #expect(signed.status == 0, "\(signed.stderr)")
            ChannelEndToEndTests.advance(&copy, to: state)
            if transition == .homeDeposit { deposited = copy }
        }
        #expect(agent.stop() == 0)
        let onDatabase = setup.arguments + ["--ledger-url", url]
        // On the database before the import: nothing decided (the channel is not there), and it says why.
        agent = try RunningAgent(arguments: onDatabase, socket: setup.socket, logFile: workspace.path + "/db1.log")
        let before = try sign(agent, try ChannelEndToEndTests.next(copy, .transferSend, Messages.b.lowercased(), "5"))
        #expect(before.status != 0 && before.stderr.contains("ledger.unavailable"), "\(before.stderr)")
        #expect(before.stderr.contains("1 channel(s)"), "\(before.stderr)")
        #expect(agent.stop() == 0)
        let imported = try Harness.custodian(["ledger", "import", "--state-dir", setup.stateDir, "--ledger-url", url])
        #expect(imported.status == 0, "\(imported.stderr)")
        #expect(imported.stdout.contains("1 home channel(s) imported, 0 already there"), "\(imported.stdout)")
        let again = try Harness.custodian(["ledger", "import", "--state-dir", setup.stateDir, "--ledger-url", url])
        #expect(again.stdout.contains("0 home channel(s) imported, 1 already there"), "\(again.stdout)")
        agent = try RunningAgent(arguments: onDatabase, socket: setup.socket, logFile: workspace.path + "/db2.log")
        // The version signed before, with other content: refused; the next ones go on from the imported state.
        let conflicting = try sign(
            agent, try ChannelEndToEndTests.next(deposited, .transferSend, Messages.b.lowercased(), "10"))
        #expect(conflicting.stderr.contains("policy.version_conflict"), "\(conflicting.stderr)")
        for amount in ["50", "50"] {
            let state = try ChannelEndToEndTests.next(copy, .transferSend, Messages.b.lowercased(), amount)
            let signed = try sign(agent, state)
            #expect(signed.status == 0, "\(signed.stderr)")
            ChannelEndToEndTests.advance(&copy, to: state)
        }
        // 20 (imported) + 50 + 50 + 40 exceeds the window's 150: the imported outflow counts.
        let over = try sign(agent, try ChannelEndToEndTests.next(copy, .transferSend, Messages.b.lowercased(), "40"))
        #expect(over.stderr.contains("policy.velocity_exceeded"), "\(over.stderr)")
        #expect(agent.stop() == 0)
        let verify = try Harness.custodian(["audit", "verify", "--ledger-url", url, setup.stateDir])
        #expect(verify.status == 0, "\(verify.stdout)\(verify.stderr)")
    }

    @Test("A pair on the least rights of deploy/custodian-ledger.sql: it signs, and cannot rewrite the ledger")
    func leastRights() throws {
        let pair = try AgentPair()
        let database = Postgres.database(of: pair.url)
        let migrate = try Harness.custodian(["ledger", "migrate", "--ledger-url", pair.url])
        #expect(migrate.status == 0, "\(migrate.stderr)")
        let grants = try Postgres.psqlOutput(
            database, ["-f", Harness.repository.path + "/deploy/custodian-ledger.sql"])
        #expect(grants.status == 0, "\(grants.stderr)")
        pair.url = pair.url.replacingOccurrences(of: "postgres@", with: "custodian_agent@")
        try pair.start(0)
        try pair.start(1)
        let create = Messages.create(nonce: 7, "0", "10")
        let id = try DurabilityTests.sessionID(of: create)
        _ = try pair.sign(0, create).get()
        _ = try pair.sign(1, Messages.close(id: id, "4", "6")).get()
        #expect(Self.reason(pair.sign(0, Messages.close(id: id, "6", "4"))) == "policy.session_closed")
        #expect(pair.stop(0) == 0)
        #expect(pair.stop(1) == 0)
        for statement in [
            "DELETE FROM custodian_txns", "UPDATE custodian_txns SET batch = ''::bytea",
            "UPDATE custodian_ledger SET txn = 0 WHERE false", "DROP TABLE custodian_txns",
        ] {
            let output = try Postgres.psqlOutput(database, ["-c", statement], user: "custodian_agent")
            if statement.contains("WHERE false") {
                #expect(output.status == 0, "the agents' own update of the counter: \(output.stderr)")
            } else {
                #expect(output.status != 0, "\(statement) was allowed")
                #expect(output.stderr.contains("permission denied") || output.stderr.contains("must be owner"))
            }
        }
        let verify = try Harness.custodian([
            "audit", "verify", "--ledger-url", pair.url, pair.stateDir(0), pair.stateDir(1),
        ])
        #expect(verify.status == 0, "\(verify.stdout)\(verify.stderr)")
    }

    @Test("A pair on a database over TCP: the agents' system-call filter lets them reach it, and they share it")
    func overTCP() throws {
        let pair = try AgentPair()
        let database = Postgres.database(of: pair.url)
        pair.url = "postgresql://postgres@127.0.0.1:\(Postgres.port)/\(database)?sslmode=disable"
        try pair.start(0)
        try pair.start(1)
        let create = Messages.create(nonce: 9, "0", "10")
        let id = try DurabilityTests.sessionID(of: create)
        let created = try pair.sign(0, create).get()
        let closed = try pair.sign(1, Messages.close(id: id, "4", "6")).get()
        #expect(Self.reason(pair.sign(0, Messages.close(id: id, "6", "4"))) == "policy.session_closed")
        #expect(pair.stop(0) == 0)
        #expect(pair.stop(1) == 0)
        let check = try pair.check(received: [created.signature, closed.signature])
        #expect(check.status == 0, "\(check.stdout)\(check.stderr)")
    }
}
