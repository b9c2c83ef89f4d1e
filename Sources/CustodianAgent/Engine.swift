import CustodianCore
import CustodianCrypto
import Foundation

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
///
/// The type is split by topic: deciding here; group commit in Engine+GroupCommit.swift; periodic snapshots in
/// Engine+Snapshots.swift; start and stop in Engine+Lifecycle.swift; the records' layout in AuditRecords.swift. All of
/// its mutable state is guarded by `condition`; only `AuditLog` touches the file.
public final class Engine: @unchecked Sendable {
    /// The engine's life: created → running (the start records durable) → stopping (refusing new work, draining)
    /// → stopped (the stop records written). Requests are taken while created or running (before `start`, only by
    /// tools and tests that drive the engine directly: the server accepts nothing until `start` returns).
    enum Lifecycle: Comparable {
        case created, running, stopping, stopped
    }

    let key: SigningKey
    /// The agent's address.
    public let address: Address
    var policy: LoadedPolicy
    /// The policy in force as of the last durable record, restored when a write fails.
    var durablePolicy: LoadedPolicy
    var state: LedgerState
    let log: AuditLog
    let reader = RequestReader()
    let clock: @Sendable () -> UInt64
    let checkpointEvery: UInt64
    /// When the log rolls over to a new segment by itself.
    let segmentLimits: SegmentLimits
    let startedAtMs: UInt64
    /// Where the ledger snapshot is written (nil: none): at a clean stop, and every `snapshotEvery` records.
    let snapshotPath: String?
    /// Records between periodic snapshots (0: only at a clean stop).
    let snapshotEvery: UInt64
    /// The agent's metrics (decisions, group commits, snapshots).
    public let metrics: AgentMetrics

    /// Guards everything above that changes, and the fields below.
    let condition = NSCondition()
    /// The next ticket to hand out, and the next to stage.
    var nextTicket: UInt64 = 0
    var nextToStage: UInt64 = 0
    /// Decided jobs waiting for their turn to stage (an earlier ticket is still signing).
    var parked: [UInt64: Entry] = [:]
    /// Bumped when a failed write undoes the pending decisions; a job decided before it is void.
    var epoch: UInt64 = 0
    /// The ledger position and the policy after the last staged job.
    var stagedMark: LedgerMark
    var stagedPolicy: LoadedPolicy
    /// What runs once the records staged so far are durable (or dropped), in staging order.
    var staged: [Completion] = []
    /// Whether a batch is being written (by a submitting thread or the syncer).
    var writing = false
    /// Whether the syncer is asked to write what is staged.
    var syncerWanted = false
    /// Where the engine is in its life (see ``Lifecycle``).
    var lifecycle = Lifecycle.created
    /// How long writes took lately (a moving average, in nanoseconds), and the cost of handing one off.
    var recentWriteNanos: UInt64 = 1_000_000
    static let handOffNanos: UInt64 = 50_000
    /// The seq the latest periodic snapshot was taken at, and the one waiting for the snapshot thread.
    var lastSnapshotSeq: UInt64 = 0
    var pendingSnapshot: (state: LedgerState, seq: UInt64, epoch: UInt64)?
    /// Whether the snapshot thread is encoding or writing one.
    var snapshotting = false
    /// The ledger database (nil: the ledger is the state directory's), and the jobs waiting for its thread.
    let database: LedgerLink?
    var jobs: [Job] = []
    /// Why the replies being dropped now were dropped, when the ledger database is the cause.
    let dropCause = DropCause()

    struct Completion {
        let durable: () -> Void
        let dropped: () -> Void
    }

    /// A decided job: stages its records (in ticket order) and returns what to run once they are durable.
    struct Entry {
        let stage: () -> Completion?
        let dropped: () -> Void
        let mark: LedgerMark
        let policy: LoadedPolicy
    }

    /// What deciding a job leaves to do.
    enum Plan {
        /// Records to stage as they are.
        case ready(stage: () -> Completion?, dropped: () -> Void)
        /// Digests to sign first (outside the lock), then records to stage with the signatures (in the same order).
        case sign(digests: [[UInt8]], stage: ([String]) -> () -> Completion?, dropped: () -> Void)
    }

