import CustodianCore
import CustodianCrypto
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Rebuilds the ledger from an audit log: every allowed signing decision is applied again, in order, with the
/// clock it was decided at, and every operator release. The state therefore always equals what the log implies.
///
/// The log is verified in full (``AuditVerifier``) in the same pass, streamed: memory does not grow with its size.
public enum Replay {
    static let allowed = Array(#","decision":"allow","#.utf8)

    /// What a replay rebuilt, and from where.
    public struct Rebuilt {
        public var chain: AuditChain { verification.chain }
        public var verification: AuditVerification
        public var state: LedgerState
        /// The seq of the snapshot it started from (nil: the whole log was replayed).
        public var snapshotSeq: UInt64?
    }

    /// Reads and verifies `bytes` and replays it for `agent` (default: the agent named by the log's first start
    /// record), from `snapshot` where the log vouches for it.
    public static func ledger(
        from bytes: [UInt8], agent: Address? = nil, snapshot: [UInt8]? = nil
    ) -> Result<(AuditChain, LedgerState), AuditError> {
        ledger(from: bytes, agent: agent, snapshots: snapshot.map { [$0] } ?? []).map { ($0.chain, $0.state) }
    }

    /// Like ``ledger(_:agent:snapshots:headAt:)`` over bytes in memory.
    public static func ledger(
        from bytes: [UInt8], agent: Address? = nil, snapshots: [[UInt8]]
    ) -> Result<Rebuilt, AuditError> {
        ledger(LineSource(bytes: bytes), agent: agent, snapshots: snapshots.map(SnapshotSource.init(bytes:)))
    }

    /// A snapshot file to try: the seq its header names, and how to read it in pieces (only when it is tried).
    public struct SnapshotSource: Sendable {
        public var seq: UInt64?
        /// Opens the snapshot: a function that hands its bytes in pieces, nil at the end (nil: it cannot be read).
        public var open: @Sendable () -> (() -> [UInt8]?)?

        public init(seq: UInt64?, open: @escaping @Sendable () -> (() -> [UInt8]?)?) {
            self.seq = seq
            self.open = open
        }

        public init(bytes: [UInt8]) {
            self.init(seq: LedgerState.snapshotSeq(bytes)) {
                var given = false
                return {
                    guard !given else { return nil }
                    given = true
                    return bytes
                }
            }
        }

        /// The snapshot file at `path`, read 1 MiB at a time without following a symbolic link: a start never
        /// holds the whole file in memory beside the ledger it decodes.
        public static func file(_ path: String, seq: UInt64) -> SnapshotSource {
            SnapshotSource(seq: seq) {
                let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
                guard fd >= 0 else { return nil }
                let file = ChunkedFile(fd: fd)
                return { file.next() }
            }
        }
    }

    /// A file read in chunks, closed at its end (or when dropped).
    private final class ChunkedFile {
        private var fd: Int32

        init(fd: Int32) { self.fd = fd }

        deinit { if fd >= 0 { close(fd) } }

        func next() -> [UInt8]? {
            guard fd >= 0 else { return nil }
            var chunk = [UInt8](repeating: 0, count: 1 << 20)
            var count = 0
            repeat {
                count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            } while count < 0 && errno == EINTR
            guard count > 0 else {
                close(fd)
                fd = -1
                return nil
            }
            chunk.removeLast(chunk.count - count)
            return chunk
        }
    }

    /// A snapshot read, hashed and decoded in one pass (nil state: it does not decode).
    private static func open(_ source: SnapshotSource) -> (hash: String, state: LedgerState?)? {
        guard let next = source.open() else { return nil }
        let hasher = SHA256.Stream()
        let decoded = LedgerState.decodeSnapshot(chunks: {
            guard let chunk = next() else { return nil }
            hasher.update(chunk)
            return chunk
        })
        return (hasher.finish(), decoded?.state)
    }

    /// Verifies the log `source` yields and rebuilds the ledger.
    ///
    /// With `snapshots` (ledger.snapshot files, written at a clean stop or periodically; the current one first), the
    /// ledger starts from the first one the verified chain vouches for (the stop record at its seq, or a later
    /// `snapshot` record naming its seq, carries its SHA-256) with no operator action after it, and only the records
    /// after its seq are replayed, in a second pass over that tail. Otherwise the whole log is replayed.
    /// `headAt`: a seq whose line hash the verification reports (an anchor's).
    /// `wholeLog` false: `source` begins in the middle of the log (the segment of the oldest snapshot on), so only a
    /// snapshot can give the ledger: without a usable one the records are verified, not replayed (a replay from
    /// there would miss every session begun before), and the result has an empty ledger and no `snapshotSeq`: the
    /// caller replays the whole log instead.
    public static func ledger(
        _ source: LineSource, agent: Address? = nil, snapshots: [SnapshotSource], headAt: UInt64? = nil,
        historyOf: String? = nil, wholeLog: Bool = true
    ) -> Result<Rebuilt, AuditError> {
        var candidates: [Candidate] = snapshots.compactMap { snapshot in
            snapshot.seq.map { Candidate(source: snapshot, seq: $0) }
        }
        // The newest snapshot is read, hashed and decoded on another thread while the chain is verified, and the
        // records after its seq are replayed onto it there at once (found by their seqs, read and chained on their
        // own): speculatively, since it counts only if the log vouches for the snapshot and the verification read
        // the same records (the same start, end, count and head). The other snapshots are read only if it cannot
        // be used.
        let decoded = Decoded()
        if let first = candidates.first {
            let thread = Thread {
                guard var opened = open(first.source) else { return decoded.set(nil) }
                // Moved out (not shared with `opened`), so that the tail changes the ledger in place.
                guard var state = opened.state else { return decoded.set(Opened(hash: opened.hash)) }
                opened.state = nil
                let tail = SpeculativeTail.replay(source, after: first.seq, onto: &state, agent: agent)
                decoded.set(Opened(hash: opened.hash, state: state, tail: tail))
            }
            thread.name = "custodian-snapshot-decode"
            thread.start()
        }
        var state = LedgerState()
        state.historyOf = historyOf
        var address = agent
        let reader = RequestReader()
        var scratch: [UInt8] = []
        var input = source
        let verified = AuditVerifier.verify(&input, address: agent, headAt: headAt) { record in
            if candidates.isEmpty {
                guard wholeLog, wanted(record) else { return nil }
                return apply(record, to: &state, address: &address, reader: reader, scratch: &scratch)
            }
            if record.event == "start" || record.event == "segment", address == nil,
                case .success(let entry) = record.parse()
            {
                address = entry.string("address").flatMap(Address.init(eip55:))
            }
            for index in candidates.indices { candidates[index].observe(record) }
            return nil
        }
        var opened = candidates.isEmpty ? nil : decoded.take()
        let verification: AuditVerification
        switch verified {
        case .success(let value): verification = value
        case .failure(let error): return .failure(error)
        }
        if candidates.isEmpty { return .success(Rebuilt(verification: verification, state: state)) }
        if let first = candidates.first, first.usable, let speculated = opened, let replayed = speculated.state,
            first.vouchedHashes.contains(speculated.hash),
            speculated.tail?.read(verification, after: first.tailOffset) == true
        {
            return .success(Rebuilt(verification: verification, state: replayed, snapshotSeq: first.seq))
        }
        // The newest snapshot's hash is known; its ledger has moved on with the speculative tail, so it is decoded
        // again if it is used after all (a tail that did not apply, which the replay below reports).
        let newestHash = opened?.hash
        opened = nil
        for (index, candidate) in candidates.enumerated() where candidate.usable {
            if index == 0, let newestHash, !candidate.vouchedHashes.contains(newestHash) { continue }
            guard let reopened = open(candidate.source), candidate.vouchedHashes.contains(reopened.hash),
                var start = reopened.state
            else { continue }
            var tail = source
            tail.from = candidate.tailOffset
            tail.upTo = verification.chain.validLength
            if let error = replayTail(&tail, into: &start, address: &address, reader: reader) {
                return .failure(verification.locate(error))
            }
            return .success(Rebuilt(verification: verification, state: start, snapshotSeq: candidate.seq))
        }
        // No snapshot the log vouches for: the whole log, once more (if `source` is the whole log).
        guard wholeLog else { return .success(Rebuilt(verification: verification, state: LedgerState())) }
        var whole = source
        whole.from = 0
        whole.upTo = verification.chain.validLength
        state = LedgerState()
        state.historyOf = historyOf
        address = agent
        if let error = replayTail(&whole, into: &state, address: &address, reader: reader) {
            return .failure(verification.locate(error))
        }
        return .success(Rebuilt(verification: verification, state: state))
    }

    /// A snapshot file and what the log says of it.
    private struct Candidate {
        let source: SnapshotSource
        let seq: UInt64
        /// The SHA-256s the log vouches for at `seq`: the stop record at that seq, or a later `snapshot` record
        /// naming it, carries them.
        var vouchedHashes: Set<String> = []
        var operatorAfter = false
        /// Where the records after `seq` begin.
        var tailOffset = 0

        var usable: Bool { !vouchedHashes.isEmpty && !operatorAfter && tailOffset > 0 }

        mutating func observe(_ record: RawRecord) {
            if record.seq == seq {
                tailOffset = record.end
                if record.event == "stop", case .success(let entry) = record.parse(),
                    let hash = entry.string("snapshot_sha256")
                {
                    vouchedHashes.insert(hash)
                }
            } else if record.seq > seq {
                switch record.event {
                case "snapshot":
                    if case .success(let entry) = record.parse(), entry.integer("snapshot_seq") == seq,
                        let hash = entry.string("snapshot_sha256")
                    {
                        vouchedHashes.insert(hash)
                    }
                // A release needs the sessions' previous states, which snapshots do not keep.
                case "operator": operatorAfter = true
                default: break
                }
            }
        }
    }

    /// The records replay applies: start records (the agent), operator actions and allowances. Not a decision made
    /// in a ledger database transaction (`ledger_txn`): the database is that ledger (``LedgerDatabase``), and this
    /// log holds only this agent's part of it.
    private static func wanted(_ record: RawRecord) -> Bool {
        if record.event == "start" || record.event == "segment" { return true }
        guard record.event == "operator" || record.event == "observe" || record.event == "sign" else { return false }
        if isLedgerDatabaseRecord(record.bytes) { return false }
        return record.event != "sign" || RecordShape.contains(allowed, in: record.bytes)
    }

    static let ledgerTxnKey = Array(#","ledger_txn":"#.utf8)

    /// Whether a record was written in a ledger database transaction (`ledger_txn`, the member before `prev`).
    public static func isLedgerDatabaseRecord(_ line: ArraySlice<UInt8>) -> Bool {
        RecordShape.contains(ledgerTxnKey, in: line.suffix(ledgerTxnKey.count + 20 + 8 + 66))
    }

    /// Applies the records of a batch the ledger database holds (whole lines, each ending in a newline) to `state`,
    /// as replay applies a log's: the allowances, observations and operator actions, for `agent`.
    public static func applyDatabaseBatch(_ bytes: [UInt8], to state: inout LedgerState, agent: Address)
        -> AuditError?
    {
        let reader = RequestReader()
        var scratch: [UInt8] = []
        var address: Address? = agent
        var start = 0
        while start < bytes.count {
            guard let end = bytes[start...].firstIndex(of: 0x0A),
                let (seq, _, event) = RecordShape.fields(
                    bytes[start..<end])
            else { return .broken(line: 0, why: "a ledger database batch that does not read as records") }
            let record = RawRecord(line: Int(seq), seq: seq, event: event, bytes: bytes[start..<end], offset: start)
            start = end + 1
            guard
                event == "operator" || event == "observe"
                    || (event == "sign" && RecordShape.contains(allowed, in: record.bytes))
            else { continue }
            if let error = apply(record, to: &state, address: &address, reader: reader, scratch: &scratch) {
                return error
            }
        }
        return nil
    }

    /// Applies the records of an already verified stretch of the log.
    private static func replayTail(
        _ source: inout LineSource, into state: inout LedgerState, address: inout Address?, reader: RequestReader
    ) -> AuditError? {
        var scratch: [UInt8] = []
        do {
            let outcome = try source.forEachLine { line, offset in
                guard let (seq, _, event) = RecordShape.fields(line) else {
                    return .broken(line: 0, why: "the log changed while it was read")
                }
                let record = RawRecord(line: Int(seq), seq: seq, event: event, bytes: line, offset: offset)
                guard wanted(record) else { return nil }
                return apply(record, to: &state, address: &address, reader: reader, scratch: &scratch)
            }
            return outcome.error
        } catch {
            return .unavailable("\(error)")
        }
    }

    /// Applies one record; an allowance is read in place where custodian wrote it (no full parse of the line).
    private static func apply(
        _ record: RawRecord, to state: inout LedgerState, address: inout Address?, reader: RequestReader,
        scratch: inout [UInt8]
    ) -> AuditError? {
        if record.event == "sign", let agent = address, let timeMs = RecordShape.allowance(record.bytes, req: &scratch)
        {
            return applyAllowance(scratch, timeMs: timeMs, line: record.line, to: &state, agent: agent, reader: reader)
        }
        switch record.parse() {
        case .success(let entry): return apply(entry, to: &state, address: &address, reader: reader)
        case .failure(let error): return error
        }
    }

    private static func applyAllowance(
        _ req: [UInt8], timeMs: UInt64, line: Int, to state: inout LedgerState, agent: Address,
        reader: RequestReader
    ) -> AuditError? {
        guard case .success(let request) = reader.read(req) else {
            return .broken(line: line, why: "an allowance whose req does not parse")
        }
        guard let effect = Policy.replay(request, state: state, agent: agent) else {
            return .broken(line: line, why: "an allowance that does not apply to the ledger")
        }
        state.apply(effect, atMs: timeMs)
        return nil
    }

    /// Applies one allowance, operator action or start record to the ledger.
    private static func apply(
        _ entry: AuditEntry, to state: inout LedgerState, address: inout Address?, reader: RequestReader
    ) -> AuditError? {
        switch entry.event {
        case "start", "segment":
            // A segment record names the agent too: a log read from a sealed segment on has no start record before.
            if address == nil { address = entry.string("address").flatMap(Address.init(eip55:)) }
            return nil
        case "operator" where entry.string("action") == "ledger_import":
            // A session added by `custodian ledger import`, with its state and loss events written in the record.
            guard let id = entry.string("app_session_id"), let hex = entry.string("imported_state"),
                let bytes = Hex.decode(hex), let record = LedgerState.decodeRecord(bytes), record.appSessionID == id,
                let losses = entry.members.member("losses")?.value.elements
            else {
                return .broken(line: entry.line, why: "a ledger import whose imported_state does not decode")
            }
            if let agent = address, entry.string("agent") != agent.checksummed {
                return .broken(line: entry.line, why: "a ledger import of another agent's ledger")
            }
            guard state.session(id) == nil else {
                return .broken(line: entry.line, why: "a ledger import of a session the ledger already holds")
            }
            var events: [LossEvent] = []
            for loss in losses {
                guard let fields = loss.value.members, let time = fields.member("time_ms")?.value.numberToken,
                    let timeMs = UInt64(time), let asset = fields.member("asset")?.value.string,
                    let text = fields.member("amount")?.value.string, let amount = Amount(text),
                    let versionToken = fields.member("version")?.value.numberToken, let version = UInt64(versionToken)
                else { return .broken(line: entry.line, why: "a ledger import whose losses do not read") }
                events.append(
                    LossEvent(
                        timeMs: timeMs, asset: ExactString(asset), amount: amount, sessionID: id, version: version))
            }
            state.adopt(record, losses: events)
            return nil
        case "operator" where entry.string("action") == "ledger_import_channel":
            return applyChannelImport(entry, to: &state, address: address)
        case "observe":
            return applyObservation(entry, to: &state)
        case "operator" where entry.string("action") == "channel_resume" && entry.string("decision") != "deny":
            guard let id = entry.string("channel_id"), var channel = state.channels.channels[id], channel.halted != nil
            else {
                return .broken(line: entry.line, why: "a resume of a channel that had not stopped")
            }
            channel.halted = nil
            state.accept(channel: channel)
            return nil
        case "operator":
            guard entry.string("action") == "session_release" else { return nil }
            guard let id = entry.string("app_session_id"), state.session(id) != nil else {
                return .broken(line: entry.line, why: "a release of a session the ledger does not hold")
            }
            if let hex = entry.string("restored_state") {
                // The state the release returns the session to, written in the record.
                guard let bytes = Hex.decode(hex), let record = LedgerState.decodeRecord(bytes),
                    record.appSessionID == id
                else {
                    return .broken(line: entry.line, why: "a release whose restored_state does not decode")
                }
                state.restore(id, to: record)
            } else if entry.integer("state_version") != nil {
                guard entry.string("restored_status") == "forgotten" else {
                    return .broken(line: entry.line, why: "a release with neither restored_state nor forgotten")
                }
                state.restore(id, to: nil)
            } else {
                _ = state.release(id)  // as custodian recorded a release before it recorded the state
            }
            return nil
        default:
            guard entry.string("decision") == "allow" else { return nil }
            guard let agent = address else {
                return .broken(line: entry.line, why: "a decision before any start record names the agent")
            }
            guard let req = entry.string("req"), let timeMs = entry.integer("time_ms") else {
                return .broken(line: entry.line, why: "an allowance without req or time_ms")
            }
            if entry.members.member("channel_id") != nil {
                return applyChannelAllowance(
                    entry, req: Array(req.utf8), timeMs: timeMs, to: &state, agent: agent, reader: reader)
            }
            return applyAllowance(
                Array(req.utf8), timeMs: timeMs, line: entry.line, to: &state, agent: agent, reader: reader)
        }
    }

    /// A home channel added by `custodian ledger import --ledger-url`, with its entry and the key's outflows the
    /// database lacked written in the record.
    private static func applyChannelImport(_ entry: AuditEntry, to state: inout LedgerState, address: Address?)
        -> AuditError?
    {
        guard let id = entry.string("channel_id"), let hex = entry.string("imported_channel"),
            let bytes = Hex.decode(hex), let channel = LedgerState.decodeChannel(bytes), channel.copy.channelID == id,
            let list = entry.members.member("outflows")?.value.elements
        else {
            return .broken(line: entry.line, why: "a ledger import whose imported_channel does not decode")
        }
        if let agent = address, entry.string("agent") != agent.checksummed {
            return .broken(line: entry.line, why: "a ledger import of another agent's ledger")
        }
        guard state.channels.channels[id] == nil else {
            return .broken(line: entry.line, why: "a ledger import of a channel the ledger already holds")
        }
        var outflows: [ChannelPolicy.Outflow] = []
        for item in list {
            guard let fields = item.value.members, let time = fields.member("time_ms")?.value.numberToken,
                let timeMs = UInt64(time), let asset = fields.member("asset")?.value.string,
                let text = fields.member("amount")?.value.string, let amount = Amount(text)
            else { return .broken(line: entry.line, why: "a ledger import whose outflows do not read") }
            outflows.append(ChannelPolicy.Outflow(timeMs: timeMs, asset: asset, amount: amount))
        }
        state.adopt(channel: channel, outflows: outflows)
        return nil
    }

    /// An allowance that carries a channel state: a channel frame, or an app deposit with the commit that funds it.
    /// The state follows the channel as custodian held it (the policy judged it when it was signed).
    private static func applyChannelAllowance(
        _ entry: AuditEntry, req: [UInt8], timeMs: UInt64, to state: inout LedgerState, agent: Address,
        reader: RequestReader
    ) -> AuditError? {
        guard let token = entry.members.member("decimals")?.value.numberToken, let decimals = UInt8(token) else {
            return .broken(line: entry.line, why: "a channel allowance without decimals")
        }
        let sent: ChannelStateWire
        var creation = false
        if ChannelStateReader.isChannelFrame(req) {
            guard case .success(let read) = ChannelStateReader().read(req) else {
                return .broken(line: entry.line, why: "a channel allowance whose req does not read")
            }
            switch read.frame {
            case .submitState(let state): sent = state
            case .requestCreation(let state, _):
                sent = state
                creation = true
            case .submitSessionKeyState:
                return .broken(line: entry.line, why: "a channel session key allowed")
            }
        } else {
            if let error = applyAllowance(
                req, timeMs: timeMs, line: entry.line, to: &state, agent: agent, reader: reader)
            {
                return error
            }
            guard case .success(let request) = reader.read(req), let commit = request.userState else {
                return .broken(line: entry.line, why: "a deposit allowance without its commit")
            }
            sent = commit
        }
        guard let effect = state.channels.replaySigned(sent, decimals: decimals, creation: creation, nowMs: timeMs)
        else {
            return .broken(
                line: entry.line, why: "a channel state that does not follow the channel as custodian held it")
        }
        state.apply(channel: effect)
        return nil
    }

    /// An observation of the node's answer: a co-signed state or a node-issued base taken, or a channel stopped.
    private static func applyObservation(_ entry: AuditEntry, to state: inout LedgerState) -> AuditError? {
        guard let id = entry.string("channel_id"), let channel = state.channels.channels[id] else {
            // A refusal of a channel custodian does not hold changes nothing.
            return entry.string("decision") == "accept"
                ? .broken(line: entry.line, why: "an observation taken for a channel custodian does not hold") : nil
        }
        if let halted = entry.string("halted") {
            var stopped = channel
            stopped.halted = halted
            state.accept(channel: stopped)
            return nil
        }
        guard entry.string("decision") == "accept", let kind = entry.string("observed"), kind != "known" else {
            return nil
        }
        guard let token = entry.members.member("decimals")?.value.numberToken, let decimals = UInt8(token),
            let req = entry.string("req"), case .success(let observed) = Engine.readObserved(Array(req.utf8)),
            let taken = state.channels.replayObserved(observed, decimals: decimals, kind: kind)
        else {
            return .broken(line: entry.line, why: "an observation taken whose state does not read or apply")
        }
        state.accept(channel: taken)
        return nil
    }

    /// A snapshot as the decode thread leaves it: its hash, its ledger (nil: it does not decode) with the
    /// speculative tail applied, and that tail (nil: it did not apply).
    struct Opened {
        var hash: String
        var state: LedgerState?
        var tail: SpeculativeTail?
    }

    /// The records after a snapshot's seq, replayed onto its ledger while the log is still being verified.
    struct SpeculativeTail {
        /// Where the first record after the snapshot's begins, where the last complete line ends, the SHA-256 of
        /// that line, and the count of records.
        var start: Int
        var validLength: Int
        var head: [UInt8]
        var count: Int

        /// Replays the records after `seq` onto `state` (nil: they could not be found, read or applied, or an
        /// operator action is among them).
        static func replay(_ source: LineSource, after seq: UInt64, onto state: inout LedgerState, agent: Address?)
            -> SpeculativeTail?
        {
            guard let start = source.offset(afterSeq: seq) else { return nil }
            var address = agent
            if address == nil {
                // The agent is named by the log's first record, its start record.
                var first = source
                first.from = 0
                _ = try? first.forEachLine { line, _ in
                    if let (_, _, event) = RecordShape.fields(line), event == "start" || event == "segment",
                        case .success(let entry) = RawRecord(line: 1, seq: 1, event: event, bytes: line, offset: 0)
                            .parse()
                    {
                        address = entry.string("address").flatMap(Address.init(eip55:))
                    }
                    return .unavailable("only the first line")
                }
            }
            guard address != nil, seq < UInt64(Int.max) else { return nil }
            var chain = ChainReader(continuingAfter: Int(seq))
            var tail = source
            tail.from = start
            tail.upTo = nil
            let reader = RequestReader()
            var scratch: [UInt8] = []
            let outcome = try? tail.forEachLine { line, offset in
                switch chain.next(line, offset: offset) {
                case .failure(let error): return error
                case .success(let record):
                    // A release needs the sessions' previous states, which snapshots do not keep.
                    if record.event == "operator" { return .unavailable("an operator action") }
                    guard wanted(record) else { return nil }
                    return apply(record, to: &state, address: &address, reader: reader, scratch: &scratch)
                }
            }
            guard let outcome, outcome.error == nil else { return nil }
            return SpeculativeTail(
                start: start, validLength: outcome.validLength, head: chain.headBytes, count: chain.count)
        }

        /// Whether these are the records `verification` verified after the offset `tailOffset`: the same start, and
        /// a chain that ends at the same length, count and head (each line's prev names the line before, so the same
        /// head means the same lines).
        func read(_ verification: AuditVerification, after tailOffset: Int) -> Bool {
            start == tailOffset && validLength == verification.chain.validLength
                && count == verification.chain.count && Hex.encode(head) == verification.chain.head
        }
    }

    /// A value handed from the decoding thread.
    private final class Decoded: @unchecked Sendable {
        private let condition = NSCondition()
        private var done = false
        private var value: Opened?

        func set(_ opened: Opened?) {
            condition.lock()
            value = opened
            done = true
            condition.signal()
            condition.unlock()
        }

        /// Waits for the value and takes it (later calls get nil): the ledger is handed over, not shared.
        func take() -> Opened? {
            condition.lock()
            defer { condition.unlock() }
            while !done { condition.wait() }
            let taken = value
            value = nil
            return taken
        }
    }
}
