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
            // The address: given, or the one the first start record names (read from the first line).
            var expected: Address?
            if let address {
                guard let parsed = Address(eip55: address) else { throw CLIFailure("--address must be EIP-55") }
                expected = parsed
            } else if let firstLine = bytes.split(separator: 0x0A, maxSplits: 1).first,
                case .success(let root) = StrictJSON.parse(Array(firstLine)),
                let named = root.value.members?.member("address")?.value.string
            {
                expected = Address(eip55: named)
            }
            var checkpoints = 0
            var decisions = 0
            let result = AuditChain.read(
                bytes, wants: { _, event, _ in event == "sign" || event == "checkpoint" || event == "start" },
                visit: { entry in
                    guard let expected else {
                        return entry.event == "checkpoint"
                            ? .broken(line: entry.line, why: "a checkpoint, but no address to check it against") : nil
                    }
                    switch entry.event {
                    case "start":
                        if let named = entry.string("address"), named != expected.checksummed {
                            return .broken(line: entry.line, why: "starts an agent of \(named), not \(expected)")
                        }
                        return nil
                    case "checkpoint":
                        checkpoints += 1
                        return AuditChain.verifyCheckpoint(entry, address: expected)
                    default:
                        decisions += 1
                        return AuditChain.verifyDecision(entry, address: expected)
                    }
                })
            let chain: AuditChain
            switch result {
            case .success(let read): chain = read
            case .failure(let error): throw CLIFailure("\(log): \(error)", exitCode: 2)
            }
            if chain.tornTail > 0 {
                throw CLIFailure(
                    "\(log): line \(chain.count + 1): truncated, \(chain.tornTail) bytes without a newline (a write "
                        + "cut short, or the file cut)",
                    exitCode: 2)
            }
            print(
                "ok: \(chain.count) records (\(decisions) decisions), \(checkpoints) checkpoints signed by "
                    + "\(expected?.checksummed ?? "nobody"), head \(chain.head)")
        }
    }
}
