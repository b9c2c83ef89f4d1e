import ArgumentParser
import CustodianAgent
import CustodianCrypto
import Dispatch
import Foundation

struct ServeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Run the agent in the foreground (SIGTERM/SIGINT stop it, SIGHUP reloads the policy).")

    @Option(help: "A TOML file with these settings (keys as the flag names, - as _).") var config: String?
    @Option(help: "The Unix socket to listen on.") var socket: String?
    @Option(help: "The sealed key file.") var keyFile: String?
    @Option(help: "The policy file (TOML).") var policy: String?
    @Option(help: "The state directory (audit log); created with mode 0700.") var stateDir: String?
    @Option(help: "A file holding the passphrase.") var passphraseFile: String?
    @Option(help: "A uid allowed to connect besides the agent's own (always served).") var allowUid: [UInt32] = []
    @Option(help: "A gid allowed to connect.") var allowGid: [UInt32] = []
    @Option(help: "Write a signed checkpoint every N records.") var checkpointEvery: UInt64?
    @Option(help: "Snapshot the ledger every N records (0: only at a clean stop); bounds a restart after a crash.")
    var snapshotEvery: UInt64?
    @Option(help: "Roll the audit log over to a new segment at N bytes (0: not by size; default 256 MiB).")
    var segmentMaxBytes: Int?
    @Option(help: "Roll the audit log over to a new segment at N records (0, the default: not by count).")
    var segmentMaxRecords: UInt64?
    @Option(help: "At most N connections at once.") var maxConnections: Int?
    @Option(
        help: "Close a connection silent for T seconds, or whose line is not complete T seconds after its first byte.")
    var idleTimeoutS: Int64?
    @Option(help: "At most N requests per second per caller uid (0: no limit).") var rateLimit: Int?
    @Option(
        help: "Keep the session ledger in PostgreSQL (a libpq URL), shared by every agent of this key.")
    var ledgerUrl: String?
    @Option(help: "With --ledger-url: how long a database call may take before the decision is refused (ms).")
    var ledgerTimeoutMs: Int?

    func run() throws {
        var file = ServeConfig()
        if let config {
            do { file = try ServeConfig.load(path: config) } catch { throw CLIFailure("\(error)") }
        }
        guard let socket = socket ?? file.socket, let keyFile = keyFile ?? file.keyFile,
            let policy = policy ?? file.policy, let stateDir = stateDir ?? file.stateDir
        else {
            throw CLIFailure(
                "serve needs --socket, --key-file, --policy and --state-dir (or --config)",
                hint: "custodian dev starts an agent on a dev key and the default policy")
        }
        let server = ServerSettings(
            socketPath: socket, allowUIDs: allowUid.isEmpty ? file.allowUID : allowUid,
            allowGIDs: allowGid.isEmpty ? file.allowGID : allowGid,
            maxConnections: maxConnections ?? file.maxConnections ?? 1024,
            idleTimeoutSeconds: idleTimeoutS ?? file.idleTimeoutS ?? 60,
            rateLimit: rateLimit ?? file.rateLimit ?? 50_000)
        let settings = AgentSettings(
            server: server, keyFile: keyFile, policyFile: policy, stateDirectory: stateDir,
            passphraseFile: passphraseFile ?? file.passphraseFile,
            checkpointEvery: checkpointEvery ?? file.checkpointEvery ?? 1000,
            snapshotEvery: snapshotEvery ?? file.snapshotEvery ?? 100_000,
            segmentLimits: SegmentLimits(
                maxBytes: max(0, segmentMaxBytes ?? file.segmentMaxBytes ?? SegmentLimits().maxBytes),
                maxRecords: segmentMaxRecords ?? file.segmentMaxRecords ?? 0),
            ledgerURL: ledgerUrl ?? file.ledgerURL,
            ledgerTimeoutMs: Int32(clamping: max(100, ledgerTimeoutMs ?? file.ledgerTimeoutMs ?? 5000)))
        try Serving.run(settings)
    }
}

/// Runs an agent until SIGTERM or SIGINT.
enum Serving {
    static func run(_ settings: AgentSettings) throws {
        for signalNumber in [SIGTERM, SIGINT, SIGHUP, SIGPIPE] { signal(signalNumber, SIG_IGN) }
        // The stop signals are watched before the agent starts: the socket answers before start() returns, and a
        // SIGTERM sent in between must not be lost.
        let done = DispatchSemaphore(value: 0)
        let queue = DispatchQueue(label: "custodian.signals")
        var sources: [DispatchSourceSignal] = []
        for signalNumber in [SIGTERM, SIGINT] {
            let source = DispatchSource.makeSignalSource(signal: signalNumber, queue: queue)
            source.setEventHandler { done.signal() }
            source.resume()
            sources.append(source)
        }
        let agent: RunningAgent
        do {
            agent = try RunningAgent.start(
                settings,
                passphrase: {
                    try CLI.passphrase(file: settings.passphraseFile, prompt: "Passphrase for \(settings.keyFile): ")
                }, log: { CLI.info($0) })
        } catch let error as AgentStartError {
            throw CLIFailure(error.description, hint: error.hint, exitCode: error.exitCode)
        }
        let hangup = DispatchSource.makeSignalSource(signal: SIGHUP, queue: queue)
        hangup.setEventHandler { agent.reloadPolicy(log: { CLI.info($0) }) }
        hangup.resume()
        sources.append(hangup)
        done.wait()
        CLI.info("stopping")
        agent.stop()
        CLI.info("stopped")
    }
}
