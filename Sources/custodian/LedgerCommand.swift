import ArgumentParser
import CustodianAgent
import Foundation

struct LedgerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ledger",
        abstract: "Move a ledger between hosts: the signed sessions in the documented JSON interchange format.",
        subcommands: [Export.self, Import.self, Migrate.self])

    struct Migrate: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "Create the PostgreSQL ledger's schema, or bring an older one to this version (as a role that may "
                + "create tables; the agents then need only deploy/custodian-ledger.sql's rights).")

        @Option(help: "The ledger database (a libpq URL).") var ledgerUrl: String

        func run() throws {
            do {
                let version = try LedgerSchema.migrate(ledgerURL: ledgerUrl)
                CLI.out(Array("the ledger database's schema is at version \(version)".utf8))
            } catch {
                throw CLIFailure("\(error)", hint: "a role that may create tables in the database runs this")
            }
        }
    }

    struct Export: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write the ledger of a state directory (every signed session, its latest state and loss events) "
                + "as interchange JSON.")

        @Option(help: "The agent's state directory (without --ledger-url).") var stateDir: String?
        @Option(help: "Export the ledger a PostgreSQL database holds (every agent's decisions) instead.")
        var ledgerUrl: String?
        @Option(name: .short, help: "Write to this new file (mode 0600) instead of standard output.") var output:
            String?

        func run() throws {
            let bytes: [UInt8]
            do throws(AgentStartError) {
                if let ledgerUrl {
                    bytes = try StateDirectory.exportLedger(ledgerURL: ledgerUrl, address: nil)
                } else if let stateDir {
                    bytes = try StateDirectory.exportLedger(stateDir)
                } else {
                    throw AgentStartError("ledger export needs --state-dir or --ledger-url")
                }
            } catch {
                throw CLIFailure(error.description, hint: error.hint, exitCode: error.exitCode)
            }
            guard let output else {
                FileHandle.standardOutput.write(Data(bytes))
                return
            }
            do { try FileIO.createPrivateFile(output, bytes) } catch {
                throw CLIFailure("cannot write \(output): \(error)", hint: "the file must not exist yet")
            }
        }
    }

    struct Import: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "With the agent stopped: add the sessions of an interchange file to a state directory's ledger "
                + "(audited); refuses, writing nothing, if any session differs from what the ledger holds.")

        @Argument(
            help: "The interchange file; with --ledger-url, none: the state directory's own ledger.")
        var file: String?
        @Option(help: "The agent's state directory (created if missing).") var stateDir: String
        @Option(
            help:
                "Import into this PostgreSQL ledger, through the state directory's agent (stopped; its log records it)."
        )
        var ledgerUrl: String?

        func run() throws {
            let bytes: [UInt8]?
            if let file {
                bytes = try CLI.readInput(file)
            } else if ledgerUrl != nil {
                bytes = nil
            } else {
                throw CLIFailure("ledger import needs a file (or --ledger-url, to import the state directory's ledger)")
            }
            do { try FileIO.ensurePrivateDirectory(stateDir) } catch {
                throw CLIFailure("cannot create \(stateDir): \(error)")
            }
            let summary: StateDirectory.ImportSummary
            do throws(AgentStartError) {
                if let ledgerUrl {
                    summary = try StateDirectory.importLedger(stateDir, file: bytes, ledgerURL: ledgerUrl)
                } else {
                    summary = try StateDirectory.importLedger(stateDir, file: bytes ?? [])
                }
            } catch {
                throw CLIFailure(error.description, hint: error.hint, exitCode: error.exitCode)
            }
            let target = ledgerUrl == nil ? stateDir : "the ledger database"
            var line = "imported \(summary.added) session(s) into \(target); \(summary.alreadyPresent) already there"
            if summary.channelsAdded + summary.channelsPresent > 0 {
                line += "; \(summary.channelsAdded) home channel(s) imported, \(summary.channelsPresent) already there"
            }
            CLI.out(Array(line.utf8))
        }
    }
}
