import ArgumentParser
import CustodianClient
import Foundation

struct SignCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sign",
        abstract: "Send one unsigned message to the agent; print the signed envelope alone, one line, on stdout.")

    @Option(help: "The agent's socket.") var socket: String
    @Option(help: "The message file (default: standard input), sent as bytes.") var file: String?

    func run() throws {
        let message = try CLI.readInput(file)
        do {
            let result = try CustodianClient(socketPath: socket).sign(message: message)
            CLI.out(Array(result.message.utf8))
        } catch {
            throw clientFailure(error)
        }
    }
}

struct StatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status", abstract: "Print the agent's status as JSON.")

    @Option(help: "The agent's socket.") var socket: String

    func run() throws {
        do {
            CLI.out(try CustodianClient(socketPath: socket).statusJSON())
        } catch {
            throw clientFailure(error)
        }
    }
}

struct MetricsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "metrics",
        abstract: "Print the agent's metrics in the Prometheus text format (for node_exporter's textfile collector).")

    @Option(help: "The agent's socket.") var socket: String

    func run() throws {
        let text: String
        do { text = try CustodianClient(socketPath: socket).metricsText() } catch { throw clientFailure(error) }
        FileHandle.standardOutput.write(Data(text.utf8))
    }
}

/// Maps a client error to the CLI's exit codes: 3 unreachable, 2 refused, 1 anything else.
func clientFailure(_ error: ClientError) -> CLIFailure {
    switch error {
    case .unreachable:
        CLIFailure("\(error)", hint: "is the agent running? custodian serve, or custodian dev", exitCode: 3)
    case .refused(_, let message, let reason, _):
        CLIFailure(reason.map { "\($0): \(message)" } ?? message, exitCode: 2)
    case .protocolError:
        CLIFailure("\(error)", exitCode: 1)
    }
}
