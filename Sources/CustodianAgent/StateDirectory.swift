import CustodianCore
import CustodianCrypto
import Foundation

/// A state directory's files (audit.log, audit.anchor, ledger.snapshot) as one history: read and verified the same
/// way by a start and by every operator command, and changed by operator commands only through the audit log, while
/// the directory's lock shows that no agent runs.
public enum StateDirectory {
    /// Verifies the state directory's log against the evidence beside it (anchor, snapshots) and rebuilds the
    /// ledger; refuses a history shorter or other than the evidence proves.
    /// `fromSnapshots` false: replay the whole log (a release needs the states before the latest, which snapshots do
    /// not keep).
    /// `databaseLedger`: the caller works with the state directory's ledger database (an agent started with
    /// `--ledger-url`, an import into the database, a report that reads the log alone). Otherwise a state directory
    /// whose agent keeps its ledger in PostgreSQL (`ledger.agent`) is refused: its log holds only its own part of
    /// that ledger, and a command that took it for the whole would judge, release or export on less than there is.
    public static func readHistory(
        _ stateDirectory: String, fromSnapshots: Bool = true, historyOf: String? = nil, databaseLedger: Bool = false
    ) throws(AgentStartError) -> Replay.Rebuilt {
        if !databaseLedger && FileIO.exists(stateDirectory + "/" + LedgerAgentID.fileName) {
            throw AgentStartError(
                "the agent of \(stateDirectory) keeps its ledger in PostgreSQL (\(LedgerAgentID.fileName)): its log holds "
                    + "only its own part of that ledger",
                hint:
                    "give --ledger-url (serve, ledger export, ledger import, session release), or use the database's tools"
            )
        }
        let logPath = stateDirectory + "/" + Segments.active
        let evidence: StateEvidence
        do { evidence = try StateEvidence.read(stateDirectory: stateDirectory) } catch {
            throw AgentStartError(
                "\(error)", hint: "restore the file from a backup, or remove it if it is not custodian's")
        }
        let restoreHint =
            "restore audit.log from a backup or put it back where it was; to start over deliberately, "
            + "custodian state reset --state-dir \(stateDirectory) --reason TEXT (audited)"
        var info = stat()
        let logExists = lstat(logPath, &info) == 0
        if logExists && info.st_mode & S_IFMT != S_IFREG {
            throw AgentStartError("\(logPath) is not a regular file (a symbolic link?)", hint: restoreHint)
        }
        let files: [Segments.File]
        do { files = try Segments.list(directory: stateDirectory) } catch {
            throw AgentStartError("\(error)", hint: "a sealed segment's name belongs to custodian's files alone")
        }
        let sealed = files.filter { $0.path != logPath }
        if !logExists && !sealed.isEmpty {
            throw AgentStartError(
                "\(logPath) is missing, but sealed segments up to \(sealed.last?.name ?? "") are there: the records "
                    + "after them would be forgotten",
                hint: restoreHint)
        }
        if (!logExists || info.st_size == 0) && sealed.isEmpty && !evidence.isEmpty {
            throw AgentStartError(
                "\(logPath) is \(logExists ? "empty" : "missing"), but \(evidence.summary): the sessions signed before "
                    + "would be forgotten",
                hint: restoreHint)
        }
        var snapshots: [Replay.SnapshotSource] = []
        if fromSnapshots {
            for snapshot in evidence.snapshots {
                snapshots.append(Replay.SnapshotSource.file(snapshot.path, seq: snapshot.seq))
            }
        }
        // With snapshots, the files from the one that holds the oldest snapshot's record on: the sealed segments
        // before it are not read (`audit verify` reads them).
        var startIndex = 0
        if let oldest = evidence.snapshots.map(\.seq).min(), fromSnapshots {
            for (index, file) in files.enumerated() {
                guard let first = file.first ?? Segments.firstSeq(of: file), first <= oldest else { break }
                startIndex = index
            }
        }
        var (rebuilt, partial) = try replay(
            files, from: startIndex, snapshots: snapshots, headAt: evidence.anchor?.seq, historyOf: historyOf,
            logPath: logPath)
        if rebuilt.snapshotSeq == nil && partial {
            // No snapshot the log vouches for: the whole log, from its first segment.
            rebuilt = try replay(
                files, from: 0, snapshots: [], headAt: evidence.anchor?.seq, historyOf: historyOf, logPath: logPath
            ).rebuilt
        }
        if let shortfall = evidence.shortfall(of: rebuilt.verification) {
            throw AgentStartError(shortfall, hint: restoreHint)
        }
        return rebuilt
    }

