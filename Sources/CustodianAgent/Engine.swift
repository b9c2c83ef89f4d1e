import CustodianCore
import CustodianCrypto
import Foundation

/// The connected client, from SO_PEERCRED.
public struct Peer: Sendable, Equatable {
    public var pid: Int32
    public var uid: UInt32
    public var gid: UInt32

    public init(pid: Int32, uid: UInt32, gid: UInt32) {
        self.pid = pid
        self.uid = uid
        self.gid = gid
    }
}

/// The answer to one `sign` request.
public enum SignOutcome: Sendable {
    /// Signed and recorded: the signature, the envelope to send, the request hash, the audit seq.
    case signed(signature: String, envelope: [UInt8], requestHash: String, auditSeq: UInt64)
    /// Refused and recorded.
    case refused(Denial, auditSeq: UInt64)
    /// The decision could not be made durable: nothing was signed (fail closed).
    case unavailable(String)
}

/// What `status` reports.
public struct StatusSnapshot: Sendable {
    public var address: String
    public var policyHash: String
    public var auditSeq: UInt64
    public var auditHead: String
    public var openSessions: Int
    public var closedSessions: Int
    public var startedAtMs: UInt64
}

/// The single owner of the key, the policy, the ledger and the audit log.
///
/// Each request is decided on the thread that submits it (an event loop's) and takes a ticket: under the engine's
/// lock it is checked against the state every earlier ticket left and its effect is applied to the ledger; the
/// signature is made outside the lock (two requests sign at once on two cores); then, under the lock again, the
/// records are staged strictly in ticket order, so the log's order is the order of the decisions. Records are made
/// durable in batches (group commit): one write and one fdatasync for everything staged since the last, outside
/// the lock, while later requests are decided. When no batch is being written, the thread that staged writes at
/// once (a lone client pays no thread hand-off); one that finds more records staged after its batch hands them to
/// the syncer thread, which writes batches back to back while there are any. Replies run only after their batch
/// is durable. If a write fails, every decision not yet durable is undone (the ledger and the policy go back to
/// what the log holds) and each of their replies says `audit.unavailable`: no signature leaves unrecorded.
public final class Engine: @unchecked Sendable {
    private let key: SigningKey
    /// The agent's address.
    public let address: Address
    private var policy: LoadedPolicy
    /// The policy in force as of the last durable record, restored when a write fails.
    private var durablePolicy: LoadedPolicy
    private var state: LedgerState
    private let log: AuditLog
    private let reader = NitroRPCv0Reader()
    private let clock: @Sendable () -> UInt64
    private let checkpointEvery: UInt64
    private let startedAtMs: UInt64
    /// Where the ledger snapshot is written (nil: none): at a clean stop, and every `snapshotEvery` records.
    private let snapshotPath: String?
    /// Records between periodic snapshots (0: only at a clean stop).
    private let snapshotEvery: UInt64

    /// Guards everything above that changes, and the fields below.
    private let condition = NSCondition()
    /// The next ticket to hand out, and the next to stage.
    private var nextTicket: UInt64 = 0
    private var nextToStage: UInt64 = 0
    /// Decided jobs waiting for their turn to stage (an earlier ticket is still signing).
    private var parked: [UInt64: Entry] = [:]
    /// Bumped when a failed write undoes the pending decisions; a job decided before it is void.
    private var epoch: UInt64 = 0
    /// The ledger position and the policy after the last staged job.
    private var stagedMark: LedgerMark
    private var stagedPolicy: LoadedPolicy
    /// What runs once the records staged so far are durable (or dropped), in staging order.
    private var staged: [Completion] = []
    /// Whether a batch is being written (by a submitting thread or the syncer).
    private var writing = false
    /// Whether the syncer is asked to write what is staged.
    private var syncerWanted = false
    private var stopping = false
    private var stopped = false
    /// How long writes took lately (a moving average, in nanoseconds), and the cost of handing one off.
    private var recentWriteNanos: UInt64 = 1_000_000
    private static let handOffNanos: UInt64 = 50_000
    /// The seq the latest periodic snapshot was taken at, and the one waiting for the snapshot thread.
    private var lastSnapshotSeq: UInt64 = 0
    private var pendingSnapshot: (state: LedgerState, seq: UInt64, epoch: UInt64)?
    /// Whether the snapshot thread is encoding or writing one.
    private var snapshotting = false

    private struct Completion {
        let durable: () -> Void
        let dropped: () -> Void
    }

