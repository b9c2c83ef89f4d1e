import CustodianCore

/// Rebuilds the ledger from an audit log: every allowed signing decision is applied again, in order, with the
/// clock it was decided at, and every operator release. The state therefore always equals what the log implies.
public enum Replay {
    static let allowed = Array(#","decision":"allow","#.utf8)

    /// Reads and verifies `bytes` and replays it for `agent` (default: the agent named by the log's first start
    /// record). Only allowances and operator actions are parsed in full.
    public static func ledger(from bytes: [UInt8], agent: Address? = nil) -> Result<
        (AuditChain, LedgerState), AuditError
    > {
        var state = LedgerState()
        let reader = NitroRPCv0Reader()
        var address = agent
        let read = AuditChain.read(
            bytes,
            wants: { event, line in
                event == "operator" || event == "start"
                    || (event == "sign" && RecordShape.contains(allowed, in: line))
            },
            visit: { entry in
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
        return read.map { ($0, state) }
    }
}
