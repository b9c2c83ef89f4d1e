import CCustodianLinux
import CustodianCore
import CustodianCrypto
import Foundation

/// Everything `custodian serve` needs.
public struct AgentSettings: Sendable {
    public var server: ServerSettings
    public var keyFile: String
    public var policyFile: String
    public var stateDirectory: String
    public var passphraseFile: String?
    public var checkpointEvery: UInt64
    /// Records between ledger snapshots (0: only at a clean stop). Bounds what a start after a crash replays.
    public var snapshotEvery: UInt64
    /// When the audit log rolls over to a new segment by itself.
    public var segmentLimits: SegmentLimits
    /// The PostgreSQL ledger (a libpq URL; nil: the state directory's), and how long a call to it may take.
    public var ledgerURL: String?
    public var ledgerTimeoutMs: Int32

    public init(
        server: ServerSettings, keyFile: String, policyFile: String, stateDirectory: String, passphraseFile: String?,
        checkpointEvery: UInt64 = 1000, snapshotEvery: UInt64 = 100_000, segmentLimits: SegmentLimits = SegmentLimits(),
        ledgerURL: String? = nil, ledgerTimeoutMs: Int32 = 5000
    ) {
        self.ledgerURL = ledgerURL
        self.ledgerTimeoutMs = ledgerTimeoutMs
        self.segmentLimits = segmentLimits
        self.server = server
        self.keyFile = keyFile
        self.policyFile = policyFile
        self.stateDirectory = stateDirectory
        self.passphraseFile = passphraseFile
        self.checkpointEvery = checkpointEvery
        self.snapshotEvery = snapshotEvery
    }
}

/// An error that stops the agent from starting, with an exit code and an optional hint.
public struct AgentStartError: Error, CustomStringConvertible {
    public var description: String
    public var hint: String?
    public var exitCode: Int32

    public init(_ description: String, hint: String? = nil, exitCode: Int32 = 1) {
        self.description = description
        self.hint = hint
        self.exitCode = exitCode
    }
}

/// A running agent: the engine behind the socket server.
public final class RunningAgent: Sendable {
    public let engine: Engine
    public let server: Server
    let policyFile: String
    /// Held while the agent runs: no second agent, and no operator command, writes the same log.
    let lock: StateLock

    init(engine: Engine, server: Server, policyFile: String, lock: StateLock) {
        self.engine = engine
        self.server = server
        self.policyFile = policyFile
        self.lock = lock
    }