    /// A decided job: stages its records (in ticket order) and returns what to run once they are durable.
    private struct Entry {
        let stage: () -> Completion?
        let dropped: () -> Void
        let mark: LedgerMark
        let policy: LoadedPolicy
    }

    /// What deciding a job leaves to do.
    private enum Plan {
        /// Records to stage as they are.
        case ready(stage: () -> Completion?, dropped: () -> Void)
        /// A digest to sign first (outside the lock), then records to stage with the signature.
        case sign(digest: [UInt8], stage: (String) -> () -> Completion?, dropped: () -> Void)
    }

    /// Takes ownership of the key; replays nothing itself (the caller passes the rebuilt `state`).
    public init(
        key: consuming SigningKey, policy: LoadedPolicy, state: LedgerState, log: AuditLog, checkpointEvery: UInt64,
        snapshotPath: String? = nil, snapshotEvery: UInt64 = 0,
        clock: @escaping @Sendable () -> UInt64 = Engine.systemClock
    ) {
        self.snapshotPath = snapshotPath
        self.snapshotEvery = snapshotPath == nil ? 0 : snapshotEvery
        self.address = key.address
        self.key = key
        self.policy = policy
        self.durablePolicy = policy
        self.stagedPolicy = policy
        var state = state
        state.startTracking()
        self.stagedMark = state.mark()
        self.state = state
        self.log = log
        self.clock = clock
        self.checkpointEvery = max(checkpointEvery, 1)
        self.startedAtMs = clock()
        self.lastSnapshotSeq = log.seq
    }

    /// Unix milliseconds from the system clock.
    public static let systemClock: @Sendable () -> UInt64 = {
        var spec = timespec()
        clock_gettime(CLOCK_REALTIME, &spec)
        return UInt64(spec.tv_sec) * 1000 + UInt64(spec.tv_nsec / 1_000_000)
    }

    /// Records the start (and the policy in force) durably, then starts the syncer thread. Called once, before
    /// anything is submitted (the server accepts no connection until it returns); written through the same
    /// writer path as every batch.
    public func start(version: String) throws(AuditError) {
        let now = clock()
        condition.lock()
        defer { condition.unlock() }
        precondition(!writing && nextTicket == 0, "Engine.start runs once, before any request")
        log.stage(event: "start", timeMs: now) { writer in
            writer.field("address", address.checksummed)
            writer.field("version", version)
            writer.field("policy_hash", policy.hash)
        }
        let last = log.stage(event: "policy_loaded", timeMs: now) { writer in
            writer.field("policy_hash", policy.hash)
            if let path = policy.path { writer.field("path", path) }
        }
        writing = true
        writeNextBatch()
        writing = false
        guard log.seq == last else { throw .unavailable("the start records could not be written") }
        // The thread ends when the engine stops; it holds the engine until then.
        let thread = Thread { [self] in runSyncer() }
        thread.name = "custodian-syncer"
        thread.start()
        if snapshotEvery > 0 {
            let snapshots = Thread { [self] in runSnapshots() }
            snapshots.name = "custodian-snapshots"
            snapshots.start()
        }
    }

    /// Decides a message and replies once the decision is durable; `reply` runs on the thread that wrote the
    /// batch (this one when no other batch was being written).
    ///
    /// The message is read (parsed, checked, hashed) before the lock is taken.
    ///
    /// `deferWrite`: stage only; the caller has more requests at hand and calls ``writeStaged()`` after the last,
    /// so that they share one write (a client that sends several lines at once).
    public func sign(
        message: [UInt8], peer: Peer?, deferWrite: Bool = false, reply: @escaping @Sendable (SignOutcome) -> Void
    ) {
        let parsed = reader.read(message)
        submit(deferWrite: deferWrite, orElse: { reply(.unavailable("the agent is stopping")) }) { now in
            plan(message, parsed: parsed, peer: peer, now: now, reply: reply)
        }
    }

    /// Replaces the policy (after SIGHUP), in order with the requests around it; a nil policy records the failure.
    public func reload(_ loaded: LoadedPolicy?, error: String?, reply: @escaping @Sendable (Bool) -> Void) {
        submit(orElse: { reply(false) }) { now in
            let old = policy.hash
            if let loaded { policy = loaded }
            return .ready(
                stage: { [log] in
                    if let loaded {
                        log.stage(event: "policy_reloaded", timeMs: now) { writer in
                            writer.field("policy_hash", loaded.hash)
                            writer.field("previous_policy_hash", old)
                        }
                    } else {
                        log.stage(event: "policy_reload_failed", timeMs: now) { writer in
                            writer.field("policy_hash", old)
                            writer.field("error", error ?? "unknown")
                        }
                    }
                    return Completion(durable: { reply(loaded != nil) }, dropped: { reply(false) })
                },
                dropped: { reply(false) })
        }
    }

