import ArgumentParser
import CustodianAgent

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// The `custodian` command: argument parsing and nothing else.
@main
struct Custodian: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "custodian",
        abstract: "A key custodian for Nitrolite (ERC-7824) state-channel apps.",
        version: "0.1.0",
        subcommands: [
            KeyCommand.self, ServeCommand.self, DevCommand.self, SignCommand.self, StatusCommand.self,
            MetricsCommand.self,
            PolicyCommand.self, AuditCommand.self, SessionCommand.self, LedgerCommand.self, StateCommand.self,
            SandboxCheckCommand.self, ChannelCommand.self,
        ])

    /// Exit codes of CONTRACT §2: 0 success, 1 usage or I/O, 2 refused, 3 agent unreachable.
    static func main() {
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch let failure as CLIFailure {
            CLI.report(failure)
        } catch {
            let code = exitCode(for: error)
            if code == .success {
                print(fullMessage(for: error))
                Glibc.exit(0)
            }
            let message = fullMessage(for: error)
            if message.isEmpty { Glibc.exit(code.rawValue) }
            CLI.report(CLIFailure(message.split(separator: "\n").first.map(String.init) ?? message, exitCode: 1))
        }
    }
}
