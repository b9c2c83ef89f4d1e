import CustodianCore
import CustodianCrypto
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// The operator's commands on a ledger database: import a local ledger into it, export it, check logs against it.
extension StateDirectory {
    /// Imports an interchange file (nil: the state directory's own ledger, exported in memory) into the ledger
    /// database, as one transaction of this state directory's agent (which must be stopped): every session the
    /// database does not hold is added by an `operator` record (`action: ledger_import`) in its log and in the
    /// database; a session the database holds must be identical, or nothing is imported.
    public static func importLedger(_ stateDirectory: String, file: [UInt8]?, ledgerURL: String)
        throws(AgentStartError) -> ImportSummary
    {
        let lock = try operatorLock(stateDirectory)
        defer { withExtendedLifetime(lock) {} }
        let rebuilt = try readHistory(stateDirectory, fromSnapshots: false, databaseLedger: true)
        let bytes: [UInt8]
        // The state directory's home channels (and the key's outflows), imported beside its sessions: the
        // interchange format does not carry them, so they come from the state directory's own ledger only.
        var localChannels = ChannelLedger()
        if let file {
            bytes = file
        } else {
            guard let agent = rebuilt.verification.address ?? rebuilt.chain.agent else {
                throw AgentStartError("\(stateDirectory) holds no history of any agent: nothing to import", exitCode: 2)
            }
            localChannels = rebuilt.state.channels
            bytes = LedgerInterchange.encode(
                rebuilt.state, agent: agent, exportedAt: RFC3339.format(ms: Engine.systemClock()),
                auditSeq: UInt64(rebuilt.chain.count), auditHead: rebuilt.chain.head)
        }
        let document: LedgerInterchange.Document
        switch LedgerInterchange.decode(bytes) {
        case .success(let value): document = value
        case .failure(let error): throw AgentStartError("not a ledger interchange file: \(error)", exitCode: 2)
        }
        if let agent = rebuilt.verification.address ?? rebuilt.chain.agent, agent != document.agent {
            throw AgentStartError(
                "the file is the ledger of \(document.agent); \(stateDirectory) is the history of \(agent)",
                hint: "a ledger belongs to one key: import it through a state directory of the same key", exitCode: 2)
        }
        return try databaseTransaction(
            stateDirectory, chain: rebuilt.chain, address: document.agent, ledgerURL: ledgerURL, action: "imported"
        ) { state, log throws(AgentStartError) in
            var conflicts: [String] = []
            var added: [LedgerInterchange.Entry] = []
            for entry in document.entries {
                let id = entry.session.appSessionID
                guard let present = state.session(id) else {
                    added.append(entry)
                    continue
                }
                let presentLosses = state.losses.filter { $0.sessionID == id }
                if present != entry.session || presentLosses != entry.losses { conflicts.append(id) }
            }
            var addedChannels: [ChannelEntry] = []
            for (id, entry) in localChannels.channels.sorted(by: { $0.key < $1.key }) {
                guard let present = state.channels.channels[id] else {
                    addedChannels.append(entry)
                    continue
                }
                if present != entry { conflicts.append(id) }
            }
            guard conflicts.isEmpty else {
                throw AgentStartError(
                    "\(conflicts.count) session(s) or home channel(s) differ from what the ledger database holds for them: "
                        + conflicts.prefix(5).joined(separator: ", ") + (conflicts.count > 5 ? ", …" : "")
                        + "; nothing was imported",
                    hint: "a ledger import never overwrites a signed state", exitCode: 2)
            }
            let digest = SHA256.hex(bytes)
            let now = Engine.systemClock()
            for entry in added {
                log.stage(event: "operator", timeMs: now) { writer in
                    writePeer(.operatorProcess, &writer)
                    importFields(entry, document: document, digest: digest, &writer)
                }
            }
            // The key's outflows the database lacks ride with the first channel added (the window counts them).
            var outflows = Self.outflows(localChannels.outflows, notIn: state.channels.outflows)
            for entry in addedChannels {
                log.stage(event: "operator", timeMs: now) { writer in
                    writePeer(.operatorProcess, &writer)
                    writer.field("action", "ledger_import_channel")
                    writer.field("agent", document.agent.checksummed)
                    writer.field("source_audit_seq", document.auditSeq)
                    writer.field("source_audit_head", document.auditHead)
                    writer.field("channel_id", entry.copy.channelID)
                    writer.field("imported_channel", Hex.encode(LedgerState.encodeChannel(entry)))
                    writer.key("outflows")
                    writer.beginArray()
                    for outflow in outflows {
                        writer.beginObject()
                        writer.field("time_ms", outflow.timeMs)
                        writer.field("asset", outflow.asset)
                        writer.field("amount", "\(outflow.amount)")
                        writer.endObject()
                    }
                    writer.endArray()
                }
                outflows = []
            }
            return ImportSummary(
                added: added.count, alreadyPresent: document.entries.count - added.count,
                channelsAdded: addedChannels.count,
                channelsPresent: localChannels.channels.count - addedChannels.count)
        }
    }

