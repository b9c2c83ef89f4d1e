import CustodianCore
import CustodianCrypto
import Foundation
import Synchronization

/// What the engine keeps of the ledger database (``LedgerDatabase``). Touched only by the ledger thread.
public final class LedgerLink: @unchecked Sendable {
    let database: LedgerDatabase
    /// This agent's name in the database.
    public let agent: String
    /// The last transaction applied to the engine's ledger (0: none yet; the first batch applies them all).
    var known: Int64 = 0
    /// The last ledger transaction this agent's log names: the database must hold it, as this agent's.
    let evidence: Int64?
    /// The sessions and channels the state directory's own history holds from before the database: the database
    /// must hold them too (`custodian ledger import`).
    let localSessions: [String]
    let localChannels: [String]
    /// Whether the evidence was checked against the database.
    var checked = false
    /// Whether this agent's own transactions must be compared with its log (at start, after a commit in doubt or
    /// a failed write): the batches the database holds and the log does not are written to it first.
    var recover = true
    /// Set when the database and this agent's evidence disagree: nothing more is decided (restart after the
    /// operator has settled it).
    var diverged: String?
    /// The batch the database committed last, waiting for its log write (made while the next batch commits).
    var pending: Engine.Batch?

    public init(url: String, agent: String, address: Address, evidence: Int64?, local: LedgerState, timeoutMs: Int32) {
        self.database = LedgerDatabase(url: url, agent: agent, address: address, timeoutMs: timeoutMs)
        self.agent = agent
        self.evidence = evidence
        self.localSessions = Array(local.sessions.keys)
        self.localChannels = Array(local.channels.channels.keys)
    }
}

/// A job waiting for the ledger thread.
struct Job {
    /// Whether it decides against the ledger (in a database transaction) or only writes to the log.
    let ledger: Bool
    let decide: (UInt64) -> Engine.Plan
    let refuse: () -> Void
}

/// Why the replies being dropped now were dropped, when the ledger database is the cause (read by the replies).
final class DropCause: Sendable {
    private let value = Mutex<String?>(nil)

    var current: String? { value.withLock { $0 } }

    func set(_ why: String?) { value.withLock { $0 = why } }

    /// Why a job was dropped: the ledger database's cause while it is the cause (`ledger.unavailable`), else the
    /// audit log's (`audit.unavailable`) with `why`.
    func denial(orElse why: String) -> Denial {
        current.map { Denial(.ledgerUnavailable, $0) } ?? Denial(.auditUnavailable, why)
    }
}

/// The ledger thread: with a ledger database, every decision is made here, one group commit at a time, while the
/// database's lock is held (``LedgerDatabase``).
extension Engine {
    func runLedger() {
        condition.lock()
        while true {
            while jobs.isEmpty && lifecycle < .stopping && database?.pending == nil { condition.wait() }
            if jobs.isEmpty {
                // Nothing more to decide now: the batch committed last goes to the log at once.
                if database?.pending != nil {
                    writing = true
                    condition.unlock()
                    flushPending()
                    condition.lock()
                    writing = false
                    condition.broadcast()
                    continue
                }
                break
            }
            let taken = jobs
            jobs = []
            writing = true
            condition.unlock()
            let decisions = taken.filter(\.ledger)
            if !decisions.isEmpty { ledgerBatch(decisions) }
            let others = taken.filter { !$0.ledger }
            if !others.isEmpty || segmentDue {
                flushPending()
                logBatch(others)
            }
            condition.lock()
            writing = false
            condition.broadcast()
        }
        condition.unlock()
    }

    /// Whether the active segment is full (read without the lock: only the ledger thread stages and writes).
    private var segmentDue: Bool {
        condition.lock()
        defer { condition.unlock() }
        return segmentLimits.full(bytes: log.stagedSegmentBytes, records: log.stagedSegmentRecords + 1)
    }

    /// Writes the batch the database committed last to the log, then runs its replies. A failed write leaves it in
    /// the database alone: the next batch writes it to the log from there first (and so the batch committed after
    /// it, taken already, is dropped with it).
    func flushPending() {
        guard let link = database else { return }
        condition.lock()
        let taken = link.pending
        link.pending = nil
        condition.unlock()
        guard let pending = taken else { return }
        let replies = writeBatch(pending, handingOn: false)
        condition.lock()
        if let records = pending.records, log.seq < records.lastSeq { link.recover = true }
        condition.unlock()
        for reply in replies { reply() }
    }

