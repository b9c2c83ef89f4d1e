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

    /// The ledger a state directory's log implies (verified, with the evidence beside it, as a start reads it).
    static func load(_ stateDir: String) throws(CLIFailure) -> LedgerState {
        do { return try StateDirectory.readHistory(stateDir).state } catch {
            throw CLIFailure(error.description, hint: error.hint, exitCode: 2)
        }
    }

    static func write(_ session: SessionRecord, full: Bool, _ writer: inout JSONWriter) {
        writer.field("app_session_id", session.appSessionID)
        writer.field("status", session.status.rawValue)
        writer.field("version", session.version)
        writer.field("application", session.definition.application ?? "")
        // v0's definition names its protocol (NitroRPC/0.2 or 0.4); a v1 session is nitronode's.
        writer.field(
            "protocol",
            session.definition.wire.definitionNamesProtocol
                ? session.definition.protocolName : session.definition.wire.rawValue)
        writer.key("participants")
        writer.beginArray()
        for participant in session.definition.participants { writer.string(participant.checksummed) }
        writer.endArray()
        writeAmounts("totals", session.totals, &writer)
        guard full else { return }
        writer.key("allocations")
        LedgerInterchange.writeAllocations(session.allocations, &writer)
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
            let state = try SessionCommand.load(stateDir)
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
            let state = try SessionCommand.load(stateDir)
            guard let session = state.session(id) else {
                throw CLIFailure("no session \(id) in \(stateDir)", exitCode: 2)
            }
            var history: [AuditEntry] = []
            let needle = Array("\"app_session_id\":\"\(id)\"".utf8)
            var source = LineSource(path: stateDir + "/audit.log")
            _ = AuditChain.read(&source) { record in
                guard RecordShape.contains(needle, in: record.bytes), case .success(let entry) = record.parse(),
                    entry.string("app_session_id") == id
                else { return nil }
                history.append(entry)
                return nil
            }
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
        @Option(help: "The version of the state to forget: the session's latest (its create is version 1).")
        var stateVersion: UInt64
        @Flag(help: "Release a create: the session is forgotten, with every check custodian makes for it.")
        var forgetSession = false
        @Option(help: "Why (recorded in the audit log).") var reason: String
        @Option(help: "The agent's state directory.") var stateDir: String
        @Option(
            help: ArgumentHelp(
                "The ledger database of a pair (a libpq URL): released there, as a transaction of the stopped agent "
                    + "of --state-dir; the other agents may run."))
        var ledgerUrl: String?

        func run() throws {
            let (session, restored): (SessionRecord, SessionRecord?)
            do {
                if let ledgerUrl {
                    (session, restored) = try StateDirectory.release(
                        stateDir, id: id, version: stateVersion, forgetSession: forgetSession, reason: reason,
                        ledgerURL: ledgerUrl)
                } else {
                    (session, restored) = try StateDirectory.release(
                        stateDir, id: id, version: stateVersion, forgetSession: forgetSession, reason: reason)
                }
            } catch {
                throw CLIFailure(error)
            }
            print(
                "released \(id): \(session.status.rawValue) at version \(session.version) -> "
                    + (restored.map { "\($0.status.rawValue) at version \($0.version)" }
                        ?? "forgotten (its create was released)"))
        }
    }
}
