import CCustodianLinux
import CustodianCore
import CustodianCrypto
import Foundation

/// Rebuilds the ledger from an audit log: every allowed signing decision is applied again, in order, with the
/// clock it was decided at, and every operator release. The state therefore always equals what the log implies.
public enum Replay {
    static let allowed = Array(#","decision":"allow","#.utf8)

    /// Reads and verifies `bytes` and replays it for `agent` (default: the agent named by the log's first start
    /// record). Only allowances and operator actions are parsed in full.
    ///
    /// With `snapshot` (a ledger.snapshot file, written at a clean stop or periodically), the ledger starts from it
    /// and only the records after the seq it was taken at are replayed, provided the verified chain vouches for it:
    /// the stop record at that seq, or a later `snapshot` record naming that seq, carries the snapshot's SHA-256.
    /// Otherwise the whole log is replayed. The whole chain is verified either way.
    public static func ledger(
        from bytes: [UInt8], agent: Address? = nil, snapshot: [UInt8]? = nil
    ) -> Result<(AuditChain, LedgerState), AuditError> {
        ledger(from: bytes, agent: agent, snapshots: snapshot.map { [$0] } ?? []).map { ($0.chain, $0.state) }
    }

    /// What a replay rebuilt, and from where.
    public struct Rebuilt {
        public var chain: AuditChain
        public var state: LedgerState
        /// The seq of the snapshot it started from (nil: the whole log was replayed).
        public var snapshotSeq: UInt64?
    }

    /// Like ``ledger(from:agent:snapshot:)``, trying each snapshot in turn (the current file, then the previous).
    public static func ledger(
        from bytes: [UInt8], agent: Address? = nil, snapshots: [[UInt8]]
    ) -> Result<Rebuilt, AuditError> {
        for snapshot in snapshots {
            guard let seq = LedgerState.snapshotSeq(snapshot) else { continue }
            // A full pass costs seconds on a large log: try only a snapshot whose hash the log mentions at all (a
            // quick search; the pass itself decides whether a record in the verified chain vouches for it).
            guard mentions(bytes, Array(SHA256.hex(snapshot).utf8)) else { continue }
            switch replay(bytes, agent: agent, snapshot: snapshot, seq: seq) {
            case .success(let (chain, state)): return .success(Rebuilt(chain: chain, state: state, snapshotSeq: seq))
            case .failure(.unavailable):
                continue  // the log does not vouch for this snapshot, or an operator changed the ledger since
            case .failure(let error): return .failure(error)
            }
        }
        var state = LedgerState()
        var address = agent
        let reader = NitroRPCv0Reader()
        let read = AuditChain.read(
            bytes,
            wants: { _, event, line in
                event == "start" || event == "operator" || (event == "sign" && RecordShape.contains(allowed, in: line))
            },
            visit: { apply($0, to: &state, address: &address, reader: reader) })
        return read.map { Rebuilt(chain: $0, state: state, snapshotSeq: nil) }
    }

    /// Starts from the snapshot taken at record `seq`: its decoding runs on another thread while this one verifies
    /// the chain; the records after `seq` are kept and applied once both are done.
    private static func replay(_ bytes: [UInt8], agent: Address?, snapshot: [UInt8], seq: UInt64)
        -> Result<(AuditChain, LedgerState), AuditError>
    {
        let hash = SHA256.hex(snapshot)
        let decoded = Decoded()
        let thread = Thread { decoded.set(LedgerState.decodeSnapshot(snapshot)?.state) }
        thread.start()
        var vouched = false
        var tail: [AuditEntry] = []
        var address = agent
        let read = AuditChain.read(
            bytes,
            wants: { recordSeq, event, line in
                event == "start" || recordSeq == seq
                    || (recordSeq > seq
                        && (event == "operator" || event == "snapshot"
                            || (event == "sign" && RecordShape.contains(allowed, in: line))))
            },
            visit: { entry in
                if entry.event == "start", address == nil {
                    address = entry.string("address").flatMap(Address.init(eip55:))
                }
                if entry.seq == seq {
                    // Taken at a stop: that stop record vouches for it. Taken periodically: a later record does.
                    if entry.event == "stop", entry.string("snapshot_sha256") == hash { vouched = true }
                } else if entry.seq > seq && entry.event == "snapshot" {
                    if entry.integer("snapshot_seq") == seq, entry.string("snapshot_sha256") == hash { vouched = true }
                } else if entry.seq > seq && entry.event != "start" {
                    // A release needs the sessions' previous states, which snapshots do not keep.
                    if entry.event == "operator" { return .unavailable("an operator action after the snapshot") }
                    tail.append(entry)
                }
                return nil
            })
        guard var state = decoded.wait() else { return .failure(.unavailable("the snapshot does not decode")) }
        let chain: AuditChain
        switch read {
        case .success(let value): chain = value
        case .failure(let error): return .failure(error)
        }
        guard vouched else { return .failure(.unavailable("the snapshot's stop record is not in the log")) }
        let reader = NitroRPCv0Reader()
        for entry in tail {
            if let error = apply(entry, to: &state, address: &address, reader: reader) { return .failure(error) }
        }
        return .success((chain, state))
    }

    /// Whether `needle` occurs anywhere in `bytes` (memmem).
    static func mentions(_ bytes: [UInt8], _ needle: [UInt8]) -> Bool {
        bytes.withUnsafeBytes { haystack in
            needle.withUnsafeBytes { pattern in
                guard let base = haystack.baseAddress, let target = pattern.baseAddress else { return false }
                return ccustodian_contains(base, haystack.count, target, pattern.count) != 0
            }
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
