import ArgumentParser
import CustodianAgent
import CustodianCore
import Foundation

struct AuditCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audit", abstract: "Verify audit logs, and report on them.",
        subcommands: [Verify.self, Report.self])

    struct Report: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write one self-contained HTML page (inline SVG, no script, no network) of what the agent did: "
                + "decisions over time, refusals by reason, committed losses, velocity use, funding at risk per "
                + "counterparty, operator actions, and the verification.")

        @Argument(help: "Audit logs, or state directories.") var paths: [String]
        @Option(help: "From this time: YYYY-MM-DD, an RFC 3339 UTC time, or Unix milliseconds.") var since: String?
        @Option(help: "Until this time (excluded), in the same forms.") var until: String?
        @Option(help: "A policy file whose [velocity] window and caps the velocity use is shown against.")
        var policy: String?
        @Option(name: .short, help: "The HTML file to write (a new file, mode 0600).") var output: String

        func run() throws {
            guard !paths.isEmpty else { throw CLIFailure("give at least one audit log or state directory") }
            func time(_ text: String?, _ flag: String) throws(CLIFailure) -> UInt64? {
                guard let text else { return nil }
                guard let ms = RFC3339.parse(text) else {
                    throw CLIFailure("\(flag) \(text) is not a date, an RFC 3339 UTC time or Unix milliseconds")
                }
                return ms
            }
            var options = AuditReport.Options(
                sinceMs: try time(since, "--since"), untilMs: try time(until, "--until"),
                generatedAtMs: Engine.systemClock())
            if let policy {
                do { options.velocity = try PolicyFile.load(path: policy).policy.velocity } catch {
                    throw CLIFailure("invalid policy \(policy): \(error)")
                }
            }
            for path in paths where !FileManager.default.fileExists(atPath: path) {
                throw CLIFailure("no such log or state directory: \(path)")
            }
            let (html, totals) = AuditReport.render(paths: paths, options: options)
            do { try FileIO.createPrivateFile(output, html) } catch {
                throw CLIFailure("cannot write \(output): \(error)", hint: "the file must not exist yet")
            }
            print(
                "wrote \(output): \(totals.allowed) allowed, \(totals.refused) refused, \(totals.operatorActions) operator actions"
            )
        }
    }

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
