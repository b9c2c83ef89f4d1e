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
/// Requests are queued to one committer thread, which takes every queued request at once, decides each in order
/// against the state the previous ones left (check, sign and record with no other request in between), writes
/// all their records with one write and one fdatasync, and only then releases the replies. If the sync fails, the
/// batch's state changes are undone and every reply in it says `audit.unavailable`: no signature leaves unrecorded.
public final class Engine: @unchecked Sendable {
    private enum Job {
        case sign(
            message: [UInt8], parsed: Result<SignableRequest, Denial>, peer: Peer?,
            reply: @Sendable (SignOutcome) -> Void)
        case reload(LoadedPolicy?, error: String?, reply: @Sendable (Bool) -> Void)
        case event(name: String, peer: Peer?, fields: @Sendable (inout JSONWriter) -> Void)
    }

    private let key: SigningKey
    /// The agent's address.
    public let address: Address
    private var policy: LoadedPolicy
    private var state: LedgerState
    private let log: AuditLog
    private let reader = NitroRPCv0Reader()
    private let clock: @Sendable () -> UInt64
    private let checkpointEvery: UInt64
    private let startedAtMs: UInt64
    /// Where a clean stop writes the ledger snapshot (nil: none).
    private let snapshotPath: String?

    private let condition = NSCondition()
    private var queue: [Job] = []
    private var stopping = false
    private var stopped = false
    private var snapshot: StatusSnapshot
    private var thread: Thread?

    /// Takes ownership of the key; replays nothing itself (the caller passes the rebuilt `state`).
    public init(
        key: consuming SigningKey, policy: LoadedPolicy, state: LedgerState, log: AuditLog, checkpointEvery: UInt64,
        snapshotPath: String? = nil, clock: @escaping @Sendable () -> UInt64 = Engine.systemClock
    ) {
        self.snapshotPath = snapshotPath
        self.address = key.address
        self.key = key
        self.policy = policy
        self.state = state
        self.log = log
        self.clock = clock
        self.checkpointEvery = max(checkpointEvery, 1)
        let now = clock()
        self.startedAtMs = now
        let counts = state.counts
        self.snapshot = StatusSnapshot(
            address: address.checksummed, policyHash: policy.hash, auditSeq: log.seq, auditHead: log.head,
            openSessions: counts.open, closedSessions: counts.closed, startedAtMs: now)
    }

    /// Unix milliseconds from the system clock.
    public static let systemClock: @Sendable () -> UInt64 = {
        var spec = timespec()
        clock_gettime(CLOCK_REALTIME, &spec)
        return UInt64(spec.tv_sec) * 1000 + UInt64(spec.tv_nsec / 1_000_000)
    }

    /// Records the start (and the policy in force) durably, then starts the committer thread.
    public func start(version: String) throws(AuditError) {
        let now = clock()
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
        publishSnapshot()
        let thread = Thread { [self] in run() }
        thread.name = "custodian-committer"
        self.thread = thread
        thread.start()
    }

    /// Queues a message for signing; `reply` runs on the committer thread once the decision is durable.
    ///
    /// The message is read (parsed, checked, hashed) here, on the caller's thread, so that this work runs beside
    /// the committer's; only the decision, the signature and the record are serialized.
    public func sign(message: [UInt8], peer: Peer?, reply: @escaping @Sendable (SignOutcome) -> Void) {
        let parsed = reader.read(message)
        enqueue(.sign(message: message, parsed: parsed, peer: peer, reply: reply)) {
            reply(.unavailable("the agent is stopping"))
        }
    }

    /// Replaces the policy (after SIGHUP), in order with the requests around it; a nil policy records the failure.
    public func reload(_ loaded: LoadedPolicy?, error: String?, reply: @escaping @Sendable (Bool) -> Void) {
        enqueue(.reload(loaded, error: error, reply: reply)) { reply(false) }
    }

    /// Records a lifecycle or security event (a refused caller, an operator action) in order with the decisions.
    public func record(event name: String, peer: Peer?, _ fields: @escaping @Sendable (inout JSONWriter) -> Void) {
        enqueue(.event(name: name, peer: peer, fields: fields)) {}
    }

    private func enqueue(_ job: Job, orElse refuse: () -> Void) {
        condition.lock()
        if stopping {
            condition.unlock()
            refuse()
            return
        }
        queue.append(job)
        condition.signal()
        condition.unlock()
    }

    /// The latest committed status.
    public func status() -> StatusSnapshot {
        condition.lock()
        defer { condition.unlock() }
        return snapshot
    }

    /// Finishes the queued requests, writes a checkpoint and a stop record, and stops the committer.
    public func stop() {
        condition.lock()
        stopping = true
        condition.signal()
        while !stopped { condition.wait() }
        condition.unlock()
    }

    private func run() {
        while true {
            condition.lock()
            while queue.isEmpty && !stopping { condition.wait() }
            let batch = queue
            queue.removeAll(keepingCapacity: true)
            let finishing = stopping && batch.isEmpty
            condition.unlock()
            if finishing { break }
            process(batch)
        }
        let now = clock()
        // The ledger as of this stop, so that the next start need not replay the whole log; the stop record
        // carries its hash, which binds the snapshot to the chain.
        var snapshotHash: String?
        if let snapshotPath {
            let snapshot = state.encodeSnapshot(seq: log.seq + log.stagedCount + 1)  // the stop record's seq
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
        publishSnapshot()
        condition.lock()
        stopped = true
        condition.broadcast()
        condition.unlock()
    }

    /// Decides every job of a batch in order, commits once, then replies.
    private func process(_ batch: [Job]) {
        state.beginBatch()
        let policyBefore = policy
        var replies: [() -> Void] = []
        var failures: [() -> Void] = []
        for job in batch {
            let now = clock()
            switch job {
            case .sign(let message, let parsed, let peer, let reply):
                let outcome = decide(message, parsed: parsed, peer: peer, now: now)
                replies.append { reply(outcome) }
                failures.append { reply(.unavailable("the decision could not be recorded")) }
            case .reload(let loaded, let error, let reply):
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
                replies.append { reply(loaded != nil) }
                failures.append { reply(false) }
            case .event(let name, let peer, let fields):
                log.stage(event: name, timeMs: now) { writer in
                    writePeer(peer, &writer)
                    writer.field("policy_hash", policy.hash)
                    fields(&writer)
                }
            }
            if (log.seq + log.stagedCount) % checkpointEvery == 0 { stageCheckpoint(now: now) }
        }
        do {
            try log.commit()
        } catch {
            // Undo the batch: the ledger must equal what the (unchanged) log implies.
            state.rollbackBatch()
            policy = policyBefore
            FileHandle.standardError.write(Data("custodian: error: \(error); refusing until it is writable\n".utf8))
            for failure in failures { failure() }
            return
        }
        publishSnapshot()
        for reply in replies { reply() }
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

    private func publishSnapshot() {
        let counts = state.counts
        let next = StatusSnapshot(
            address: address.checksummed, policyHash: policy.hash, auditSeq: log.seq, auditHead: log.head,
            openSessions: counts.open, closedSessions: counts.closed, startedAtMs: startedAtMs)
        condition.lock()
        snapshot = next
        condition.unlock()
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
