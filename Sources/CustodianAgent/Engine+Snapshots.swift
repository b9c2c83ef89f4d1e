import CustodianCore
import CustodianCrypto
import Foundation

/// Periodic ledger snapshots, written by a background thread once their records are durable, then vouched for by a
/// `snapshot` record.
extension Engine {
    /// Keeps the current snapshot file as `.prev`, writes `bytes` in its place (synced, atomically), and returns
    /// their SHA-256, or nil (said on stderr) if the file could not be written.
    static func writeSnapshot(_ bytes: [UInt8], to path: String) -> String? {
        _ = rename(path, path + ".prev")
        do {
            try SecretFile.writeAtomically(bytes, to: path, replace: true)
            return SHA256.hex(bytes)
        } catch {
            FileHandle.standardError.write(Data("custodian: error: could not write \(path): \(error)\n".utf8))
            return nil
        }
    }

    /// Hands a copy of the ledger to the snapshot thread if one is due and none is being written. Under the lock.
    ///
    /// A periodic snapshot is taken where every decision made is staged, so that the copy of the ledger is exactly
    /// what the records up to `stagedSeq` imply. Copying is cheap (the ledger is copy-on-write); the snapshot thread
    /// encodes and writes it, then records its hash after those records.
    func takeSnapshotIfDue() {
        guard snapshotEvery > 0, !snapshotting, lifecycle < .stopping, nextToStage == nextTicket,
            log.stagedSeq >= lastSnapshotSeq + snapshotEvery
        else { return }
        lastSnapshotSeq = log.stagedSeq
        pendingSnapshot = (state, log.stagedSeq, epoch)
        snapshotting = true
        condition.broadcast()
    }

    /// Writes the periodic snapshots: the previous file is kept as `.prev` until the new one is vouched for by a
    /// `snapshot` record, so that a crash in between still finds a snapshot the log names.
    func runSnapshots() {
        guard let snapshotPath else { return }
        condition.lock()
        while true {
            while pendingSnapshot == nil && lifecycle < .stopping { condition.wait() }
            guard let (copy, seq, copyEpoch) = pendingSnapshot else { break }
            pendingSnapshot = nil
            condition.unlock()
            let began = DispatchTime.now().uptimeNanoseconds
            let encoded = copy.encodeSnapshot(seq: seq)
            // The file is written only once the records up to `seq` are durable: a snapshot on disk is evidence of
            // how far the log reached (a start refuses a log shorter than its snapshots).
            condition.lock()
            while log.seq < seq && epoch == copyEpoch && lifecycle < .stopping { condition.wait() }
            let durable = log.seq >= seq && epoch == copyEpoch && lifecycle < .stopping
            condition.unlock()
            if durable, let hash = Self.writeSnapshot(encoded, to: snapshotPath) {
                metrics.snapshot(nanoseconds: DispatchTime.now().uptimeNanoseconds &- began)
                // Vouched for only if no write failed since the copy: a failure drops the records up to `seq`
                // that were not yet durable, and later records reuse their seqs; this record, staged after them,
                // is durable only if they are.
                submit(orElse: {}) { [self] now in
                    guard epoch == copyEpoch else { return .ready(stage: { nil }, dropped: {}) }
                    let policyHash = policy.hash
                    return .ready(
                        stage: { [log] in
                            log.stage(event: "snapshot", timeMs: now) { writer in
                                writer.field("policy_hash", policyHash)
                                writer.field("snapshot_seq", seq)
                                writer.field("snapshot_sha256", hash)
                            }
                            return nil
                        }, dropped: {})
                }
            }
            condition.lock()
            snapshotting = false
            // One may have come due while this one was written (and no request may come to take it).
            takeSnapshotIfDue()
            condition.broadcast()
        }
        condition.unlock()
    }
}
