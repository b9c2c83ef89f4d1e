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
/// Each request is decided on the thread that submits it (an event loop's), under the engine's lock: checked
/// against the state every earlier request left, signed, its record staged, the ledger changed. Nothing is sent
/// then. Records are made durable in batches (group commit): one write and one fdatasync for every record staged
/// since the last, outside the lock, so that later requests are decided while a batch syncs. When no batch is
/// syncing, the submitting thread writes its own at once (a lone client pays no thread hand-off); one that finds
/// more records staged after its batch hands them to the syncer thread, which writes batches back to back while
/// there are any. Replies run only after their batch is durable. If a write fails, every batch not yet durable
/// is undone (the ledger and the policy go back to what the log holds) and each reply says `audit.unavailable`:
/// no signature leaves unrecorded.
public final class Engine: @unchecked Sendable {
    private let key: SigningKey
    /// The agent's address.
    public let address: Address
    private var policy: LoadedPolicy
    /// The policy in force as of the last durable record, restored when a batch fails.
    private var durablePolicy: LoadedPolicy
    private var state: LedgerState
    private let log: AuditLog
    private let reader = NitroRPCv0Reader()
    private let clock: @Sendable () -> UInt64
    private let checkpointEvery: UInt64
    private let startedAtMs: UInt64
    /// Where a clean stop writes the ledger snapshot (nil: none).
    private let snapshotPath: String?

    /// Guards everything above that changes, and the fields below.
    private let condition = NSCondition()
    /// What runs once the records staged so far are durable (success) or dropped (failure), in staging order.
    private var staged: [Completion] = []
    /// Whether the ledger has a batch open for the records staged so far.
    private var batchOpen = false
    /// Whether a batch is being written (by a submitting thread or the syncer).
    private var writing = false
    /// Whether the syncer is asked to write what is staged.
    private var syncerWanted = false
    private var stopping = false
    private var stopped = false

    private struct Completion {
        let durable: () -> Void
        let dropped: () -> Void
    }

    /// Takes ownership of the key; replays nothing itself (the caller passes the rebuilt `state`).
    public init(
        key: consuming SigningKey, policy: LoadedPolicy, state: LedgerState, log: AuditLog, checkpointEvery: UInt64,
        snapshotPath: String? = nil, clock: @escaping @Sendable () -> UInt64 = Engine.systemClock
    ) {
        self.snapshotPath = snapshotPath
        self.address = key.address
        self.key = key
        self.policy = policy
        self.durablePolicy = policy
        self.state = state
        self.log = log
        self.clock = clock
        self.checkpointEvery = max(checkpointEvery, 1)
        self.startedAtMs = clock()
    }

    /// Unix milliseconds from the system clock.
    public static let systemClock: @Sendable () -> UInt64 = {
        var spec = timespec()
        clock_gettime(CLOCK_REALTIME, &spec)
        return UInt64(spec.tv_sec) * 1000 + UInt64(spec.tv_nsec / 1_000_000)
    }

    /// Records the start (and the policy in force) durably, then starts the syncer thread.
    public func start(version: String) throws(AuditError) {
        let now = clock()
        condition.lock()
        defer { condition.unlock() }
        log.stage(event: "start", timeMs: now) { writer in
            writer.field("address", address.checksummed)
            writer.field("version", version)
            writer.field("policy_hash", policy.hash)
        }
        log.stage(event: "policy_loaded", timeMs: now) { writer in
            writer.field("policy_hash", policy.hash)
            if let path = policy.path { writer.field("path", path) }
        }
        try log.commit()
        // The thread ends when the engine stops; it holds the engine until then.
        let thread = Thread { [self] in runSyncer() }
        thread.name = "custodian-syncer"
        thread.start()
    }