    /// Releases the latest signed state of session `id` in the ledger database (``release(_:id:version:forgetSession:reason:)``
    /// for a pair of agents): one transaction of `stateDirectory`'s agent, which must be stopped; the other agents
    /// may run, and apply it with the next batch they decide. Returns the released state and the one restored.
    public static func release(
        _ stateDirectory: String, id: String, version: UInt64, forgetSession: Bool, reason: String, ledgerURL: String
    ) throws(AgentStartError) -> (SessionRecord, SessionRecord?) {
        let lock = try operatorLock(stateDirectory)
        defer { withExtendedLifetime(lock) {} }
        guard FileIO.exists(stateDirectory + "/" + LedgerAgentID.fileName) else {
            throw AgentStartError(
                "\(stateDirectory) is not the state directory of an agent on a ledger database (no "
                    + "\(LedgerAgentID.fileName))",
                hint: "give the state directory of one of the pair's agents (stopped)", exitCode: 2)
        }
        let rebuilt = try readHistory(stateDirectory, fromSnapshots: false, databaseLedger: true)
        guard let agent = rebuilt.verification.address ?? rebuilt.chain.agent else {
            throw AgentStartError("\(stateDirectory) holds no history of any agent", exitCode: 2)
        }
        let policyHash = lastPolicyHash(stateDirectory)
        return try databaseTransaction(
            stateDirectory, chain: rebuilt.chain, address: agent, ledgerURL: ledgerURL, action: "released",
            historyOf: id
        ) { state, log throws(AgentStartError) in
            let (session, restored) = try releasePlan(
                state, id: id, version: version, forgetSession: forgetSession, in: "the ledger database")
            log.stage(event: "operator", timeMs: Engine.systemClock()) { writer in
                writePeer(.operatorProcess, &writer)
                releaseFields(
                    session, restored: restored, id: id, version: version, reason: reason,
                    policyHash: policyHash, &writer)
            }
            return (session, restored)
        }
    }

    /// One operator transaction of `stateDirectory`'s agent (stopped) on the ledger database: under the database's
    /// lock, `body` gets the ledger the database holds (with the history of session `historyOf`) and stages the
    /// records to write in the agent's log; they are committed to the database, then written to the log. Nothing
    /// staged: nothing written. `action`: what the error messages say was done ("imported").
    static func databaseTransaction<T>(
        _ stateDirectory: String, chain: AuditChain, address: Address, ledgerURL: String, action: String,
        historyOf: String? = nil, _ body: (LedgerState, AuditLog) throws(AgentStartError) -> T
    ) throws(AgentStartError) -> T {
        let agentID = try LedgerAgentID.read(orCreateIn: stateDirectory)
        let database = LedgerDatabase(url: ledgerURL, agent: agentID, address: address)
        let log: AuditLog
        do {
            log = try AuditLog(
                path: stateDirectory + "/" + Segments.active, chain: chain, address: address,
                timeMs: Engine.systemClock())
        } catch { throw AgentStartError("\(error)") }
        do {
            let txn = try database.lock()
            guard try database.ownTransactions(after: log.seq).isEmpty else {
                throw AgentStartError(
                    "the ledger database holds records of this agent that its log lacks",
                    hint: "start the agent once (it writes them to its log first), stop it, then try again")
            }
            var state = LedgerState()
            state.historyOf = historyOf
            for transaction in try database.transactions(after: 0, before: txn) {
                if let error = Replay.applyDatabaseBatch(transaction.batch, to: &state, agent: address) {
                    throw AgentStartError(
                        "the ledger database's transaction \(transaction.txn) does not apply: \(error)")
                }
            }
            log.ledgerTxn = txn
            let result = try body(state, log)
            log.ledgerTxn = nil
            guard let batch = log.takeStaged() else {
                database.rollback()
                return result
            }
            try database.commit(
                txn: txn, firstSeq: batch.lastSeq - UInt64(batch.count) + 1, lastSeq: batch.lastSeq,
                batch: batch.bytes)
            do { try log.write(batch) } catch {
                log.finish(batch, durable: false)
                throw AgentStartError(
                    "\(action) in the ledger database, but the audit log could not take the records: \(error)",
                    hint: "the next start of the agent writes them to its log from the database")
            }
            log.finish(batch, durable: true)
            return result
        } catch let error as AgentStartError {
            database.rollback()
            throw error
        } catch {
            database.rollback()
            throw AgentStartError("\(error)", hint: "nothing was \(action)")
        }
    }

