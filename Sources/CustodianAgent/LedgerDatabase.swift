import CustodianCore
import CustodianCrypto
import Foundation

/// `custodian ledger migrate`.
public enum LedgerSchema {
    /// Creates or migrates the schema; returns its version.
    public static func migrate(ledgerURL: String) throws(LedgerError) -> Int64 {
        let client = PostgresClient(url: ledgerURL)
        try client.connect()
        try LedgerDatabase.migrate(client)
        return LedgerDatabase.schemaVersion
    }
}

/// The session ledger in PostgreSQL, shared by every agent of one key (`--ledger-url`).
///
/// The database holds the ledger as a sequence of transactions: each is one group commit of one agent, numbered in
/// the order they committed (`txn`), with the exact audit records that agent wrote for it (`batch`, its audit seqs
/// `first_seq`…`last_seq`). An agent decides only while it holds the ledger's one row lock (`custodian_ledger`,
/// taken by `UPDATE … RETURNING`, which also numbers the transaction), after applying every transaction it has not
/// seen (other agents' decisions, replayed by ``Replay/applyDatabaseBatch(_:to:agent:)`` exactly as a log is): the
/// same policy on the same ledger, so two agents can never sign two contents for one (session, version), and the
/// velocity and exposure windows are the database's. The transaction commits before the batch is written to the
/// agent's own log, and that before any signature leaves; a batch the database holds but the log does not (a crash
/// or a failed write between the two) is written to the log from the database before the agent decides again.
///
/// Schema (version 1, created and migrated by custodian):
/// - `custodian_schema(version)`: one row.
/// - `custodian_ledger(id = 1, address, txn)`: the key the ledger belongs to, the last transaction's number; its
///   one row is the lock.
/// - `custodian_agents(agent, address, registered_at)`: each agent (a state directory) that wrote to it.
/// - `custodian_txns(txn, agent, first_seq, last_seq, batch, committed_at)`.
final class LedgerDatabase {
    static let schemaVersion: Int64 = 1
    let client: PostgresClient
    /// The agent's name in the database (its state directory's `ledger.agent`).
    let agent: String
    let address: Address
    private var prepared = false

    /// A transaction another agent (or this one, before a crash) committed.
    struct Transaction {
        var txn: Int64
        var agent: String
        var firstSeq: UInt64
        var lastSeq: UInt64
        var batch: [UInt8]
    }

    init(url: String, agent: String, address: Address, timeoutMs: Int32 = 5000) {
        self.client = PostgresClient(url: url, timeoutMs: timeoutMs)
        self.agent = agent
        self.address = address
    }

    /// Connects, creates or migrates the schema, and checks the ledger is this key's (binding an empty one to it)
    /// and this agent is registered. Done once per connection.
    func connect() throws(LedgerError) {
        if client.isConnected && prepared { return }
        prepared = false
        try client.connect()
        try Self.migrate(client)
        let rows = try client.execute("SELECT address FROM custodian_ledger WHERE id = 1")
        if let bound = rows.values.first?.first ?? nil {
            guard bound == address.checksummed else {
                throw .diverged("the ledger database holds the ledger of \(bound), not of \(address.checksummed)")
            }
        } else {
            try client.execute(
                "UPDATE custodian_ledger SET address = $1 WHERE id = 1 AND address IS NULL",
                [.text(address.checksummed)])
            let again = try client.execute("SELECT address FROM custodian_ledger WHERE id = 1")
            guard (again.values.first?.first ?? nil) == address.checksummed else {
                throw .diverged("the ledger database was bound to another key meanwhile")
            }
        }
        try client.execute(
            "INSERT INTO custodian_agents (agent, address) VALUES ($1, $2) ON CONFLICT (agent) DO NOTHING",
            [.text(agent), .text(address.checksummed)])
        prepared = true
    }

    /// Creates the schema, or migrates an older one, under an advisory lock (two agents starting at once).
    static func migrate(_ client: PostgresClient) throws(LedgerError) {
        let exists = try client.execute("SELECT to_regclass('custodian_schema') IS NOT NULL")
        if exists.values.first?.first == "t" {
            let version = try client.execute("SELECT version FROM custodian_schema").int(0, 0) ?? 0
            if version == schemaVersion { return }
            guard version < schemaVersion else {
                throw .diverged(
                    "the ledger database's schema is version \(version), newer than this custodian's (\(schemaVersion))"
                )
            }
        }
        do {
            try client.execute("BEGIN")
            try client.execute("SELECT pg_advisory_xact_lock(7824)")
            let again = try client.execute("SELECT to_regclass('custodian_schema') IS NOT NULL")
            if again.values.first?.first != "t" {
                try client.execute(
                    """
                    CREATE TABLE custodian_schema (version integer NOT NULL);
                    INSERT INTO custodian_schema VALUES (1);
                    CREATE TABLE custodian_ledger (
                        id integer PRIMARY KEY CHECK (id = 1),
                        address text,
                        txn bigint NOT NULL);
                    INSERT INTO custodian_ledger VALUES (1, NULL, 0);
                    CREATE TABLE custodian_agents (
                        agent text PRIMARY KEY,
                        address text NOT NULL,
                        registered_at timestamptz NOT NULL DEFAULT now());
                    CREATE TABLE custodian_txns (
                        txn bigint PRIMARY KEY,
                        agent text NOT NULL REFERENCES custodian_agents (agent),
                        first_seq bigint NOT NULL,
                        last_seq bigint NOT NULL,
                        batch bytea NOT NULL,
                        committed_at timestamptz NOT NULL DEFAULT now(),
                        UNIQUE (agent, first_seq),
                        CHECK (last_seq >= first_seq));
                    -- Batches are stored as they are: pglz compression of every batch costs the database more
                    -- CPU per request than the insert itself, for JSON that compresses little.
                    ALTER TABLE custodian_txns ALTER COLUMN batch SET STORAGE EXTERNAL;
                    """)
            }
            try client.execute("COMMIT", commit: true)
        } catch {
            _ = try? client.execute("ROLLBACK")
            throw error
        }
    }

