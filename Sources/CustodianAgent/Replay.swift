import CCustodianLinux
import CustodianCore
import CustodianCrypto
import Foundation

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
        ledger(LineSource(bytes: bytes), agent: agent, snapshots: snapshots)
    }

    /// Verifies the log `source` yields and rebuilds the ledger.
    ///
    /// With `snapshots` (ledger.snapshot files, written at a clean stop or periodically; the current one first), the
    /// ledger starts from the first one the verified chain vouches for (the stop record at its seq, or a later
    /// `snapshot` record naming its seq, carries its SHA-256) with no operator action after it, and only the records
    /// after its seq are replayed, in a second pass over that tail. Otherwise the whole log is replayed.
    /// `headAt`: a seq whose line hash the verification reports (an anchor's).
    public static func ledger(
        _ source: LineSource, agent: Address? = nil, snapshots: [[UInt8]], headAt: UInt64? = nil
    ) -> Result<Rebuilt, AuditError> {
        var candidates: [Candidate] = snapshots.compactMap { bytes in
            LedgerState.snapshotSeq(bytes).map { Candidate(bytes: bytes, seq: $0, hash: SHA256.hex(bytes)) }
        }
        // The newest snapshot decodes on another thread while the chain is verified.
        let decoded = Decoded()
        if let first = candidates.first {
            let thread = Thread { decoded.set(LedgerState.decodeSnapshot(first.bytes)?.state) }
            thread.name = "custodian-snapshot-decode"
            thread.start()
        }
        var state = LedgerState()
        var address = agent
        let reader = NitroRPCv0Reader()
        var input = source
        let verified = AuditVerifier.verify(&input, address: agent, headAt: headAt) { record in
            if candidates.isEmpty {
                guard wanted(record) else { return nil }
                switch record.parse() {
                case .success(let entry): return apply(entry, to: &state, address: &address, reader: reader)
                case .failure(let error): return error
                }
            }
            if record.event == "start", address == nil, case .success(let entry) = record.parse() {
                address = entry.string("address").flatMap(Address.init(eip55:))
            }
            for index in candidates.indices { candidates[index].observe(record) }
            return nil
        }
        let verification: AuditVerification
        switch verified {
        case .success(let value): verification = value
        case .failure(let error):
            if !candidates.isEmpty { _ = decoded.wait() }
            return .failure(error)
        }
        if candidates.isEmpty { return .success(Rebuilt(verification: verification, state: state)) }
        let firstDecoded = decoded.wait()
        for (index, candidate) in candidates.enumerated() where candidate.usable {
            guard var start = index == 0 ? firstDecoded : LedgerState.decodeSnapshot(candidate.bytes)?.state else {
                continue
            }
            var tail = source
            tail.from = candidate.tailOffset
            tail.upTo = verification.chain.validLength
            if let error = replayTail(&tail, into: &start, address: &address, reader: reader) {
                return .failure(error)
            }
            return .success(Rebuilt(verification: verification, state: start, snapshotSeq: candidate.seq))
        }
        // No snapshot the log vouches for: the whole log, once more.
        var whole = source
        whole.from = 0
        whole.upTo = verification.chain.validLength
        state = LedgerState()
        address = agent
        if let error = replayTail(&whole, into: &state, address: &address, reader: reader) { return .failure(error) }
        return .success(Rebuilt(verification: verification, state: state))
    }

    /// A snapshot file and what the log says of it.
    private struct Candidate {
        let bytes: [UInt8]
        let seq: UInt64
        let hash: String
        var vouched = false
        var operatorAfter = false
        /// Where the records after `seq` begin.
        var tailOffset = 0

        var usable: Bool { vouched && !operatorAfter && tailOffset > 0 }

        mutating func observe(_ record: RawRecord) {
            if record.seq == seq {
                tailOffset = record.end
                // Taken at a stop: that stop record vouches for it.
                if record.event == "stop", case .success(let entry) = record.parse(),
                    entry.string("snapshot_sha256") == hash
                {
                    vouched = true
                }
            } else if record.seq > seq {
                switch record.event {
                case "snapshot":
                    // Taken periodically: a later record vouches for it.
                    if case .success(let entry) = record.parse(), entry.integer("snapshot_seq") == seq,
                        entry.string("snapshot_sha256") == hash
                    {
                        vouched = true
                    }
                // A release needs the sessions' previous states, which snapshots do not keep.
                case "operator": operatorAfter = true
                default: break
                }
            }
        }
    }

    /// The records replay applies: start records (the agent), operator actions and allowances.
    private static func wanted(_ record: RawRecord) -> Bool {
        record.event == "start" || record.event == "operator"
            || (record.event == "sign" && RecordShape.contains(allowed, in: record.bytes))
    }

    /// Applies the records of an already verified stretch of the log.
    private static func replayTail(
        _ source: inout LineSource, into state: inout LedgerState, address: inout Address?, reader: NitroRPCv0Reader
    ) -> AuditError? {
        do {
            let outcome = try source.forEachLine { line, offset in
                guard let (seq, _, event) = RecordShape.fields(line) else {
                    return .broken(line: 0, why: "the log changed while it was read")
                }
                let record = RawRecord(line: Int(seq), seq: seq, event: event, bytes: line, offset: offset)
                guard wanted(record) else { return nil }
                switch record.parse() {
                case .success(let entry): return apply(entry, to: &state, address: &address, reader: reader)
                case .failure(let error): return error
                }
            }
            return outcome.error
        } catch {
            return .unavailable("\(error)")
        }
    }

    /// Applies one allowance, operator action or start record to the ledger.
    private static func apply(
        _ entry: AuditEntry, to state: inout LedgerState, address: inout Address?, reader: NitroRPCv0Reader
    ) -> AuditError? {
        switch entry.event {
        case "start":
            if address == nil { address = entry.string("address").flatMap(Address.init(eip55:)) }
            return nil
        case "operator":
            guard entry.string("action") == "session_release" else { return nil }
            guard let id = entry.string("app_session_id"), state.release(id) else {
                return .broken(line: entry.line, why: "a release of a session the ledger does not hold")
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
            guard case .success(let request) = reader.read(Array(req.utf8)) else {
                return .broken(line: entry.line, why: "an allowance whose req does not parse")
            }
            guard let effect = Policy.replay(request, state: state, agent: agent) else {
                return .broken(line: entry.line, why: "an allowance that does not apply to the ledger")
            }
            state.apply(effect, atMs: timeMs)
            return nil
        }
    }

    /// A value handed from the decoding thread.
    private final class Decoded: @unchecked Sendable {
        private let condition = NSCondition()
        private var done = false
        private var value: LedgerState?

        func set(_ state: LedgerState?) {
            condition.lock()
            value = state
            done = true
            condition.signal()
            condition.unlock()
        }

        func wait() -> LedgerState? {
            condition.lock()
            defer { condition.unlock() }
            while !done { condition.wait() }
            return value
        }
    }
}
