import CustodianCore
import CustodianCrypto

/// Rebuilds the ledger from an audit log: every allowed signing decision is applied again, in order, with the
/// clock it was decided at, and every operator release. The state therefore always equals what the log implies.
public enum Replay {
    static let allowed = Array(#","decision":"allow","#.utf8)

    /// Reads and verifies `bytes` and replays it for `agent` (default: the agent named by the log's first start
    /// record). Only allowances and operator actions are parsed in full.
    ///
    /// With `snapshot` (the ledger.snapshot file written at a clean stop), the ledger starts from it and only the
    /// records after its stop record are replayed, provided that stop record, in the verified chain, carries the
    /// snapshot's SHA-256; otherwise the whole log is replayed. The whole chain is verified either way.
    public static func ledger(
        from bytes: [UInt8], agent: Address? = nil, snapshot: [UInt8]? = nil
    ) -> Result<(AuditChain, LedgerState), AuditError> {
        if let snapshot, let (restored, seq) = LedgerState.decodeSnapshot(snapshot) {
            switch replay(bytes, agent: agent, from: restored, after: seq, vouching: SHA256.hex(snapshot)) {
            case .success(let result): return .success(result)
            case .failure(.unavailable):
                break  // the chain does not vouch for this snapshot: replay everything
            case .failure(let error): return .failure(error)
            }
        }
        return replay(bytes, agent: agent, from: LedgerState(), after: 0, vouching: nil)
    }

    private static func replay(
        _ bytes: [UInt8], agent: Address?, from initial: LedgerState, after: UInt64, vouching hash: String?
    ) -> Result<(AuditChain, LedgerState), AuditError> {
        var state = initial
        var vouched = hash == nil
        let reader = NitroRPCv0Reader()
        var address = agent
        let read = AuditChain.read(
            bytes,
            wants: { seq, event, line in
                event == "start" || (hash != nil && seq == after)
                    || (seq > after
                        && (event == "operator" || (event == "sign" && RecordShape.contains(allowed, in: line))))
            },
            visit: { entry in
                if let hash, entry.seq == after, entry.event != "start" {
                    guard entry.event == "stop", entry.string("snapshot_sha256") == hash else {
                        return .unavailable("the log does not vouch for the snapshot")
                    }
                    vouched = true
                    return nil
                }
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
            })
        guard vouched else { return .failure(.unavailable("the snapshot's stop record is not in the log")) }
        return read.map { ($0, state) }
    }
}