    /// Decides a message and replies once the decision is durable; `reply` runs on the thread that wrote the
    /// batch (this one when no other batch was being written).
    ///
    /// The message is read (parsed, checked, hashed) before the lock is taken.
    public func sign(message: [UInt8], peer: Peer?, reply: @escaping @Sendable (SignOutcome) -> Void) {
        let parsed = reader.read(message)
        submit(orElse: { reply(.unavailable("the agent is stopping")) }) { now in
            let outcome = decide(message, parsed: parsed, peer: peer, now: now)
            return Completion(
                durable: { reply(outcome) },
                dropped: { reply(.unavailable("the decision could not be recorded")) })
        }
    }

    /// Replaces the policy (after SIGHUP), in order with the requests around it; a nil policy records the failure.
    public func reload(_ loaded: LoadedPolicy?, error: String?, reply: @escaping @Sendable (Bool) -> Void) {
        submit(orElse: { reply(false) }) { now in
            let old = policy.hash
            if let loaded {
                policy = loaded
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
        }
    }

    /// Records a lifecycle or security event (a refused caller, an operator action) in order with the decisions.
    public func record(event name: String, peer: Peer?, _ fields: @escaping @Sendable (inout JSONWriter) -> Void) {
        submit(orElse: {}) { now in
            log.stage(event: name, timeMs: now) { writer in
                writePeer(peer, &writer)
                writer.field("policy_hash", policy.hash)
                fields(&writer)
            }
            return nil
        }
    }

    /// Stages one job under the lock, then writes the batch here if no other write is under way.
    private func submit(orElse refuse: () -> Void, _ job: (UInt64) -> Completion?) {
        condition.lock()
        if stopping {
            condition.unlock()
            refuse()
            return
        }
        if !batchOpen {
            state.beginBatch()
            batchOpen = true
        }
        let now = clock()
        if let completion = job(now) { staged.append(completion) }
        if log.stagedSeq % checkpointEvery == 0 { stageCheckpoint(now: now) }
        guard !writing else {
            condition.unlock()
            return
        }
        writing = true
        let batch = takeBatch()
        condition.unlock()
        let completions = writeBatch(batch, handingOn: true)
        for completion in completions { completion() }
    }

    private struct Batch {
        var records: AuditBatch?
        var completions: [Completion]
        var policy: LoadedPolicy
    }

    /// Takes what is staged for one write. Under the lock.
    private func takeBatch() -> Batch {
        let batch = Batch(records: log.takeStaged(), completions: staged, policy: policy)
        staged = []
        batchOpen = false
        return batch
    }

    /// Writes a taken batch without the lock, then settles it under the lock. Returns the replies to run (after
    /// the lock is released). `handingOn`: a submitting thread, which passes any later records to the syncer and
    /// clears `writing` if there are none; the syncer keeps `writing` and loops itself.
    private func writeBatch(_ batch: Batch, handingOn: Bool) -> [() -> Void] {
        var failure: AuditError?
        if let records = batch.records {
            do { try log.write(records) } catch { failure = error }
        }
        condition.lock()
        defer { condition.unlock() }
        var replies: [() -> Void] = []
        if let failure {
            // Every batch not yet durable goes: the ledger and the policy must equal what the log holds.
            if let records = batch.records { log.finish(records, durable: false) }
            state.rollbackBatches()
            batchOpen = false
            policy = durablePolicy
            FileHandle.standardError.write(
                Data("custodian: error: \(failure); refusing until it is writable\n".utf8))
            replies = (batch.completions + staged).map(\.dropped)
            staged = []
        } else {
            if let records = batch.records { log.finish(records, durable: true) }
            if batch.records != nil { state.commitBatch() }
            durablePolicy = batch.policy
            replies = batch.completions.map(\.durable)
        }
        if handingOn {
            if log.stagedCount > 0 || !staged.isEmpty {
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

    /// Writes batches back to back while records are staged; idle otherwise.
    private func runSyncer() {
        condition.lock()
        while true {
            while !syncerWanted && !(stopping && !writing) { condition.wait() }
            if !syncerWanted { break }  // stopping, and nothing is being written
            syncerWanted = false
            while log.stagedCount > 0 || !staged.isEmpty {
                let batch = takeBatch()
                condition.unlock()
                let replies = writeBatch(batch, handingOn: false)
                for reply in replies { reply() }
                condition.lock()
            }
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

    /// Waits for the batches under way, writes a ledger snapshot, a checkpoint and a stop record, and stops the
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
        while writing { condition.wait() }
        // Anything staged while the last write ran (a submitter that found `writing` set) is written here.
        if log.stagedCount > 0 || !staged.isEmpty {
            writing = true
            let batch = takeBatch()
            condition.unlock()
            let replies = writeBatch(batch, handingOn: false)
            for reply in replies { reply() }
            condition.lock()
            writing = false
        }
        let now = clock()
        // The ledger as of this stop, so that the next start need not replay the whole log; the stop record
        // carries its hash, which binds the snapshot to the chain.
        var snapshotHash: String?
        if let snapshotPath {
            let snapshot = state.encodeSnapshot(seq: log.stagedSeq + 1)  // the stop record's seq
            do {
                try SecretFile.writeAtomically(snapshot, to: snapshotPath, replace: true)
                snapshotHash = SHA256.hex(snapshot)
            } catch {
                FileHandle.standardError.write(
                    Data("custodian: error: could not write \(snapshotPath): \(error)\n".utf8))
            }
        }
        log.stage(event: "stop", timeMs: now) { writer in
            writer.field("policy_hash", policy.hash)
            if let snapshotHash { writer.field("snapshot_sha256", snapshotHash) }
        }
        stageCheckpoint(now: now)
        do { try log.commit() } catch {
            FileHandle.standardError.write(Data("custodian: error: could not record the stop: \(error)\n".utf8))
        }
        stopped = true
        condition.broadcast()
    }

    /// Checks, signs and stages the record of one request; nothing is sent before the batch commits.
    private func decide(
        _ message: [UInt8], parsed: Result<SignableRequest, Denial>, peer: Peer?, now: UInt64
    ) -> SignOutcome {
        let request: SignableRequest
        switch parsed {
        case .failure(let denial):
            let seq = log.stage(event: "sign", timeMs: now) { writer in
                writePeer(peer, &writer)
                writer.field("policy_hash", policy.hash)
                writer.field("message_sha256", SHA256.hex(message))
                writer.field("message_bytes", message.count)
                writer.field("decision", "deny")
                writeDenial(denial, &writer)
            }
            return .refused(denial, auditSeq: seq)
        case .success(let parsed):
            request = parsed
        }
        let requestHash = Hex.encode(request.digest, prefixed: true)
        let sessionID: String =
            switch request.body {
            case .create(let definition, _, _): definition.appSessionID
            default: request.namedSessionID ?? ""
            }
        let decision = policy.policy.evaluate(request, state: state, agent: address, nowMs: now)
        let common: (inout JSONWriter) -> Void = { [policy] writer in
            writePeer(peer, &writer)
            writer.field("policy_hash", policy.hash)
            writer.field("method", request.body.method.rawValue)
            writer.field("app_session_id", sessionID)
            writer.field("request_hash", requestHash)
            writer.field("req", String(decoding: request.signedBytes, as: UTF8.self))
        }
        switch decision {
        case .deny(let denial):
            let seq = log.stage(event: "sign", timeMs: now) { writer in
                common(&writer)
                writer.field("decision", "deny")
                writeDenial(denial, &writer)
            }
            return .refused(denial, auditSeq: seq)
        case .allow(let effect):
            let signature: String
            do {
                signature = Hex.encode(try key.sign(digest: request.digest), prefixed: true)
            } catch {
                return .unavailable("signing failed: \(error)")
            }
            let seq = log.stage(event: "sign", timeMs: now) { writer in
                common(&writer)
                writer.field("decision", "allow")
                writer.field("signature", signature)
                // Warn mode: signed, and the refusal it would have been is on record.
                writeWarnings(effect.warnings, &writer)
            }
            state.apply(effect, atMs: now)
            let envelope = NitroRPCv0Reader.envelope(for: request, appending: signature)
            return .signed(signature: signature, envelope: envelope, requestHash: requestHash, auditSeq: seq)
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
