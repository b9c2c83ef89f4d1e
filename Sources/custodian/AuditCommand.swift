import ArgumentParser
import CustodianAgent
import CustodianCore

struct AuditCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audit", abstract: "Verify audit logs.", subcommands: [Verify.self])

    struct Verify: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Verify the audit log's hash chain and checkpoint signatures. Exit 0 if intact, 2 if not.")

        @Argument(help: "The audit log.") var log: String
        @Option(help: "The agent's address (default: the one named by the log's start records).") var address: String?

        func run() throws {
            let bytes: [UInt8]
            do { bytes = try FileIO.readAll(log) } catch { throw CLIFailure("\(error)") }
            let chain: AuditChain
            switch AuditChain.read(bytes) {
            case .success(let read): chain = read
            case .failure(let error): throw CLIFailure("\(log): \(error)", exitCode: 2)
            }
            if chain.tornTail > 0 {
                throw CLIFailure(
                    "\(log): line \(chain.entries.count + 1): truncated, \(chain.tornTail) bytes without a newline (a write "
                        + "cut short, or the file cut)",
                    exitCode: 2)
            }
            var expected: Address?
            if let address {
                guard let parsed = Address(eip55: address) else { throw CLIFailure("--address must be EIP-55") }
                expected = parsed
            } else {
                expected = Replay.agentAddress(in: chain)
            }
            for entry in chain.entries where entry.event == "start" {
                if let named = entry.string("address"), let expected, named != expected.checksummed {
                    throw CLIFailure(
                        "\(log): line \(entry.line) starts an agent of \(named), not \(expected)", exitCode: 2)
                }
            }
            let checkpoints = chain.entries.filter { $0.event == "checkpoint" }.count
            if let expected,
                let error = chain.verifyDecisions(address: expected) ?? chain.verifyCheckpoints(address: expected)
            {
                throw CLIFailure("\(log): \(error)", exitCode: 2)
            }
            if checkpoints > 0 && expected == nil {
                throw CLIFailure("\(log): checkpoints present but no address to check them against", exitCode: 2)
            }
            print(
                "ok: \(chain.entries.count) records, \(checkpoints) checkpoints signed by "
                    + "\(expected?.checksummed ?? "nobody"), head \(chain.head)")
        }
    }
}
