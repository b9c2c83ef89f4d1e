import CustodianCore
import CustodianCrypto
import Foundation

/// Group commit: staging in ticket order, one write and one fdatasync per batch, by the thread that finds no write
/// under way or by the syncer thread; a failed write undoes every decision not yet durable.
extension Engine {
    /// The server's word that the lines it had at hand are submitted; `sharedLoop`: its event loop serves other
    /// connections too, whose requests are better read and decided while another thread writes. The engine decides
    /// who writes.
    public func endOfReadBatch(sharedLoop: Bool) {
        writeStaged(inline: !sharedLoop)
    }

    /// Writes what is staged if no write is under way (after requests submitted with `deferWrite`): here, or with
    /// `inline` false on the syncer thread, leaving this thread free for other work.
    /// A write that recently took less than ``handOffNanos`` is done in place anyway: handing it to the syncer
    /// (a wake-up there, another back) would cost more than it saves (a log on tmpfs, a fast NVMe cache).
    public func writeStaged(inline: Bool = true) {
        condition.lock()
        if database != nil {
            // The ledger thread writes.
            condition.unlock()
            return
        }
        if inline || recentWriteNanos < Self.handOffNanos {
            writeIfIdle()
            return
        }
        if !writing, log.stagedCount > 0 {
            writing = true
            syncerWanted = true
            condition.broadcast()
        }
        condition.unlock()
    }

    /// Called with the lock held; releases it. Writes the staged records here unless a write is under way.
    func writeIfIdle() {
        guard !writing, log.stagedCount > 0 else {
            condition.unlock()
            return
        }
        writing = true
        let batch = takeBatch()
        condition.unlock()
        let replies = writeBatch(batch, handingOn: true)
        for reply in replies { reply() }
    }

    /// Stages every parked job whose turn has come. Under the lock.
    func stageParked() {
        while let entry = parked.removeValue(forKey: nextToStage) {
            nextToStage += 1
            if let completion = entry.stage() { staged.append(completion) }
            stagedMark = entry.mark
            stagedPolicy = entry.policy
            if log.stagedSeq % checkpointEvery == 0 { stageCheckpoint(now: clock()) }
            // The checkpoint that seals a segment counts in it; the next segment's record begins the next. (Not inside
            // a ledger database transaction: the ledger thread rolls over after it, in a write of its own.)
            if log.ledgerTxn == nil,
                segmentLimits.full(bytes: log.stagedSegmentBytes, records: log.stagedSegmentRecords + 1)
            {
                let reason =
                    segmentLimits.maxBytes > 0 && log.stagedSegmentBytes >= segmentLimits.maxBytes ? "size" : "records"
                _ = rollOver(now: clock(), reason: reason)
            }
        }
        takeSnapshotIfDue()
    }

    struct Batch {
        var records: AuditBatch?
        var completions: [Completion]
        var mark: LedgerMark
        var policy: LoadedPolicy
    }

    /// Takes what is staged for one write. Under the lock.
    func takeBatch() -> Batch {
        let batch = Batch(records: log.takeStaged(), completions: staged, mark: stagedMark, policy: stagedPolicy)
        staged = []
        return batch
    }

    /// Undoes every decision not yet durable and returns the replies that say so. Under the lock.
    func failPending(_ why: String) -> [() -> Void] {
        state.rollbackPending()
        policy = durablePolicy
        epoch += 1
        var replies = staged.map(\.dropped)
        staged = []
        for ticket in parked.keys.sorted() {
            if let entry = parked[ticket] { replies.append(entry.dropped) }
        }
        parked.removeAll()
        // Tickets still signing find the epoch changed and drop themselves.
        nextToStage = nextTicket
        stagedMark = state.mark()
        stagedPolicy = policy
        condition.broadcast()  // a snapshot waiting for these records gives up
        FileHandle.standardError.write(Data("custodian: error: \(why); refusing until it is writable\n".utf8))
        return replies
    }

    /// Writes a taken batch without the lock, then settles it under the lock. Returns the replies to run (after
    /// the lock is released). `handingOn`: a submitting thread, which passes any later records to the syncer and
    /// clears `writing` if there are none; the syncer keeps `writing` and loops itself.
    func writeBatch(_ batch: Batch, handingOn: Bool) -> [() -> Void] {
        var failure: AuditError?
        let began = DispatchTime.now().uptimeNanoseconds
        if let records = batch.records {
            do { try log.write(records) } catch { failure = error }
        }
        let took = DispatchTime.now().uptimeNanoseconds &- began
        if let records = batch.records, failure == nil { metrics.batch(records: records.count, nanoseconds: took) }
        condition.lock()
        defer { condition.unlock() }
        recentWriteNanos = (recentWriteNanos * 7 + took) / 8
        var replies: [() -> Void]
        if let failure {
            if let records = batch.records { log.finish(records, durable: false) }
            replies = batch.completions.map(\.dropped) + failPending("\(failure)")
        } else {
            if let records = batch.records { log.finish(records, durable: true) }
            // The snapshot thread may wait for these records.
            if snapshotting { condition.broadcast() }
            state.forget(through: batch.mark)
            durablePolicy = batch.policy
            replies = batch.completions.map(\.durable)
        }
        if handingOn {
            if log.stagedCount > 0 {
                syncerWanted = true
                condition.broadcast()
            } else {
                writing = false
                // Only a stop waits for the end of a write.
                if lifecycle >= .stopping { condition.broadcast() }
            }
        }
        return replies
    }

    /// With the lock held (and `writing` set): takes what is staged, writes it and runs its replies without the
    /// lock, then takes the lock again.
    func writeNextBatch() {
        let batch = takeBatch()
        condition.unlock()
        let replies = writeBatch(batch, handingOn: false)
        for reply in replies { reply() }
        condition.lock()
    }

    /// Writes batches back to back while records are staged; idle otherwise.
    func runSyncer() {
        condition.lock()
        while true {
            while !syncerWanted && !(lifecycle >= .stopping && !writing) { condition.wait() }
            if !syncerWanted { break }  // stopping, and nothing is being written
            syncerWanted = false
            while log.stagedCount > 0 { writeNextBatch() }
            writing = false
            if lifecycle >= .stopping { condition.broadcast() }
        }
        condition.unlock()
    }
}