    /// Verifies and replays the log's files from `files[index]` on; `partial`: they are not the whole log (only a
    /// snapshot they vouch for gives the ledger).
    private static func replay(
        _ files: [Segments.File], from index: Int, snapshots: [Replay.SnapshotSource], headAt: UInt64?,
        historyOf: String?, logPath: String
    ) throws(AgentStartError) -> (rebuilt: Replay.Rebuilt, partial: Bool) {
        let chosen = Array(files[index...])
        var startsAfter: UInt64 = 0
        if let first = chosen.first, let seq = first.first ?? Segments.firstSeq(of: first), seq > 1 {
            guard !snapshots.isEmpty else {
                throw AgentStartError(
                    "the log's first file here, \(first.name), begins at record \(seq): the segments before it are not "
                        + "in the state directory, and this reads the whole history",
                    hint: "put the archived segments back beside audit.log (compressed with gzip is fine)")
            }
            startsAfter = seq - 1
        }
        let source = chosen.isEmpty ? LineSource(bytes: []) : LineSource(segments: chosen, startsAfterSeq: startsAfter)
        switch Replay.ledger(
            source, snapshots: snapshots, headAt: headAt, historyOf: historyOf, wholeLog: startsAfter == 0)
        {
        case .success(let value): return (value, startsAfter > 0)
        case .failure(.unavailable(let why)): throw AgentStartError("cannot read \(logPath): \(why)")
        case .failure(let error):
            throw AgentStartError(
                "\(error)",
                hint:
                    "custodian audit verify \((logPath as NSString).deletingLastPathComponent) names the same record; "
                    + "the agent will not sign on top of a log that does not verify")
        }
    }

    /// Releases the latest signed state of session `id`, which must be `version` (an operator action, audited): the
    /// session returns to the state signed before it, or, for its create, is forgotten (only with `forgetSession`).
    /// The record carries the state the session returns to, so that every replay returns it there exactly. Loss
    /// already committed stays committed (a released signature may still be used), and so do the velocity window's
    /// entries. Returns the released state and the one restored.
    public static func release(
        _ stateDirectory: String, id: String, version: UInt64, forgetSession: Bool, reason: String
    ) throws(AgentStartError) -> (SessionRecord, SessionRecord?) {
        let lock: StateLock
        do { lock = try StateLock(stateDirectory: stateDirectory) } catch {
            throw AgentStartError(
                "an agent is running on \(stateDirectory)",
                hint: "stop it first (SIGTERM, or systemctl stop custodian): operator actions are written while no "
                    + "agent writes")
        }
        defer { withExtendedLifetime(lock) {} }
        let rebuilt = try readHistory(stateDirectory, fromSnapshots: false, historyOf: id)
        let (session, restored) = try releasePlan(
            rebuilt.state, id: id, version: version, forgetSession: forgetSession, in: stateDirectory)
        let policyHash = lastPolicyHash(stateDirectory)
        try record(
            stateDirectory, chain: rebuilt.chain, address: rebuilt.verification.address, event: "operator"
        ) { writer in
            releaseFields(
                session, restored: restored, id: id, version: version, reason: reason, policyHash: policyHash, &writer)
        }
        return (session, restored)
    }

