import CustodianCore

/// Rebuilds the ledger from a verified audit log: every allowed signing decision is applied again, in order, with
/// the clock it was decided at. The state therefore always equals what the log implies.
public enum Replay {
    /// The ledger implied by `chain` for the agent `address`.
    public static func ledger(from chain: AuditChain, agent address: Address) -> Result<LedgerState, AuditError> {
        var state = LedgerState()
        let reader = NitroRPCv0Reader()
        for entry in chain.entries {
            if entry.event == "operator", entry.string("action") == "session_release" {
                guard let id = entry.string("app_session_id"), state.release(id) else {
                    return .failure(.broken(line: entry.line, why: "a release of a session the ledger does not hold"))
                }
                continue
            }
            guard entry.event == "sign", entry.string("decision") == "allow" else { continue }
            guard let req = entry.string("req"), let timeMs = entry.integer("time_ms") else {
                return .failure(.broken(line: entry.line, why: "an allowance without req or time_ms"))
            }
            guard case .success(let request) = reader.read(Array(req.utf8)) else {
                return .failure(.broken(line: entry.line, why: "an allowance whose req does not parse"))
            }
            guard let effect = Policy.replay(request, state: state, agent: address) else {
                return .failure(.broken(line: entry.line, why: "an allowance that does not apply to the ledger"))
            }
            state.apply(effect, atMs: timeMs)
        }
        return .success(state)
    }

    /// The agent address named by the log's most recent start record.
    public static func agentAddress(in chain: AuditChain) -> Address? {
        chain.entries.last(where: { $0.event == "start" }).flatMap { $0.string("address") }.flatMap {
            Address(eip55: $0)
        }
    }
}
