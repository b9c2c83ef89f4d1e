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
    static let script = Harness.repository.path + "/scripts/postgres"

    static func psql(_ database: String, _ sql: String) throws -> String {
        guard let directory else { throw HarnessError("CUSTODIAN_TEST_POSTGRES is not set") }
        let output = try Harness.run(
            "/usr/bin/psql", ["-h", directory, "-U", "postgres", "-d", database, "-qtAX", "-v", "ON_ERROR_STOP=1", "-c", sql])
        guard output.status == 0 else { throw HarnessError("psql: \(output.stderr)") }
        return output.stdout
    }

    /// A new, empty database; its URL.
    static func newDatabase() throws -> String {
        guard let directory else { throw HarnessError("CUSTODIAN_TEST_POSTGRES is not set") }
        let name = "t\(UInt64.random(in: 0...UInt64.max))"
        _ = try psql("postgres", "CREATE DATABASE \(name)")
        return "postgresql://postgres@/\(name)?host=\(directory)"
    }

    static func database(of url: String) -> String {
        guard let at = url.range(of: "@/"), let query = url.range(of: "?") else { return "" }
        return String(url[at.upperBound..<query.lowerBound])
    }

    /// scripts/postgres stop / start on the tests' server.
    static func server(_ command: String) throws {
        guard let directory else { throw HarnessError("CUSTODIAN_TEST_POSTGRES is not set") }
        let output = try Harness.run(script, [command, directory])
        guard output.status == 0 else { throw HarnessError("scripts/postgres \(command): \(output.stderr)") }
    }
}

/// Two agents of one key, each with its own state directory and socket, on one ledger database.
final class AgentPair {
    let workspace: Workspace
    let key: (String, String)
    let url: String
    let policyFile: String
    var agents: [RunningAgent?] = [nil, nil]
    var runs = 0

    init(policy: String = DurabilityTests.policy) throws {
        workspace = try Workspace()
        key = try EndToEndTests.importKeyA(workspace)
        url = try Postgres.newDatabase()
        policyFile = try workspace.write("policy.toml", policy)
    }

    func socket(_ index: Int) -> String { workspace.path + "/agent\(index).sock" }
    func stateDir(_ index: Int) -> String { workspace.path + "/state\(index)" }

    func arguments(_ index: Int) -> [String] {
        [
            "--key-file", key.0, "--policy", policyFile, "--state-dir", stateDir(index), "--passphrase-file", key.1,
            "--checkpoint-every", "25", "--ledger-url", url, "--ledger-timeout-ms", "2000",
        ]
    }

    func start(_ index: Int) throws {
        runs += 1
        agents[index] = try RunningAgent(
            arguments: arguments(index), socket: socket(index),
            logFile: workspace.path + "/agent\(index)-run\(runs).log")
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
                Postgres.database(of: url), "--host", Postgres.directory ?? "", "--received", signatures,
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
        let check = try pair.check(received: [created.signature, closed.signature])
        #expect(check.status == 0, "\(check.stdout)\(check.stderr)")
    }
}