    /// What releasing version `version` of session `id` in `state` (rebuilt with its history) does: the state
    /// released and the one the session returns to (nil: forgotten); or why it may not be released. `place`: where
    /// the ledger is, for the messages.
    static func releasePlan(
        _ state: LedgerState, id: String, version: UInt64, forgetSession: Bool, in place: String
    ) throws(AgentStartError) -> (SessionRecord, SessionRecord?) {
        guard let session = state.session(id) else {
            throw AgentStartError("no session \(id) in \(place)", exitCode: 2)
        }
        guard version == session.version else {
            throw AgentStartError(
                "version \(version) is not the latest signed state of \(id) (that is version \(session.version)): only "
                    + "the latest state can be released, one at a time",
                exitCode: 2)
        }
        let restored = state.history.last.map { session.released(to: $0) }
        if restored != nil {
            guard !forgetSession else {
                throw AgentStartError(
                    "--forget-session releases a create; version \(version) of \(id) is not its create", exitCode: 2)
            }
        } else if !forgetSession {
            throw AgentStartError(
                "version \(version) is the create of \(id): releasing it forgets the session, and with it every check "
                    + "custodian makes for it (a create with other funding, a close it refused, could then be signed)",
                hint: "add --forget-session if ClearNode never created the session", exitCode: 2)
        }
        return (session, restored)
    }

    /// The policy hash the log's last `policy_loaded` or `policy_reloaded` record names ("" if none).
    static func lastPolicyHash(_ stateDirectory: String) -> String {
        var policyHash = ""
        var source = LineSource(segments: (try? Segments.list(directory: stateDirectory)) ?? [])
        _ = AuditChain.read(&source) { record in
            guard record.event == "policy_loaded" || record.event == "policy_reloaded",
                case .success(let entry) = record.parse()
            else { return nil }
            policyHash = entry.string("policy_hash") ?? policyHash
            return nil
        }
        return policyHash
    }

    /// The fields of the `operator` record of a release (`action: session_release`).
    static func releaseFields(
        _ session: SessionRecord, restored: SessionRecord?, id: String, version: UInt64, reason: String,
        policyHash: String, _ writer: inout JSONWriter
    ) {
        writer.field("policy_hash", policyHash)
        writer.field("action", "session_release")
        writer.field("protocol", session.definition.wire.rawValue)
        writer.field("app_session_id", id)
        writer.field("reason_text", reason)
        writer.field("state_version", version)
        writer.field("released_status", session.status.rawValue)
        writer.field("released_version", session.version)
        writer.field("restored_status", restored?.status.rawValue ?? "forgotten")
        if let restored {
            writer.field("restored_version", restored.version)
            writer.field("restored_state", Hex.encode(LedgerState.encodeRecord(restored)))
        }
    }

    /// Starts a new history in `stateDirectory` on purpose: the log, anchor and snapshots there are moved into a
    /// new folder `abandoned-<time>` beside them, and the new log's first record says what was abandoned and why.
    /// Every session signed before is forgotten: nothing stops a conflicting state from being signed for them.
    /// Returns the folder the old files were moved to.
    public static func reset(_ stateDirectory: String, reason: String) throws(AgentStartError) -> String {
        let lock: StateLock
        do { lock = try StateLock(stateDirectory: stateDirectory) } catch {
            throw AgentStartError("an agent is running on \(stateDirectory)", hint: "stop it first")
        }
        defer { withExtendedLifetime(lock) {} }
        let evidence: StateEvidence
        do { evidence = try StateEvidence.read(stateDirectory: stateDirectory) } catch {
            throw AgentStartError("\(error)")
        }
        // What the old log itself says of its length, as far as it reads (from its first file here).
        let files = (try? Segments.list(directory: stateDirectory)) ?? []
        var source = LineSource.log(files)
        var reader = ChainReader(startingAfter: source.startsAfterSeq)
        var lastHead = AuditChain.genesis
        if !files.isEmpty {
            _ = try? source.forEachLine { line, offset in
                guard case .success = reader.next(line, offset: offset) else { return .unavailable("") }
                return nil
            }
            lastHead = Hex.encode(reader.headBytes)
        }
        let now = Engine.systemClock()
        let folder = stateDirectory + "/abandoned-\(RFC3339.format(ms: now).replacingOccurrences(of: ":", with: ""))"
        guard mkdir(folder, 0o700) == 0 else {
            throw AgentStartError("cannot create \(folder): \(String(cString: strerror(errno)))")
        }
        var moved: [String] = []
        let names =
            files.map(\.name).filter { $0 != Segments.active } + [
                Segments.active, AuditAnchor.fileName, "ledger.snapshot", "ledger.snapshot.prev",
            ]
        for name in names where FileIO.exists(stateDirectory + "/" + name) {
            guard rename(stateDirectory + "/" + name, folder + "/" + name) == 0 else {
                throw AgentStartError("cannot move \(name) into \(folder): \(String(cString: strerror(errno)))")
            }
            moved.append(name)
        }
        try record(stateDirectory, chain: AuditChain(), event: "operator") { writer in
            writer.field("action", "history_reset")
            writer.field("reason_text", reason)
            writer.field("abandoned_to", folder)
            writer.field("abandoned_files", moved.joined(separator: ","))
            writer.field("abandoned_log_records", reader.count)
            writer.field("abandoned_log_head", lastHead)
            writer.field("abandoned_evidence_seq", evidence.provenSeq)
        }
        return folder
    }

