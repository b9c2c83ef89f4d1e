import ArgumentParser
import CustodianAgent
import CustodianCore
import Foundation

struct AuditCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audit", abstract: "Verify audit logs.", subcommands: [Verify.self])

    struct Verify: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Verify an audit log (a file, or a state directory with its anchor and snapshots): the chain, "
                + "every checkpoint's signature, every decision's request_hash, the signatures after the last "
                + "checkpoint. The same checks every start makes. Exit 0 if intact, 2 if not.")

        @Argument(help: "The audit log, or the agent's state directory.") var log: String
        @Option(help: "The agent's address (default: the one named by the log's start records).") var address: String?

        func run() throws {
            var expected: Address?
            if let address {
                guard let parsed = Address(eip55: address) else { throw CLIFailure("--address must be EIP-55") }
                expected = parsed
            }
            var isDirectory: ObjCBool = false
            let directory =
                FileManager.default.fileExists(atPath: log, isDirectory: &isDirectory) && isDirectory.boolValue
            let path = directory ? log + "/audit.log" : log
            let evidence: StateEvidence
            do { evidence = directory ? try StateEvidence.read(stateDirectory: log) : StateEvidence() } catch {
                throw CLIFailure("\(error)", exitCode: 2)
            }
            if directory && !FileIO.exists(path) && evidence.isEmpty {
                throw CLIFailure("no audit log in \(log)")
            }
            var source = LineSource(path: path)
            let verification: AuditVerification
            if !FileIO.exists(path) && directory {
                verification = AuditVerification(chain: AuditChain())
            } else {
                switch AuditVerifier.verify(&source, address: expected, headAt: evidence.anchor?.seq) {
                case .success(let value): verification = value
                case .failure(.unavailable(let why)): throw CLIFailure("\(path): \(why)")
                case .failure(let error): throw CLIFailure("\(path): \(error)", exitCode: 2)
                }
            }
            let chain = verification.chain
            if chain.tornTail > 0 {
                throw CLIFailure(
                    "\(path): line \(chain.count + 1): truncated, \(chain.tornTail) bytes without a newline (a write "
                        + "cut short, or the file cut)",
                    exitCode: 2)
            }
            if let shortfall = evidence.shortfall(of: verification) {
                throw CLIFailure("\(path): \(shortfall)", exitCode: 2)
            }
            print(
                "ok: \(chain.count) records (\(verification.decisions) decisions), \(verification.checkpoints) "
                    + "checkpoints signed by \(verification.address?.checksummed ?? "nobody"), head \(chain.head)")
        }
    }
}