    /// Records a lifecycle or security event (a refused caller, an operator action) in order with the decisions.
    public func record(event name: String, peer: Peer?, _ fields: @escaping @Sendable (inout JSONWriter) -> Void) {
        submit(orElse: {}) { now in
            let policyHash = policy.hash
            return .ready(
                stage: { [log] in
                    log.stage(event: name, timeMs: now) { writer in
                        writePeer(peer, &writer)
                        writer.field("policy_hash", policyHash)
                        fields(&writer)
                    }
                    return nil
                },
                dropped: {})
        }
    }

    /// Decides one job under the lock with the next ticket, signs outside it if the job asks, stages in ticket
    /// order, then writes the batch here if no other write is under way.
    private func submit(deferWrite: Bool = false, orElse refuse: () -> Void, _ decide: (UInt64) -> Plan) {
        condition.lock()
        if stopping {
            condition.unlock()
            refuse()
            return
        }
        let ticket = nextTicket
        nextTicket += 1
        switch decide(clock()) {
        case .ready(let stage, let dropped):
            parked[ticket] = Entry(stage: stage, dropped: dropped, mark: state.mark(), policy: policy)
        case .sign(let digest, let stage, let dropped):
            let mark = state.mark()
            let decidedPolicy = policy
            let decidedEpoch = epoch
            condition.unlock()
            let signature = try? key.sign(digest: digest)
            condition.lock()
            guard epoch == decidedEpoch else {
                // A write failed meanwhile: this decision was undone with the rest.
                condition.unlock()
                dropped()
                return
            }
            guard let signature else {
                // Cannot happen with a valid key and a 32-byte digest; if it does, nothing decided since the
                // last durable record can stand (later tickets were decided on this one's effect).
                let replies = failPending("signing failed")
                condition.unlock()
                dropped()
                for reply in replies { reply() }
                return
            }
            parked[ticket] = Entry(
                stage: stage(Hex.encode(signature, prefixed: true)), dropped: dropped, mark: mark,
                policy: decidedPolicy)
        }
        stageParked()
        if deferWrite {
            condition.unlock()
            return
        }
        writeIfIdle()
    }