    /// The ledger interchange text (``LedgerInterchange``) of the history in `stateDirectory`, as it stands after its
    /// last record. Reads only; an agent may be running (the export is then as of the record it read last).
    public static func exportLedger(_ stateDirectory: String) throws(AgentStartError) -> [UInt8] {
        let rebuilt = try readHistory(stateDirectory)
        guard let agent = rebuilt.verification.address ?? rebuilt.chain.agent else {
            throw AgentStartError("\(stateDirectory) holds no history of any agent: nothing to export", exitCode: 2)
        }
        // Fail closed: an import elsewhere without the channels would forget which (channel, version) pairs are spent.
        guard rebuilt.state.channels.channels.isEmpty else {
            throw AgentStartError(
                "\(stateDirectory) holds v1 home channels (\(rebuilt.state.channels.channels.count)), which the "
                    + "interchange format does not carry: a ledger imported without them could sign a second state at "
                    + "a spent (channel, version). Move the whole state directory instead.",
                exitCode: 2)
        }
        return LedgerInterchange.encode(
            rebuilt.state, agent: agent, exportedAt: RFC3339.format(ms: Engine.systemClock()),
            auditSeq: UInt64(rebuilt.chain.count), auditHead: rebuilt.chain.head)
    }

    /// What an import did: the sessions added, and those already present with the same content.
    public struct ImportSummary: Sendable {
        public var added: Int
        public var alreadyPresent: Int
        /// v1 home channels (an import of a state directory's own ledger into a ledger database).
        public var channelsAdded = 0
        public var channelsPresent = 0
    }