    /// Takes ownership of the key; replays nothing itself (the caller passes the rebuilt `state`).
    public init(
        key: consuming SigningKey, policy: LoadedPolicy, state: LedgerState, log: AuditLog, checkpointEvery: UInt64,
        snapshotPath: String? = nil, snapshotEvery: UInt64 = 0, segmentLimits: SegmentLimits = SegmentLimits(),
        metrics: AgentMetrics = AgentMetrics(), database: LedgerLink? = nil,
        clock: @escaping @Sendable () -> UInt64 = Engine.systemClock
    ) {
        self.database = database
        self.metrics = metrics
        self.segmentLimits = segmentLimits
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
        if ChannelStateReader.isChannelFrame(message) {
            signChannel(message, peer: peer, deferWrite: deferWrite, reply: reply)
            return
        }
        let parsed = reader.read(message)
        let method = (try? parsed.get())?.method.rawValue ?? ""
        // The protocol of a message that could not be read is the one its shape names (read here, outside the lock).
        let shape: WireProtocol?
        switch parsed {
        case .success(let request): shape = request.wireProtocol
        case .failure: shape = RequestReader.protocolOf(message)
        }
        let counted = counting(method: method, wire: shape?.rawValue ?? "unknown", reply: reply)
        submit(deferWrite: deferWrite, orElse: { counted(.unavailable("the agent is stopping")) }) { [self] now in
            plan(message, parsed: parsed, shape: shape, peer: peer, now: now, reply: counted)
        }
    }

    /// `reply`, counting its outcome in the decision metrics first.
    func counting(method: String, wire: String, reply: @escaping @Sendable (SignOutcome) -> Void)
        -> @Sendable (SignOutcome) -> Void
    {
        let metrics = metrics
        let dropCause = dropCause
        return { outcome in
            var outcome = outcome
            if case .unavailable(_, .auditUnavailable) = outcome, let cause = dropCause.current {
                outcome = .unavailable(cause, reason: .ledgerUnavailable)
            }
            switch outcome {
            case .signed: metrics.decision(method: method, protocol: wire, outcome: "allow", reason: nil)
            case .refused(let denial, _):
                metrics.decision(method: method, protocol: wire, outcome: "deny", reason: denial.reason)
            case .unavailable(_, let reason):
                metrics.decision(method: method, protocol: wire, outcome: "unavailable", reason: reason)
            }
            reply(outcome)
        }
    }

    /// The ledger's gauges for the metrics: session counts, funding at risk and velocity use per asset.
    public func ledgerGauges() -> LedgerGauges {
        condition.lock()
        defer { condition.unlock() }
        let counts = state.counts
        let now = clock()
        var openFunding: [String: Double] = [:]
        for (asset, amount) in state.openFundingTotals { openFunding[asset.value] = Double("\(amount)") ?? 0 }
        var used: [String: Double] = [:]
        var caps: [String: Double] = [:]
        if let velocity = policy.policy.velocity {
            let window = velocity.windowSeconds.multipliedReportingOverflow(by: 1000)
            let since = window.overflow || window.partialValue > now ? 0 : now - window.partialValue
            for (asset, cap) in velocity.maxOwnLoss {
                used[asset.value] = Double("\(state.realizedLoss(asset: asset, sinceMs: since))") ?? 0
                caps[asset.value] = Double("\(cap)") ?? 0
            }
        }
        return LedgerGauges(
            openSessions: counts.open, closedSessions: counts.closed, auditSeq: log.seq, openFunding: openFunding,
            velocityUsed: used, velocityCap: caps)
    }

