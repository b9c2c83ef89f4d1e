import ArgumentParser
import CustodianAgent
import CustodianCore

#if canImport(Glibc)
    import Glibc
#endif

struct SessionCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "session", abstract: "Inspect the sessions an agent signed for; release a stuck one.",
        subcommands: [List.self, Show.self, Release.self])

    /// The log of a state directory (verified), and the ledger it implies.
    static func load(_ stateDir: String) throws(CLIFailure) -> ([UInt8], AuditChain, LedgerState) {
        let path = stateDir + "/audit.log"
        let bytes: [UInt8]
        do { bytes = try FileIO.readAll(path) } catch { throw CLIFailure("\(error)") }
        switch Replay.ledger(from: bytes) {
        case .success(let (chain, state)): return (bytes, chain, state)
        case .failure(let error): throw CLIFailure("\(path): \(error)", exitCode: 2)
        }
    }

    static func write(_ session: SessionRecord, full: Bool, _ writer: inout JSONWriter) {
        writer.field("app_session_id", session.appSessionID)
        writer.field("status", session.status.rawValue)
        writer.field("version", session.version)
        writer.field("application", session.definition.application ?? "")
        writer.field("protocol", session.definition.protocolName)
        writer.key("participants")
        writer.beginArray()
        for participant in session.definition.participants { writer.string(participant.checksummed) }
        writer.endArray()
        writeAmounts("totals", session.totals, &writer)
        guard full else { return }
        writer.key("allocations")
        writer.beginArray()
        for allocation in session.allocations {
            writer.beginObject()
            writer.field("participant", allocation.participant.checksummed)
            writer.field("asset", allocation.asset.value)
            writer.field("amount", "\(allocation.amount)")
            writer.endObject()
        }
        writer.endArray()
        writeAmounts("own_funding", session.funding, &writer)
        writeAmounts("own_withdrawn", session.withdrawn, &writer)
    }

    static func writeAmounts(_ name: String, _ amounts: [ExactString: Amount], _ writer: inout JSONWriter) {
        writer.key(name)
        writer.beginObject()
        for (asset, amount) in amounts.sorted(by: { $0.key < $1.key }) { writer.field(asset.value, "\(amount)") }
        writer.endObject()
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "One JSON line per session, from the audit log.")

        @Option(help: "The agent's state directory.") var stateDir: String

        func run() throws {
            let (_, _, state) = try SessionCommand.load(stateDir)
            for session in state.sessions.values.sorted(by: { $0.appSessionID < $1.appSessionID }) {
                var writer = JSONWriter()
                writer.beginObject()
                SessionCommand.write(session, full: false, &writer)
                writer.endObject()
                CLI.out(writer.bytes)
            }
        }
    }

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "A session's state and its history, as JSON.")

        @Argument(help: "The app_session_id.") var id: String
        @Option(help: "The agent's state directory.") var stateDir: String

        func run() throws {
            let (bytes, _, state) = try SessionCommand.load(stateDir)
            guard let session = state.session(id) else {
                throw CLIFailure("no session \(id) in \(stateDir)", exitCode: 2)
            }
            var history: [AuditEntry] = []
            let needle = Array("\"app_session_id\":\"\(id)\"".utf8)
            _ = AuditChain.read(
                bytes, wants: { _, _, line in RecordShape.contains(needle, in: line) },
                visit: { entry in
                    if entry.string("app_session_id") == id { history.append(entry) }
                    return nil
                })
            var writer = JSONWriter()
            writer.beginObject()
            SessionCommand.write(session, full: true, &writer)
            writer.key("history")
            writer.beginArray()
            for entry in history {
                writer.beginObject()
                writer.field("seq", entry.seq)
                writer.field("time", entry.string("time") ?? "")
                writer.field("event", entry.event)
                for key in ["method", "decision", "reason", "action", "request_hash", "reason_text"] {
                    if let value = entry.string(key) { writer.field(key, value) }
                }
                writer.endObject()
            }
            writer.endArray()
            writer.endObject()
            CLI.out(writer.bytes)
        }
    }

    struct Release: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Forget the latest signed state of a session that ClearNode never executed, so that another may "
                + "be signed. Audited; the agent must be stopped.")

        @Argument(help: "The app_session_id.") var id: String
        @Option(help: "Why (recorded in the audit log).") var reason: String
        @Option(help: "The agent's state directory.") var stateDir: String

        func run() throws {
            let lock: StateLock
            do { lock = try StateLock(stateDirectory: stateDir) } catch {
                throw CLIFailure(
                    "an agent is running on \(stateDir)",
                    hint: "stop it first (SIGTERM, or systemctl stop custodian): operator actions are written while no "
                        + "agent writes")
            }
            defer { withExtendedLifetime(lock) {} }
            let (bytes, chain, state) = try SessionCommand.load(stateDir)
            guard let session = state.session(id) else {
                throw CLIFailure("no session \(id) in \(stateDir)", exitCode: 2)
            }
            var policyHash = ""
            _ = AuditChain.read(
                bytes, wants: { _, event, _ in event == "policy_loaded" || event == "policy_reloaded" },
                visit: { entry in
                    policyHash = entry.string("policy_hash") ?? policyHash
                    return nil
                })
            var after = state
            _ = after.release(id)
            let restored = after.session(id)
            let log: AuditLog
            do { log = try AuditLog(path: stateDir + "/audit.log", chain: chain) } catch {
                throw CLIFailure("\(error)")
            }
            let now = Engine.systemClock()
            let reasonText = reason
            log.stage(event: "operator", timeMs: now) { writer in
                writer.key("peer")
                writer.beginObject()
                writer.field("uid", getuid())
                writer.field("gid", getgid())
                writer.field("pid", getpid())
                writer.endObject()
                writer.field("policy_hash", policyHash)
                writer.field("action", "session_release")
                writer.field("app_session_id", id)
                writer.field("reason_text", reasonText)
                writer.field("released_status", session.status.rawValue)
                writer.field("released_version", session.version)
                writer.field("restored_status", restored?.status.rawValue ?? "forgotten")
            }
            do { try log.commit() } catch { throw CLIFailure("\(error)") }
            print(
                "released \(id): \(session.status.rawValue) at version \(session.version) -> "
                    + (restored.map { "\($0.status.rawValue) at version \($0.version)" }
                        ?? "forgotten (its create was released)"))
        }
    }
}