    /// Jobs that record no decision, and a rollover that is due: written to the log alone. Not while the database
    /// holds a batch of this agent's that the log lacks: its records take the next seqs (they are refused).
    private func logBatch(_ taken: [Job]) {
        if database?.recover == true {
            return refuseUnavailable(taken, "the audit log must first take a batch the ledger database holds")
        }
        condition.lock()
        for job in taken {
            if !decideAndStage(job.decide) { condition.lock() }
        }
        if segmentLimits.full(bytes: log.stagedSegmentBytes, records: log.stagedSegmentRecords + 1) {
            let reason =
                segmentLimits.maxBytes > 0 && log.stagedSegmentBytes >= segmentLimits.maxBytes ? "size" : "records"
            _ = rollOver(now: clock(), reason: reason)
        }
        guard log.stagedCount > 0 else {
            condition.unlock()
            return
        }
        writeNextBatch()
        condition.unlock()
    }

    /// Refuses `jobs` with `ledger.unavailable`, naming why.
    private func refuseUnavailable(_ jobs: [Job], _ why: String) {
        dropCause.set(why)
        for job in jobs { job.refuse() }
        dropCause.set(nil)
    }

    /// One group commit against the ledger database: take its lock (numbering the transaction), apply what other
    /// agents committed since, write to the log what the database holds of this agent's and the log does not,
    /// decide the jobs, commit the batch, then write it to the log; replies run once both hold it.
    private func ledgerBatch(_ taken: [Job]) {
        guard let link = database else { return }
        if let diverged = link.diverged {
            flushPending()
            return refuseUnavailable(taken, diverged)
        }
        let txn: Int64
        do {
            txn = try link.database.lock()
            try catchUp(link, before: txn)
        } catch {
            link.database.rollback()
            flushPending()
            if case .diverged(let why) = error {
                link.diverged = why
                FileHandle.standardError.write(Data("custodian: error: \(error); refusing every decision\n".utf8))
            }
            return refuseUnavailable(taken, "\(error)")
        }
        condition.lock()
        log.ledgerTxn = txn
        for job in taken {
            if !decideAndStage(job.decide) { condition.lock() }
        }
        log.ledgerTxn = nil
        let batch = takeBatch()
        condition.unlock()
        guard let records = batch.records else {
            link.database.rollback()
            for completion in batch.completions { completion.durable() }
            return
        }
        // The insert and COMMIT go out; while the database commits, the batch committed before is written to the
        // log and answered (each batch: the database first, then the log, then the replies).
        var failure: LedgerError?
        do {
            let deadline = try link.database.sendCommit(
                txn: txn, firstSeq: records.lastSeq - UInt64(records.count) + 1, lastSeq: records.lastSeq,
                batch: records.bytes)
            flushPending()
            try link.database.awaitCommit(until: deadline)
        } catch {
            failure = error
        }
        condition.lock()
        if failure == nil && link.recover {
            // The batch before failed to reach the log, and this one chains on it: both wait in the database for
            // the next batch to write them to the log.
            link.known = txn
            state.forget(through: batch.mark)
            log.finish(records, durable: false)
            condition.unlock()
            for completion in batch.completions { completion.dropped() }
            return
        }
        if let failure {
            log.finish(records, durable: false)
            // A commit in doubt may stand: the next batch finds it (under the lock, its outcome is settled) and
            // applies it and writes it to the log before deciding anything else.
            if case .inDoubt = failure { link.recover = true }
            dropCause.set("\(failure)")
            let replies = batch.completions.map(\.dropped) + failPending("\(failure)")
            condition.unlock()
            for reply in replies { reply() }
            dropCause.set(nil)
            return
        }
        link.known = txn
        // The database holds it: it is the ledger now, whatever becomes of the log's write.
        state.forget(through: batch.mark)
        link.pending = batch
        condition.unlock()
    }

