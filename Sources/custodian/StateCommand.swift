import ArgumentParser
import CustodianAgent

struct StateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "state", abstract: "Operator actions on a whole state directory.", subcommands: [Reset.self])

    struct Reset: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "Start a new history on purpose: move the audit log, anchor and snapshots into an abandoned-<time> "
                + "folder and begin a new log whose first record says what was abandoned and why. Every session "
                + "signed before is forgotten. The agent must be stopped.")

        @Option(help: "The agent's state directory.") var stateDir: String
        @Option(help: "Why (recorded as the new log's first record).") var reason: String
        @Flag(help: "Confirms that the agent may then sign states that conflict with those it signed before.")
        var forgetSignedSessions = false

        func run() throws {
            guard forgetSignedSessions else {
                throw CLIFailure(
                    "refusing to forget the signed sessions of \(stateDir) without --forget-signed-sessions",
                    hint: "a reset lets the agent sign a state that conflicts with one it signed before; restore the "
                        + "log from a backup instead if you can")
            }
            let folder: String
            do { folder = try StateDirectory.reset(stateDir, reason: reason) } catch { throw CLIFailure(error) }
            print("history reset: the old files are in \(folder); the new log begins with the reset record")
        }
    }
}