    /// Writes what is staged if no write is under way (after requests submitted with `deferWrite`): here, or with
    /// `inline` false on the syncer thread, leaving this thread free for other work.
    /// A write that recently took less than ``handOffNanos`` is done in place anyway: handing it to the syncer
    /// (a wake-up there, another back) would cost more than it saves (a log on tmpfs, a fast NVMe cache).
    public func writeStaged(inline: Bool = true) {
        condition.lock()
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
    private func writeIfIdle() {
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
    private func stageParked() {
        while let entry = parked.removeValue(forKey: nextToStage) {
            nextToStage += 1
            if let completion = entry.stage() { staged.append(completion) }
            stagedMark = entry.mark
            stagedPolicy = entry.policy
            if log.stagedSeq % checkpointEvery == 0 { stageCheckpoint(now: clock()) }
        }
        // A periodic snapshot is taken where every decision made is staged, so that the copy of the ledger is
        // exactly what the records up to `stagedSeq` imply. Copying is cheap (the ledger is copy-on-write); the
        // snapshot thread encodes and writes it, then records its hash after those records.
        if snapshotEvery > 0, !snapshotting, nextToStage == nextTicket,
            log.stagedSeq >= lastSnapshotSeq + snapshotEvery
        {
            lastSnapshotSeq = log.stagedSeq
            pendingSnapshot = (state, log.stagedSeq, epoch)
            snapshotting = true
            condition.broadcast()
        }
    }

    /// Keeps the current snapshot file as `.prev`, writes `bytes` in its place (synced, atomically), and returns
    /// their SHA-256, or nil (said on stderr) if the file could not be written.
    private static func writeSnapshot(_ bytes: [UInt8], to path: String) -> String? {
        _ = rename(path, path + ".prev")
        do {
            try SecretFile.writeAtomically(bytes, to: path, replace: true)
            return SHA256.hex(bytes)
        } catch {
            FileHandle.standardError.write(Data("custodian: error: could not write \(path): \(error)\n".utf8))
            return nil
        }
    }

    /// Writes the periodic snapshots: the previous file is kept as `.prev` until the new one is vouched for by a
    /// `snapshot` record, so that a crash in between still finds a snapshot the log names.
    private func runSnapshots() {
        guard let snapshotPath else { return }
        condition.lock()
        while true {
            while pendingSnapshot == nil && !stopping { condition.wait() }
            guard let (copy, seq, copyEpoch) = pendingSnapshot else { break }
            pendingSnapshot = nil
            condition.unlock()
            let encoded = copy.encodeSnapshot(seq: seq)
            // The file is written only once the records up to `seq` are durable: a snapshot on disk is evidence of
            // how far the log reached (a start refuses a log shorter than its snapshots).
            condition.lock()
            while log.seq < seq && epoch == copyEpoch && !stopping { condition.wait() }
            let durable = log.seq >= seq && epoch == copyEpoch && !stopping
            condition.unlock()
            if durable, let hash = Self.writeSnapshot(encoded, to: snapshotPath) {
                // Vouched for only if no write failed since the copy: a failure drops the records up to `seq`
                // that were not yet durable, and later records reuse their seqs; this record, staged after them,
                // is durable only if they are.
                submit(orElse: {}) { now in
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
            condition.broadcast()
        }
        condition.unlock()
    }

    private struct Batch {
        var records: AuditBatch?
        var completions: [Completion]
        var mark: LedgerMark
        var policy: LoadedPolicy
    }

    /// Takes what is staged for one write. Under the lock.
    private func takeBatch() -> Batch {
        let batch = Batch(records: log.takeStaged(), completions: staged, mark: stagedMark, policy: stagedPolicy)
        staged = []
        return batch
    }

    /// Undoes every decision not yet durable and returns the replies that say so. Under the lock.
    private func failPending(_ why: String) -> [() -> Void] {
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
    private func writeBatch(_ batch: Batch, handingOn: Bool) -> [() -> Void] {
        var failure: AuditError?
        let began = DispatchTime.now().uptimeNanoseconds
        if let records = batch.records {
            do { try log.write(records) } catch { failure = error }
        }
        let took = DispatchTime.now().uptimeNanoseconds &- began
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
                if stopping { condition.broadcast() }
            }
        }
        return replies
    }

    /// With the lock held (and `writing` set): takes what is staged, writes it and runs its replies without the
    /// lock, then takes the lock again.
    private func writeNextBatch() {
        let batch = takeBatch()
        condition.unlock()
        let replies = writeBatch(batch, handingOn: false)
        for reply in replies { reply() }
        condition.lock()
    }

    /// Writes batches back to back while records are staged; idle otherwise.
    private func runSyncer() {
        condition.lock()
        while true {
            while !syncerWanted && !(stopping && !writing) { condition.wait() }
            if !syncerWanted { break }  // stopping, and nothing is being written
            syncerWanted = false
            while log.stagedCount > 0 { writeNextBatch() }
            writing = false
            if stopping { condition.broadcast() }
        }
        condition.unlock()
    }

    /// The latest durable status (the session counts include decisions still being written).
    public func status() -> StatusSnapshot {
        condition.lock()
        defer { condition.unlock() }
        let counts = state.counts
        return StatusSnapshot(
            address: address.checksummed, policyHash: durablePolicy.hash, auditSeq: log.seq, auditHead: log.head,
            openSessions: counts.open, closedSessions: counts.closed, startedAtMs: startedAtMs)
    }

    /// Waits for the decisions under way, writes a ledger snapshot, a checkpoint and a stop record, and stops the
    /// syncer. Requests submitted from then on are refused.
    public func stop() {
        condition.lock()
        defer { condition.unlock() }
        guard !stopping else {
            while !stopped { condition.wait() }
            return
        }
        stopping = true
        condition.broadcast()
        // A periodic snapshot being written finishes first: the stop's own snapshot must be the last file written.
        while snapshotting && pendingSnapshot == nil { condition.wait() }
        pendingSnapshot = nil
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
        stopped = true
        condition.broadcast()
    }

    /// Checks a request and applies its effect to the ledger (under the lock); what is left is to sign (for an
    /// allowance) and to stage the record.
    private func plan(
        _ message: [UInt8], parsed: Result<SignableRequest, Denial>, peer: Peer?, now: UInt64,
        reply: @escaping @Sendable (SignOutcome) -> Void
    ) -> Plan {
        let dropped = { reply(.unavailable("the decision could not be recorded")) }
        let policyHash = policy.hash
        let request: SignableRequest
        switch parsed {
        case .failure(let denial):
            return .ready(
                stage: { [log] in
                    let seq = log.stage(event: "sign", timeMs: now) { writer in
                        writePeer(peer, &writer)
                        writer.field("policy_hash", policyHash)
                        writer.field("message_sha256", SHA256.hex(message))
                        writer.field("message_bytes", message.count)
                        writer.field("decision", "deny")
                        writeDenial(denial, &writer)
                    }
                    return Completion(durable: { reply(.refused(denial, auditSeq: seq)) }, dropped: dropped)
                }, dropped: dropped)
        case .success(let parsed):
            request = parsed
        }
        let decision = policy.policy.evaluate(request, state: state, agent: address, nowMs: now)
        let common: (inout JSONWriter) -> Void = { writer in
            writePeer(peer, &writer)
            writer.field("policy_hash", policyHash)
            writer.field("method", request.body.method.rawValue)
            let sessionID: String =
                switch request.body {
                case .create(let definition, _, _): definition.appSessionID
                default: request.namedSessionID ?? ""
                }
            writer.field("app_session_id", sessionID)
            writer.field("request_hash", Hex.encode(request.digest, prefixed: true))
            writer.field("req", utf8: request.signedBytes)
        }
        switch decision {
        case .deny(let denial):
            return .ready(
                stage: { [log] in
                    let seq = log.stage(event: "sign", timeMs: now) { writer in
                        common(&writer)
                        writer.field("decision", "deny")
                        writeDenial(denial, &writer)
                    }
                    return Completion(durable: { reply(.refused(denial, auditSeq: seq)) }, dropped: dropped)
                }, dropped: dropped)
        case .allow(let effect):
            state.apply(effect, atMs: now)
            return .sign(
                digest: request.digest,
                stage: { [log] signature in
                    {
                        let seq = log.stage(event: "sign", timeMs: now) { writer in
                            common(&writer)
                            writer.field("decision", "allow")
                            writer.field("signature", signature)
                            // Warn mode: signed, and the refusal it would have been is on record.
                            writeWarnings(effect.warnings, &writer)
                        }
                        let envelope = NitroRPCv0Reader.envelope(for: request, appending: signature)
                        let outcome = SignOutcome.signed(
                            signature: signature, envelope: envelope,
                            requestHash: Hex.encode(request.digest, prefixed: true), auditSeq: seq)
                        return Completion(durable: { reply(outcome) }, dropped: dropped)
                    }
                }, dropped: dropped)
        }
    }

    private func stageCheckpoint(now: UInt64) {
        let head = log.stagedPrev
        guard let headBytes = Hex.decode(head), let signature = try? key.personalSign(headBytes) else { return }
        log.stage(event: "checkpoint", timeMs: now) { writer in
            writer.field("policy_hash", policy.hash)
            writer.field("address", address.checksummed)
            writer.field("head", head)
            writer.field("signature", Hex.encode(signature, prefixed: true))
        }
    }
}

/// `reason`, `detail` and `figures` of a denial, as fields of the object being written (audit records, dry runs).
public func writeDenial(_ denial: Denial, _ writer: inout JSONWriter) {
    writer.field("reason", denial.reason.rawValue)
    writer.field("detail", denial.detail)
    if !denial.figures.isEmpty {
        writer.key("figures")
        writer.beginObject()
        for figure in denial.figures { writer.field(figure.name, figure.value) }
        writer.endObject()
    }
}

/// The `warnings` array of an allowance under warn mode (nothing when there are none).
public func writeWarnings(_ warnings: [Denial], _ writer: inout JSONWriter) {
    guard !warnings.isEmpty else { return }
    writer.key("warnings")
    writer.beginArray()
    for warning in warnings {
        writer.beginObject()
        writeDenial(warning, &writer)
        writer.endObject()
    }
    writer.endArray()
}

private func writePeer(_ peer: Peer?, _ writer: inout JSONWriter) {
    guard let peer else { return }
    writer.key("peer")
    writer.beginObject()
    writer.field("uid", peer.uid)
    writer.field("gid", peer.gid)
    writer.field("pid", peer.pid)
    writer.endObject()
}