    /// Raises the soft open-file limit to the hard one; if `maxConnections` and the agent's own descriptors still do
    /// not fit, lowers `maxConnections` to what fits and says so (or refuses when not even a few connections fit).
    static func fitDescriptors(_ server: inout ServerSettings, log: (String) -> Void) throws(AgentStartError) {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return }
        if limit.rlim_cur < limit.rlim_max {
            var raised = limit
            raised.rlim_cur = limit.rlim_max
            if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &raised) == 0 { limit = raised }
        }
        let needed = UInt64(server.maxConnections) + UInt64(ServerSettings.reservedDescriptors)
        guard UInt64(limit.rlim_cur) < needed else { return }
        let fits = Int(limit.rlim_cur) - ServerSettings.reservedDescriptors
        guard fits >= 8 else {
            throw AgentStartError(
                "the open-file limit is \(limit.rlim_cur): too few descriptors to serve (the agent keeps "
                    + "\(ServerSettings.reservedDescriptors) for itself)",
                hint: "raise it (LimitNOFILE= in the systemd unit, ulimit -n in a shell) to at least "
                    + "\(needed)")
        }
        log(
            "the open-file limit (\(limit.rlim_cur)) fits \(fits) connections, not \(server.maxConnections): "
                + "max_connections lowered to \(fits); raise LimitNOFILE= (or ulimit -n) to \(needed) to serve more")
        server.maxConnections = fits
    }

    /// Starts the agent in the order that keeps the key safe: harden, load and check the policy, verify and replay
    /// the audit log, only then read the passphrase and unseal the key, then bind the socket.
    public static func start(
        _ settings: AgentSettings, passphrase: () throws -> SecureBytes, log: @escaping @Sendable (String) -> Void
    ) throws -> RunningAgent {
        let began = DispatchTime.now().uptimeNanoseconds
        do { try Hardening.applyBeforeKeyIsRead() } catch {
            throw AgentStartError("cannot harden the process: \(error)")
        }
        var settings = settings
        try fitDescriptors(&settings.server, log: log)
        let policy: LoadedPolicy
        do { policy = try PolicyFile.load(path: settings.policyFile) } catch {
            throw AgentStartError(
                "invalid policy \(settings.policyFile): \(error)", hint: "custodian policy check \(settings.policyFile)"
            )
        }
        do { try FileIO.ensurePrivateDirectory(settings.stateDirectory) } catch {
            throw AgentStartError("state directory: \(error)")
        }
        let lock: StateLock
        do { lock = try StateLock(stateDirectory: settings.stateDirectory) } catch {
            throw AgentStartError(
                "another custodian process is using \(settings.stateDirectory) (\(error))",
                hint: "one agent per state directory; stop the other agent or operator command first")
        }
        let logPath = settings.stateDirectory + "/audit.log"
        // Temporaries of an atomic replace that a crash interrupted.
        for name in FileIO.removeTemporaries(
            in: settings.stateDirectory, of: ["ledger.snapshot", "ledger.snapshot.prev", AuditAnchor.fileName])
        {
            log("removed \(name), left by an interrupted write")
        }
        // The next segment of a rollover cut short before it was renamed into place: never acknowledged.
        if unlink(logPath + ".next") == 0 { log("removed audit.log.next, left by an interrupted rollover") }
        let keyHeader: KeyFile.Header
        let keyBytes: [UInt8]
        do {
            keyBytes = try SecretFile.readKeyFile(settings.keyFile)
            keyHeader = try KeyFile.header(keyBytes)
        } catch { throw AgentStartError("key file \(settings.keyFile): \(error)") }
        // While the history is read, heaps grow in steps of 16 MiB instead of 128 KiB: the ledger of a long log is
        // built on threads whose malloc arenas would otherwise grow by one mprotect per 128 KiB (a few per cent of a
        // start's CPU). Back to the default after: the pad also keeps freed memory resident, which serving does not
        // need.
        _ = ccustodian_malloc_top_pad(16 << 20)
        let rebuilt: Replay.Rebuilt
        do {
            defer { _ = ccustodian_malloc_top_pad(128 << 10) }
            rebuilt = try StateDirectory.readHistory(
                settings.stateDirectory, databaseLedger: settings.ledgerURL != nil)
        }
        let chain = rebuilt.chain
        let state = rebuilt.state
        let rebuiltFrom =
            rebuilt.snapshotSeq.map { "the ledger from the snapshot at seq \($0) and the records after it" }
            ?? "the ledger from the whole log"
        if let logged = chain.agent, logged != keyHeader.address {
            throw AgentStartError(
                "the audit log in \(settings.stateDirectory) belongs to \(logged), not to this key (\(keyHeader.address))",
                hint: "use the state directory of this key, or a new one")
        }
        if chain.tornTail > 0 { log("cutting a torn last line of \(chain.tornTail) bytes from \(logPath)") }

        let key: SigningKey
        do {
            let secret = try passphrase()
            key = try KeyFile.open(keyBytes, passphrase: secret)
        } catch let error as KeyFileError {
            throw AgentStartError(
                "cannot open \(settings.keyFile): \(error)", exitCode: error == .wrongPassphrase ? 2 : 1)
        }

        let auditLog: AuditLog
        do {
            auditLog = try AuditLog(
                path: logPath, chain: chain, address: keyHeader.address, timeMs: Engine.systemClock())
        } catch { throw AgentStartError("\(error)") }
        // With a ledger database, the database is the ledger (the engine's starts empty and the first decision
        // applies the database's); the state directory's own history stays the evidence it is checked against.
        var link: LedgerLink?
        if let url = settings.ledgerURL {
            let agentID: String
            agentID = try LedgerAgentID.read(orCreateIn: settings.stateDirectory)
            link = LedgerLink(
                url: url, agent: agentID, address: keyHeader.address,
                evidence: LedgerAgentID.lastLedgerTxn(
                    in: chain.files.isEmpty ? [logPath] : chain.files.map(\.file.path)),
                local: state,
                timeoutMs: settings.ledgerTimeoutMs)
        }
        let engine = Engine(
            key: key, policy: policy, state: link == nil ? state : LedgerState(), log: auditLog,
            checkpointEvery: settings.checkpointEvery,
            snapshotPath: link == nil ? settings.stateDirectory + "/ledger.snapshot" : nil,
            snapshotEvery: link == nil ? settings.snapshotEvery : 0,
            segmentLimits: settings.segmentLimits, database: link)
        // Bound but not accepting: connections wait in the backlog until the start records are durable, so that no
        // decision can precede them in the log.
        let server: Server
        do { server = try Server.bind(settings: settings.server, engine: engine) } catch {
            throw AgentStartError("\(error)")
        }
        // A batch the database committed but a crash kept out of the log goes into the log before the start records.
        do { try engine.settleWithDatabase() } catch {
            server.stop()
            throw AgentStartError(
                "\(error)",
                hint: "the agent must settle with the ledger database before it starts (a crash may have left a "
                    + "decision there that its log lacks); it is retried at the next start")
        }
        #if DEBUG
            holdStartForTests(log: log)
        #endif
        do { try engine.start(version: RPC.version) } catch {
            server.stop()
            throw AgentStartError("cannot write to the audit log: \(error)")
        }
        engine.metrics.started(seconds: Double(DispatchTime.now().uptimeNanoseconds &- began) / 1e9)
        server.serve()
        // Serving: from here on the process never needs to run a program, trace one, or reach a network.
        do {
            try Hardening.applySyscallFilter(allowTCP: settings.ledgerURL.map(LedgerAgentID.mayUseTCP) ?? false)
        } catch {
            agentStop(server: server, engine: engine)
            throw AgentStartError("cannot install the system-call filter: \(error)")
        }
        let counts = state.counts
        if let link {
            log(
                "serving \(engine.address) on \(settings.server.socketPath); policy \(policy.hash.prefix(12)); "
                    + "ledger in PostgreSQL as agent \(link.agent); audit seq \(auditLog.seq)")
        } else {
            log(
                "serving \(engine.address) on \(settings.server.socketPath); policy \(policy.hash.prefix(12)); "
                    + "\(counts.open) open and \(counts.closed) closed sessions; audit seq \(auditLog.seq); "
                    + rebuiltFrom)
        }
        return RunningAgent(engine: engine, server: server, policyFile: settings.policyFile, lock: lock)
    }

    #if DEBUG
        /// A test seam (debug builds only): with CUSTODIAN_TEST_HOLD_START naming a file, the start waits before it
        /// records itself until that file is removed, so that a test can try to sign in that window.
        private static func holdStartForTests(log: @Sendable (String) -> Void) {
            guard let path = ProcessInfo.processInfo.environment["CUSTODIAN_TEST_HOLD_START"] else { return }
            log("holding the start until \(path) is removed (test seam)")
            while FileIO.exists(path) { usleep(10_000) }
        }
    #endif

    /// Re-reads the policy file: a valid one replaces the old atomically, an invalid one leaves it in force; both are
    /// audited.
    public func reloadPolicy(log: @escaping @Sendable (String) -> Void) {
        do {
            let loaded = try PolicyFile.load(path: policyFile)
            engine.reload(loaded, error: nil) { ok in
                log(ok ? "policy reloaded: \(loaded.hash.prefix(12))" : "policy reload not recorded")
            }
        } catch {
            log("policy reload failed, the old policy stays in force: \(error)")
            engine.reload(nil, error: "\(error)") { _ in }
        }
    }

    /// Stops serving, drains the queue, writes the stop and checkpoint records, removes the socket.
    public func stop() {
        agentStop(server: server, engine: engine)
    }
}

private func agentStop(server: Server, engine: Engine) {
    server.stop()
    engine.stop()
}