    /// Before the start records: takes the database's lock (so that a commit a crash left in flight is settled),
    /// writes to the log the batches the database holds of this agent's and the log does not (their records come
    /// right after the log's last: nothing else may take those seqs), checks the database holds the last transaction
    /// the log names, and lets go. Throws when the database cannot be reached: the agent does not start.
    public func settleWithDatabase() throws(LedgerError) {
        guard let link = database else { return }
        do throws(LedgerError) {
            let txn = try link.database.lock()
            try recoverOwn(link)
            link.recover = false
            if let evidence = link.evidence {
                guard evidence < txn, let found = try link.database.transaction(evidence), found.agent == link.agent
                else {
                    throw LedgerError.diverged(
                        "this agent's audit log names ledger transaction \(evidence), which the database does not "
                            + "hold as this agent's (the database is older than the log: restored from a backup?)")
                }
            }
            link.database.rollback()
        } catch {
            link.database.rollback()
            throw error
        }
    }

    /// Under the database's lock: applies the transactions after `link.known`, writes this agent's that its log
    /// lacks, and (once) checks the database holds what this agent's evidence says it must.
    private func catchUp(_ link: LedgerLink, before txn: Int64) throws(LedgerError) {
        guard txn - 1 >= link.known else {
            throw .diverged(
                "the ledger database's last transaction is \(txn - 1), but this agent applied \(link.known) "
                    + "(the database went back: restored from a backup?)")
        }
        if txn - 1 > link.known {
            let missed = try link.database.transactions(after: link.known, before: txn)
            condition.lock()
            defer { condition.unlock() }
            for transaction in missed {
                if let error = Replay.applyDatabaseBatch(transaction.batch, to: &state, agent: address) {
                    throw .diverged("transaction \(transaction.txn) does not apply to the ledger: \(error)")
                }
                link.known = transaction.txn
            }
            state.forget(through: state.mark())
            guard link.known == txn - 1 else {
                throw .diverged("transactions \(link.known + 1)…\(txn - 1) are missing from the ledger database")
            }
        }
        if link.recover {
            try recoverOwn(link)
            link.recover = false
        }
        if !link.checked {
            try checkEvidence(link, before: txn)
            link.checked = true
        }
    }

    /// Writes to the log the batches the database committed for this agent after the log's last record.
    private func recoverOwn(_ link: LedgerLink) throws(LedgerError) {
        condition.lock()
        let logSeq = log.seq
        condition.unlock()
        let own = try link.database.ownTransactions(after: logSeq)
        for transaction in own {
            condition.lock()
            guard transaction.firstSeq == log.seq + 1, log.stageRecovered(transaction.batch) else {
                let seq = log.seq
                condition.unlock()
                throw .diverged(
                    "transaction \(transaction.txn) holds this agent's records \(transaction.firstSeq)…"
                        + "\(transaction.lastSeq), which do not follow its log (seq \(seq))")
            }
            let batch = takeBatch()
            condition.unlock()
            FileHandle.standardError.write(
                Data(
                    ("custodian: writing records \(transaction.firstSeq)…\(transaction.lastSeq) (ledger transaction "
                        + "\(transaction.txn)) from the ledger database to the audit log\n").utf8))
            let replies = writeBatch(batch, handingOn: false)
            for reply in replies { reply() }
            condition.lock()
            let written = log.seq == transaction.lastSeq
            condition.unlock()
            guard written else { throw .unavailable("the audit log could not take the recovered records") }
        }
    }

    /// Never trust less history than there is evidence for: the last transaction this agent's log names must be in
    /// the database as this agent's, and every session and channel of the state directory's own history (from before
    /// the database) must be in the database's ledger.
    private func checkEvidence(_ link: LedgerLink, before txn: Int64) throws(LedgerError) {
        if let evidence = link.evidence {
            guard evidence < txn, let found = try link.database.transaction(evidence), found.agent == link.agent else {
                throw .diverged(
                    "this agent's audit log names ledger transaction \(evidence), which the database does not hold "
                        + "as this agent's (the database is older than the log: restored from a backup?)")
            }
        }
        condition.lock()
        defer { condition.unlock() }
        let sessions = link.localSessions.filter { state.session($0) == nil }
        let channels = link.localChannels.filter { state.channels.channels[$0] == nil }
        guard sessions.isEmpty && channels.isEmpty else {
            throw .diverged(
                "the state directory's own ledger holds \(sessions.count) session(s) and \(channels.count) channel(s) "
                    + "the database does not (first: \((sessions + channels).first ?? "")): import it first "
                    + "(custodian ledger import --ledger-url)")
        }
    }
}
