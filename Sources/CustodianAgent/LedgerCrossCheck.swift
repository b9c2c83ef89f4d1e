import CustodianCore
import CustodianCrypto
import Foundation

/// `custodian audit verify --ledger-url URL D…`: several agents' logs against their ledger database.
public enum LedgerCrossCheck {
    public struct Outcome: Sendable {
        public var summary: String
        public var problems: [String]
    }

    /// Checks that the database's transactions are numbered without a gap; that each is, byte for byte, the records
    /// `first_seq`…`last_seq` of the log of the state directory its agent names (`ledger.agent`), and of no other;
    /// and that every record a log wrote in a ledger transaction (`ledger_txn`) is in that transaction. Every
    /// agent's state directory must be given: a transaction of another agent is a problem.
    public static func run(ledgerURL: String, stateDirectories: [String]) throws(AgentStartError) -> Outcome {
        var problems: [String] = []
        // agent → seq → (line, its ledger_txn)
        var logs: [String: [UInt64: (line: ArraySlice<UInt8>, txn: Int64?)]] = [:]
        var agentOf: [String: String] = [:]
        for directory in stateDirectories {
            let path = directory + "/" + LedgerAgentID.fileName
            guard FileIO.exists(path) else {
                throw AgentStartError(
                    "\(directory) has no \(LedgerAgentID.fileName): not an agent of a ledger database")
            }
            let agent = try LedgerAgentID.read(orCreateIn: directory)
            agentOf[agent] = directory
            let files: [Segments.File]
            do { files = try Segments.list(directory: directory) } catch { throw AgentStartError("\(error)") }
            var records: [UInt64: (line: ArraySlice<UInt8>, txn: Int64?)] = [:]
            for file in files {
                let bytes: [UInt8]
                do { bytes = try FileIO.readAll(file.path) } catch { throw AgentStartError("\(error)") }
                var start = 0
                while start < bytes.count, let end = bytes[start...].firstIndex(of: 0x0A) {
                    let line = bytes[start..<end]
                    start = end + 1
                    guard let (seq, _, _) = RecordShape.fields(line) else {
                        problems.append("\(file.path): a line that is not a record")
                        continue
                    }
                    records[seq] = (line, Replay.isLedgerDatabaseRecord(line) ? ledgerTxn(line) : nil)
                }
            }
            logs[agent] = records
        }
        let transactions: [LedgerDatabase.Transaction]
        do {
            let database = LedgerDatabase(url: ledgerURL, agent: "", address: Address.zero)
            try database.client.connect()
            transactions = try database.transactions(after: 0)
        } catch {
            throw AgentStartError("\(error)")
        }
        var inDatabase = Set<String>()
        for (index, transaction) in transactions.enumerated() {
            if transaction.txn != Int64(index + 1) {
                problems.append("transaction \(transaction.txn) where \(index + 1) was expected: one is missing")
            }
            guard let records = logs[transaction.agent] else {
                problems.append(
                    "transaction \(transaction.txn) is agent \(transaction.agent)'s, whose state directory was not given"
                )
                continue
            }
            var seq = transaction.firstSeq
            var start = 0
            let batch = transaction.batch
            while start < batch.count, let end = batch[start...].firstIndex(of: 0x0A) {
                let line = batch[start..<end]
                start = end + 1
                if let logged = records[seq], logged.line.elementsEqual(line), logged.txn == transaction.txn {
                    inDatabase.insert("\(transaction.agent)/\(seq)")
                } else {
                    problems.append(
                        "transaction \(transaction.txn): record \(seq) is not in \(agentOf[transaction.agent] ?? "")'s "
                            + "log as the database holds it")
                }
                seq += 1
            }
            if seq != transaction.lastSeq + 1 {
                problems.append(
                    "transaction \(transaction.txn): holds \(seq - transaction.firstSeq) records for seqs "
                        + "\(transaction.firstSeq)…\(transaction.lastSeq)")
            }
        }
        var decisions = 0
        for (agent, records) in logs {
            for (seq, record) in records where record.txn != nil {
                decisions += 1
                if !inDatabase.contains("\(agent)/\(seq)") {
                    problems.append(
                        "\(agentOf[agent] ?? agent): record \(seq) names ledger transaction \(record.txn ?? 0), which "
                            + "the database does not hold with it")
                }
            }
        }
        let summary =
            "ok: \(transactions.count) ledger transactions, each in exactly one of \(logs.count) logs; "
            + "\(decisions) records written in them, each in the database"
        return Outcome(summary: summary, problems: problems.sorted())
    }

    static func ledgerTxn(_ line: ArraySlice<UInt8>) -> Int64? {
        guard let at = RecordShape.firstIndex(of: Replay.ledgerTxnKey, in: line.suffix(140)) else { return nil }
        return LedgerAgentID.number(in: line, at: at + Replay.ledgerTxnKey.count)
    }
}