    /// The outflows of `local` that `present` does not hold (as many of each as `local` has more).
    static func outflows(_ local: [ChannelPolicy.Outflow], notIn present: [ChannelPolicy.Outflow])
        -> [ChannelPolicy.Outflow]
    {
        var held: [String: Int] = [:]
        func key(_ outflow: ChannelPolicy.Outflow) -> String { "\(outflow.timeMs) \(outflow.asset) \(outflow.amount)" }
        for outflow in present { held[key(outflow), default: 0] += 1 }
        return local.filter { outflow in
            let count = held[key(outflow)] ?? 0
            guard count > 0 else { return true }
            held[key(outflow)] = count - 1
            return false
        }
    }

    /// The interchange text of the ledger a database holds (every agent's decisions).
    public static func exportLedger(ledgerURL: String, address: Address?) throws(AgentStartError) -> [UInt8] {
        let ledger = try databaseLedger(ledgerURL: ledgerURL, address: address)
        guard ledger.state.channels.channels.isEmpty else {
            throw AgentStartError(
                "the ledger holds v1 home channels, which the interchange format does not carry", exitCode: 2)
        }
        return LedgerInterchange.encode(
            ledger.state, agent: ledger.agent, exportedAt: RFC3339.format(ms: Engine.systemClock()),
            auditSeq: UInt64(clamping: ledger.lastTxn), auditHead: ledger.lastHash)
    }

    /// The ledger a database holds (every agent's decisions), read only: the key it belongs to (which must be
    /// `address` when given), and its last transaction's number and the SHA-256 of its batch.
    public static func databaseLedger(ledgerURL: String, address: Address?) throws(AgentStartError) -> (
        agent: Address, state: LedgerState, lastTxn: Int64, lastHash: String
    ) {
        let client = PostgresClient(url: ledgerURL)
        do {
            try client.connect()
            let bound = try client.execute("SELECT address FROM custodian_ledger WHERE id = 1")
            guard let text = bound.values.first?.first ?? nil, let agent = Address(eip55: text) else {
                throw AgentStartError("the ledger database holds no ledger yet", exitCode: 2)
            }
            if let address, address != agent {
                throw AgentStartError(
                    "the ledger database holds the ledger of \(agent), not of \(address)", exitCode: 2)
            }
            client.disconnect()
            // Read only: no agent is registered.
            let database = LedgerDatabase(url: ledgerURL, agent: "", address: agent)
            try database.client.connect()
            var state = LedgerState()
            var last: (txn: Int64, hash: String) = (0, String(repeating: "0", count: 64))
            for transaction in try database.transactions(after: 0) {
                if let error = Replay.applyDatabaseBatch(transaction.batch, to: &state, agent: agent) {
                    throw AgentStartError(
                        "the ledger database's transaction \(transaction.txn) does not apply: \(error)")
                }
                last = (transaction.txn, SHA256.hex(transaction.batch))
            }
            return (agent, state, last.txn, last.hash)
        } catch let error as AgentStartError {
            throw error
        } catch {
            throw AgentStartError("\(error)")
        }
    }
}