    /// Imports an interchange file into the history in `stateDirectory` (with the agent stopped): every session it
    /// holds that the ledger does not is added, by one audited `operator` record each (`action: ledger_import`,
    /// carrying the session's state and loss events, so that every replay adds it the same way); a session the
    /// ledger already holds must be identical. Refuses, writing nothing, when the file is another agent's, or any
    /// session conflicts (another state, another version, other loss events). A second import of the same file adds
    /// nothing.
    public static func importLedger(_ stateDirectory: String, file bytes: [UInt8]) throws(AgentStartError)
        -> ImportSummary
    {
        let document: LedgerInterchange.Document
        switch LedgerInterchange.decode(bytes) {
        case .success(let value): document = value
        case .failure(let error): throw AgentStartError("not a ledger interchange file: \(error)", exitCode: 2)
        }
        let lock = try operatorLock(stateDirectory)
        defer { withExtendedLifetime(lock) {} }
        let rebuilt = try readHistory(stateDirectory, fromSnapshots: false)
        if let agent = rebuilt.verification.address ?? rebuilt.chain.agent, agent != document.agent {
            throw AgentStartError(
                "the file is the ledger of \(document.agent); \(stateDirectory) is the history of \(agent)",
                hint: "a ledger belongs to one key: import it into a state directory of the same key", exitCode: 2)
        }
        var conflicts: [String] = []
        var added: [LedgerInterchange.Entry] = []
        for entry in document.entries {
            let id = entry.session.appSessionID
            guard let present = rebuilt.state.session(id) else {
                added.append(entry)
                continue
            }
            let presentLosses = rebuilt.state.losses.filter { $0.sessionID == id }
            if present != entry.session || presentLosses != entry.losses { conflicts.append(id) }
        }
        guard conflicts.isEmpty else {
            throw AgentStartError(
                "\(conflicts.count) session(s) of the file differ from what \(stateDirectory) holds for them: "
                    + conflicts.prefix(5).joined(separator: ", ") + (conflicts.count > 5 ? ", …" : "")
                    + "; nothing was imported",
                hint: "a ledger import never overwrites a signed state", exitCode: 2)
        }
        let digest = SHA256.hex(bytes)
        try records(
            stateDirectory, chain: rebuilt.chain, address: rebuilt.verification.address ?? document.agent,
            count: added.count
        ) { index, writer in
            importFields(added[index], document: document, digest: digest, &writer)
        }
        return ImportSummary(added: added.count, alreadyPresent: document.entries.count - added.count)
    }

    /// The state directory's lock, for an operator command that writes to its log (no agent may run).
    static func operatorLock(_ stateDirectory: String) throws(AgentStartError) -> StateLock {
        do { return try StateLock(stateDirectory: stateDirectory) } catch {
            throw AgentStartError(
                "an agent is running on \(stateDirectory)",
                hint: "stop it first: operator actions are written while no agent writes")
        }
    }

    /// The fields of the `operator` record that imports `entry` (`action: ledger_import`).
    static func importFields(
        _ entry: LedgerInterchange.Entry, document: LedgerInterchange.Document, digest: String,
        _ writer: inout JSONWriter
    ) {
        writer.field("action", "ledger_import")
        writer.field("protocol", entry.session.definition.wire.rawValue)
        writer.field("agent", document.agent.checksummed)
        writer.field("source_sha256", digest)
        writer.field("source_audit_seq", document.auditSeq)
        writer.field("source_audit_head", document.auditHead)
        writer.field("app_session_id", entry.session.appSessionID)
        writer.field("imported_state", Hex.encode(LedgerState.encodeRecord(entry.session)))
        LedgerInterchange.writeLosses(entry.losses, &writer)
    }

    /// Appends `count` records of `event` (each with the operator's uid, gid and pid) to the log, durably, in one
    /// write.
    private static func records(
        _ stateDirectory: String, chain: AuditChain, address: Address? = nil, event: String = "operator", count: Int,
        _ fields: (Int, inout JSONWriter) -> Void
    ) throws(AgentStartError) {
        guard count > 0 else { return }
        let log: AuditLog
        do {
            log = try AuditLog(
                path: stateDirectory + "/" + Segments.active, chain: chain, address: address,
                timeMs: Engine.systemClock())
        } catch {
            throw AgentStartError("\(error)")
        }
        let now = Engine.systemClock()
        for index in 0..<count {
            log.stage(event: event, timeMs: now) { writer in
                writePeer(.operatorProcess, &writer)
                fields(index, &writer)
            }
        }
        do { try log.commit() } catch { throw AgentStartError("\(error)") }
    }

    /// Appends one operator record (with the operator's uid, gid and pid) to the log, durably.
    private static func record(
        _ stateDirectory: String, chain: AuditChain, address: Address? = nil, event: String,
        _ fields: (inout JSONWriter) -> Void
    ) throws(AgentStartError) {
        try records(stateDirectory, chain: chain, address: address, event: event, count: 1) { _, writer in
            fields(&writer)
        }
    }
}
