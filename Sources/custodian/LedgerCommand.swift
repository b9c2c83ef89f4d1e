import ArgumentParser
import CustodianAgent
import Foundation

struct LedgerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ledger",
        abstract: "Move a ledger between hosts: the signed sessions in the documented JSON interchange format.",
        subcommands: [Export.self, Import.self])

    /// The PostgreSQL ledger (issue 16) is not in this build: a URL is refused rather than ignored.
    static func refuseLedgerURL(_ url: String?) throws(CLIFailure) {
        guard url != nil else { return }
        throw CLIFailure(
            "--ledger-url: this build keeps the ledger in the state directory only (the PostgreSQL ledger is not in it)",
            hint: "leave --ledger-url out")
    }

    struct Export: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write the ledger of a state directory (every signed session, its latest state and loss events) "
                + "as interchange JSON.")

        @Option(help: "The agent's state directory.") var stateDir: String
        @Option(help: "Not in this build: the PostgreSQL ledger.") var ledgerUrl: String?
        @Option(name: .short, help: "Write to this new file (mode 0600) instead of standard output.") var output:
            String?

        func run() throws {
            try LedgerCommand.refuseLedgerURL(ledgerUrl)
            let bytes: [UInt8]
            do { bytes = try StateDirectory.exportLedger(stateDir) } catch {
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

        @Argument(help: "The interchange file (from custodian ledger export).") var file: String
        @Option(help: "The agent's state directory (created if missing).") var stateDir: String
        @Option(help: "Not in this build: the PostgreSQL ledger.") var ledgerUrl: String?

        func run() throws {
            try LedgerCommand.refuseLedgerURL(ledgerUrl)
            let bytes = try CLI.readInput(file)
            do { try FileIO.ensurePrivateDirectory(stateDir) } catch {
                throw CLIFailure("cannot create \(stateDir): \(error)")
            }
            let summary: StateDirectory.ImportSummary
            do { summary = try StateDirectory.importLedger(stateDir, file: bytes) } catch {
                throw CLIFailure(error.description, hint: error.hint, exitCode: error.exitCode)
            }
            let line = "imported \(summary.added) session(s) into \(stateDir); \(summary.alreadyPresent) already there"
            CLI.out(Array(line.utf8))
        }
    }
}
