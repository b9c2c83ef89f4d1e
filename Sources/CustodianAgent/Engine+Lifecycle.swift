import CustodianCore
import CustodianCrypto
import Foundation

/// Start and stop: the start records durable before anything is served; at the stop, the decisions under way, a
/// ledger snapshot, a stop record and a checkpoint.
extension Engine {
    /// Records the start (and the policy in force) durably, then starts the syncer thread. Called once, before
    /// anything is submitted (the server accepts no connection until it returns); written through the same
    /// writer path as every batch.
    public func start(version: String) throws(AuditError) {
        let now = clock()
        condition.lock()
        defer { condition.unlock() }
        precondition(lifecycle == .created && !writing && nextTicket == 0, "Engine.start runs once, before any request")
        log.stage(event: "start", timeMs: now) { writer in
            writer.field("address", address.checksummed)
            writer.field("version", version)
            writer.field("policy_hash", policy.hash)
            if let database { writer.field("ledger_agent", database.agent) }
        }
        let last = log.stage(event: "policy_loaded", timeMs: now) { writer in
            writer.field("policy_hash", policy.hash)
            if let path = policy.path { writer.field("path", path) }
        }
        writing = true
        writeNextBatch()
        writing = false
        guard log.seq == last else { throw .unavailable("the start records could not be written") }
        lifecycle = .running
        // The thread ends when the engine stops; it holds the engine until then. With a ledger database, the ledger
        // thread decides and writes everything instead.
        let thread = Thread { [self] in database == nil ? runSyncer() : runLedger() }
        thread.name = database == nil ? "custodian-syncer" : "custodian-ledger"
        thread.start()
        if snapshotEvery > 0 {
            let snapshots = Thread { [self] in runSnapshots() }
            snapshots.name = "custodian-snapshots"
            snapshots.start()
        }
    }

    /// Waits for the decisions under way, writes a ledger snapshot, a checkpoint and a stop record, and stops the
    /// syncer. Requests submitted from then on are refused.
    public func stop() {
        condition.lock()
        defer { condition.unlock() }
        guard lifecycle < .stopping else {
            while lifecycle != .stopped { condition.wait() }
            return
        }
        lifecycle = .stopping
        condition.broadcast()
        // A periodic snapshot being written finishes first: the stop's own snapshot must be the last file written.
        while snapshotting && pendingSnapshot == nil { condition.wait() }
        pendingSnapshot = nil
        while database != nil && (writing || !jobs.isEmpty || database?.pending != nil) { condition.wait() }
        while writing || nextToStage != nextTicket {
            // A ticket still signing stages (and may write) when it is done; the timeout covers a signer that
            // staged while nothing was being written and left its batch for nobody.
            _ = condition.wait(until: Date(timeIntervalSinceNow: 0.01))
            if !writing && nextToStage == nextTicket { break }
        }
        if log.stagedCount > 0 {
            writing = true
            writeNextBatch()
            writing = false
        }
        if database?.recover == true {
            // The database holds a batch the log lacks: the next start writes it first, at the seqs after the log's
            // last record; a stop record there would take them.
            FileHandle.standardError.write(
                Data(
                    "custodian: error: stopping without a stop record: the ledger database holds records the audit log lacks; the next start writes them\n"
                        .utf8))
            lifecycle = .stopped
            condition.broadcast()
            return
        }
        let now = clock()
        // The ledger as of this stop, so that the next start need not replay the whole log; the stop record
        // carries its hash, which binds the snapshot to the chain.
        let snapshotHash = snapshotPath.flatMap { path in
            Self.writeSnapshot(state.encodeSnapshot(seq: log.stagedSeq + 1), to: path)  // the stop record's seq
        }
        log.stage(event: "stop", timeMs: now) { writer in
            writer.field("policy_hash", policy.hash)
            if let snapshotHash { writer.field("snapshot_sha256", snapshotHash) }
        }
        stageCheckpoint(now: now)
        let last = log.stagedSeq
        writing = true
        writeNextBatch()
        writing = false
        if log.seq != last {
            FileHandle.standardError.write(Data("custodian: error: could not record the stop\n".utf8))
        }
        lifecycle = .stopped
        condition.broadcast()
    }
}