    /// Replaces the policy (after SIGHUP), in order with the requests around it; a nil policy records the failure.
    public func reload(_ loaded: LoadedPolicy?, error: String?, reply: @escaping @Sendable (Bool) -> Void) {
        submit(ledger: false, orElse: { reply(false) }) { [self] now in
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

    /// Seals the active log segment and begins the next (`custodian audit rotate`), in order with the decisions:
    /// a `rotate` record naming who asked, a checkpoint, then the next segment's `segment` record. `reply` gets the
    /// sealed file's name once all of it is durable (nil: not recorded).
    public func rotate(peer: Peer?, reply: @escaping @Sendable (String?) -> Void) {
        submit(ledger: false, orElse: { reply(nil) }) { [self] now in
            let policyHash = policy.hash
            return .ready(
                stage: { [self] in
                    log.stage(event: "rotate", timeMs: now) { writer in
                        writePeer(peer, &writer)
                        writer.field("policy_hash", policyHash)
                    }
                    let sealed = rollOver(now: now, reason: "operator")
                    return Completion(durable: { reply(sealed) }, dropped: { reply(nil) })
                },
                dropped: { reply(nil) })
        }
    }

    /// Ends the segment being staged into with a checkpoint and begins the next. Under the lock, while staging.
    /// Returns the sealed file's name (that of the rollover already staged, if one is).
    func rollOver(now: UInt64, reason: String) -> String? {
        if let pending = log.stagedRolloverName { return pending }
        stageCheckpoint(now: now)
        let sealed = log.stageRollover(timeMs: now, address: address, reason: reason)
        if sealed != nil { metrics.rollover(reason) }
        return sealed
    }

    /// Records a lifecycle or security event (a refused caller, an operator action) in order with the decisions.
    public func record(event name: String, peer: Peer?, _ fields: @escaping @Sendable (inout JSONWriter) -> Void) {
        submit(ledger: false, orElse: {}) { [self] now in
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
    /// order, then writes the batch here if no other write is under way. With a ledger database the job is queued
    /// for the ledger thread instead (``runLedger()``), which decides it while it holds the database's lock;
    /// `ledger` false: a job that records no decision (a reload, a rotation, a refused caller), written to the
    /// log alone.
    func submit(
        deferWrite: Bool = false, ledger: Bool = true, orElse refuse: @escaping () -> Void,
        _ decide: @escaping (UInt64) -> Plan
    ) {
        condition.lock()
        if lifecycle >= .stopping {
            condition.unlock()
            refuse()
            return
        }
        if database != nil {
            jobs.append(Job(ledger: ledger, decide: decide, refuse: refuse))
            condition.broadcast()
            condition.unlock()
            return
        }
        guard decideAndStage(decide) else { return }
        if deferWrite {
            condition.unlock()
            return
        }
        writeIfIdle()
    }

    /// With the lock held: decides a job with the next ticket, signs outside the lock if it asks, and stages what
    /// can be staged in ticket order. Returns true with the lock held; false with it released (the job was
    /// dropped: a write failed while it was signing, or signing failed).
    func decideAndStage(_ decide: (UInt64) -> Plan) -> Bool {
        let ticket = nextTicket
        nextTicket += 1
        switch decide(clock()) {
        case .ready(let stage, let dropped):
            parked[ticket] = Entry(stage: stage, dropped: dropped, mark: state.mark(), policy: policy)
        case .sign(let digests, let stage, let dropped):
            let mark = state.mark()
            let decidedPolicy = policy
            let decidedEpoch = epoch
            condition.unlock()
            var signatures: [String]? = []
            for digest in digests {
                guard let signature = try? key.sign(digest: digest) else {
                    signatures = nil
                    break
                }
                signatures?.append(Hex.encode(signature, prefixed: true))
            }
            condition.lock()
            guard epoch == decidedEpoch else {
                // A write failed meanwhile: this decision was undone with the rest.
                condition.unlock()
                dropped()
                return false
            }
            guard let signatures, signatures.count == digests.count else {
                // Cannot happen with a valid key and a 32-byte digest; if it does, nothing decided since the
                // last durable record can stand (later tickets were decided on this one's effect).
                let replies = failPending("signing failed")
                condition.unlock()
                dropped()
                for reply in replies { reply() }
                return false
            }
            parked[ticket] = Entry(
                stage: stage(signatures), dropped: dropped, mark: mark,
                policy: decidedPolicy)
        }
        stageParked()
        return true
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

    /// Checks a request and applies its effect to the ledger (under the lock); what is left is to sign (for an
    /// allowance) and to stage the record.
    func plan(
        _ message: [UInt8], parsed: Result<SignableRequest, Denial>, shape: WireProtocol?, peer: Peer?, now: UInt64,
        reply: @escaping @Sendable (SignOutcome) -> Void
    ) -> Plan {
        let dropped = { reply(.unavailable("the decision could not be recorded")) }
        let policyHash = policy.hash
        let request: SignableRequest
        switch parsed {
        case .failure(let denial):
            return refuseUnread(message, shape: shape, denial, peer: peer, now: now, reply: reply)
        case .success(let parsed):
            request = parsed
        }
        var decision = policy.policy.evaluate(request, state: state, agent: address, nowMs: now)
        // Under a [channels] policy a deposit frame's user_state (the commit that funds it) is signed with the
        // update, paired with it (PROTOCOL-v1-channels §7.7), or the whole deposit is refused.
        var commit: (message: [UInt8], effect: ChannelEffect?, channelID: String, decimals: UInt8)?
        if case .allow = decision, request.method == .v1SubmitDepositState, policy.policy.channels != nil,
            let refusal = request.userStateRefusal
        {
            decision = .deny(refusal)
        }
        if case .allow = decision, request.method == .v1SubmitDepositState, let channels = policy.policy.channels,
            let userState = request.userState
        {
            let entry = userState.homeChannelID.flatMap { state.channels.channels[$0] }
            switch state.channels.decideCommit(
                userState, update: request.body, session: request.namedSessionID.flatMap { state.session($0) },
                policy: channels, agent: address, nowMs: now, windowSeconds: channelWindowSeconds)
            {
            case .refuse(let denial): decision = .deny(denial)
            case .sign(let message, let effect):
                if let entry { commit = (message, effect, entry.copy.channelID, entry.copy.decimals) }
            case .retry(let message):
                if let entry { commit = (message, nil, entry.copy.channelID, entry.copy.decimals) }
            }
            if case .allow = decision, commit == nil {
                decision = .deny(Denial(.sessionUnknown, "custodian holds no home channel for the commit"))
            }
        }
        let common: (inout JSONWriter, _ refused: Bool) -> Void = { writer, refused in
            writePeer(peer, &writer)
            writer.field("policy_hash", policyHash)
            writer.field("method", request.method.rawValue)
            writer.field("protocol", request.wireProtocol.rawValue)
            let sessionID: String =
                switch request.body {
                case .create(let definition, _, _): definition.appSessionID
                default: request.namedSessionID ?? ""
                }
            writer.field("app_session_id", sessionID)
            writer.field("request_hash", Hex.encode(request.requestHash, prefixed: true))
            if !refused, let commit {
                // The commit's channel and decimals, right before req (see Engine+Channels.swift).
                writer.field("channel_id", commit.channelID)
                writer.field("decimals", Int(commit.decimals))
            }
            if refused && request.signedBytes.count > RefusalText.reqLimit {
                writer.field("req", utf8: RefusalText.prefix(request.signedBytes, RefusalText.reqLimit))
                writer.field("req_bytes", request.signedBytes.count)
            } else {
                writer.field("req", utf8: request.signedBytes)
            }
        }
        switch decision {
        case .deny(let denial):
            return .ready(
                stage: { [log] in
                    let seq = log.stage(event: "sign", timeMs: now) { writer in
                        common(&writer, true)
                        writer.field("decision", "deny")
                        writeDenial(denial, &writer)
                    }
                    return Completion(durable: { reply(.refused(denial, auditSeq: seq)) }, dropped: dropped)
                }, dropped: dropped)
        case .allow(let effect):
            state.apply(effect, atMs: now)
            if let channelEffect = commit?.effect { state.apply(channel: channelEffect) }
            let digests = [request.digest] + (commit.map { [ChannelState.eip191Digest($0.message)] } ?? [])
            return .sign(
                digests: digests,
                stage: { [log] signatures in
                    let signature = signatures.first ?? ""
                    let channelSignature = signatures.count > 1 ? signatures[1] : nil
                    return {
                        let seq = log.stage(event: "sign", timeMs: now) { writer in
                            common(&writer, false)
                            writer.field("decision", "allow")
                            writer.field("signature", signature)
                            if let commit, let channelSignature {
                                writer.field(
                                    "channel_request_hash", Hex.encode(Keccak256.hash(commit.message), prefixed: true))
                                writer.field("channel_signature", channelSignature)
                            }
                            // Warn mode: signed, and the refusal it would have been is on record.
                            writeWarnings(effect.warnings, &writer)
                        }
                        let frame = request.signedMessage(appending: signature)
                        let outcome: SignOutcome
                        if let commit, let channelSignature {
                            let userSig = Self.userSig(channelSignature)
                            outcome = .signed(
                                signature: channelSignature, quorumSig: request.quorumSignature(signature),
                                envelope: ChannelStateReader.filling(frame, key: "user_state", userSig: userSig)
                                    ?? frame,
                                requestHash: Hex.encode(Keccak256.hash(commit.message), prefixed: true),
                                auditSeq: seq, userSig: userSig,
                                appRequestHash: Hex.encode(request.requestHash, prefixed: true))
                        } else {
                            outcome = .signed(
                                signature: signature, quorumSig: request.quorumSignature(signature), envelope: frame,
                                requestHash: Hex.encode(request.requestHash, prefixed: true), auditSeq: seq)
                        }
                        return Completion(durable: { reply(outcome) }, dropped: dropped)
                    }
                }, dropped: dropped)
        }
    }

}

/// When the audit log rolls over to a new segment by itself (0: never by that measure).
public struct SegmentLimits: Sendable, Equatable {
    public var maxBytes: Int
    public var maxRecords: UInt64

    /// 256 MiB a segment by default (about 250,000 decisions); no record limit.
    public init(maxBytes: Int = 256 << 20, maxRecords: UInt64 = 0) {
        self.maxBytes = maxBytes
        self.maxRecords = maxRecords
    }

    /// Whether a segment of `bytes` bytes and `records` records is full.
    func full(bytes: Int, records: UInt64) -> Bool {
        (maxBytes > 0 && bytes >= maxBytes) || (maxRecords > 0 && records >= maxRecords)
    }
}