    /// Begins a transaction holding the ledger's lock; returns its number (the last committed one's plus one).
    func lock() throws(LedgerError) -> Int64 {
        try connect()
        let rows: PostgresClient.Rows
        do {
            rows = try client.execute("BEGIN; UPDATE custodian_ledger SET txn = txn + 1 WHERE id = 1 RETURNING txn")
        } catch {
            rollback()
            throw error
        }
        guard let txn = rows.int(0, 0) else {
            rollback()
            throw .unavailable("the ledger row is missing")
        }
        return txn
    }

    /// The committed transactions after `known` (and before `before`, when given), in order.
    func transactions(after known: Int64, before: Int64? = nil) throws(LedgerError) -> [Transaction] {
        let rows: PostgresClient.Rows
        if let before {
            rows = try client.execute(
                "SELECT txn, agent, first_seq, last_seq, batch FROM custodian_txns WHERE txn > $1 AND txn < $2 "
                    + "ORDER BY txn", [.int(known), .int(before)])
        } else {
            rows = try client.execute(
                "SELECT txn, agent, first_seq, last_seq, batch FROM custodian_txns WHERE txn > $1 ORDER BY txn",
                [.int(known)])
        }
        return try Self.read(rows)
    }

    /// This agent's committed transactions that end after its log's seq `seq`, in order.
    func ownTransactions(after seq: UInt64) throws(LedgerError) -> [Transaction] {
        let rows = try client.execute(
            "SELECT txn, agent, first_seq, last_seq, batch FROM custodian_txns WHERE agent = $1 AND last_seq > $2 "
                + "ORDER BY first_seq", [.text(agent), .int(Int64(clamping: seq))])
        return try Self.read(rows)
    }

    private static func read(_ rows: PostgresClient.Rows) throws(LedgerError) -> [Transaction] {
        var found: [Transaction] = []
        for index in rows.values.indices {
            guard let txn = rows.int(index, 0), let agent = rows.values[index][1], let first = rows.int(index, 2),
                let last = rows.int(index, 3), let batch = rows.bytes(index, 4)
            else { throw .unavailable("a transaction row that does not read") }
            found.append(
                Transaction(
                    txn: txn, agent: agent, firstSeq: UInt64(clamping: first), lastSeq: UInt64(clamping: last),
                    batch: batch))
        }
        return found
    }

    /// The transaction `txn`'s agent and last seq (nil: the database does not hold it).
    func transaction(_ txn: Int64) throws(LedgerError) -> (agent: String, lastSeq: Int64)? {
        try connect()
        let rows = try client.execute("SELECT agent, last_seq FROM custodian_txns WHERE txn = $1", [.int(txn)])
        guard let agent = rows.values.first?.first ?? nil, let last = rows.int(0, 1) else { return nil }
        return (agent, last)
    }

    /// Records the batch as transaction `txn` and commits it.
    func commit(txn: Int64, firstSeq: UInt64, lastSeq: UInt64, batch: [UInt8]) throws(LedgerError) {
        let deadline = try sendCommit(txn: txn, firstSeq: firstSeq, lastSeq: lastSeq, batch: batch)
        try awaitCommit(until: deadline)
    }

    /// Sends the batch's insert and the COMMIT in one message, without waiting (``awaitCommit(until:)``): the agent
    /// writes its log meanwhile. The batch goes as a hex literal (the agent's name is hex digits, the rest numbers).
    func sendCommit(txn: Int64, firstSeq: UInt64, lastSeq: UInt64, batch: [UInt8]) throws(LedgerError) -> Int64 {
        var sql = Array(
            "INSERT INTO custodian_txns (txn, agent, first_seq, last_seq, batch) VALUES (\(txn), '\(agent)', \(firstSeq), \(lastSeq), '\\x"
                .utf8)
        sql.reserveCapacity(sql.count + batch.count * 2 + 16)
        let digits = Array("0123456789abcdef".utf8)
        for byte in batch {
            sql.append(digits[Int(byte >> 4)])
            sql.append(digits[Int(byte & 0x0F)])
        }
        sql.append(contentsOf: "'); COMMIT".utf8)
        do {
            return try client.send(String(decoding: sql, as: UTF8.self), commit: true)
        } catch {
            rollback()
            throw error
        }
    }

    /// The outcome of the commit sent last; a refusal rolls the transaction back.
    func awaitCommit(until deadline: Int64) throws(LedgerError) {
        do { try client.collect(until: deadline, commit: true) } catch {
            if case .refused = error { rollback() }
            throw error
        }
    }

    /// Ends the open transaction without committing (a failure drops the connection, which does the same).
    func rollback() {
        if (try? client.execute("ROLLBACK")) == nil { client.disconnect() }
    }
}
