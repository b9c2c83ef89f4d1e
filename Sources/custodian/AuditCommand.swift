import ArgumentParser
import CustodianAgent
import CustodianClient
import CustodianCore
import Foundation

struct AuditCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audit", abstract: "Verify audit logs, and report on them.",
        subcommands: [Verify.self, Rotate.self, Report.self])

    struct Rotate: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Ask the running agent to seal its active audit log segment (with a signed checkpoint) and begin "
                + "the next; print the sealed file's name. For the agent's own user or root.")

        @Option(help: "The agent's socket.") var socket: String

        func run() throws {
            do { print(try CustodianClient(socketPath: socket).rotate()) } catch { throw clientFailure(error) }
        }
    }

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
            for path in paths {
                var isDirectory: ObjCBool = false
                guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
                    throw CLIFailure("no such log or state directory: \(path)")
                }
                // A directory that holds no log would read as an empty, verified history.
                if isDirectory.boolValue, ((try? Segments.list(directory: path)) ?? []).isEmpty {
                    throw CLIFailure(
                        "no audit log in \(path)", hint: "give the agent's state directory (--state-dir) or a log file")
                }
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
            abstract: "Verify an audit log: a state directory (its segments in order, with its anchor and snapshots), "
                + "or log files given in chain order (sealed segments, compressed or not, then audit.log; the first may "
                + "be any sealed segment). Checks the chain across files, every checkpoint's signature, every "
                + "decision's request_hash, the signatures after the last checkpoint, and each segment's SHA-256 as the "
                + "next names it. Errors name the file and line. Exit 0 if intact, 2 if not.")

        @Argument(help: "The agent's state directory, or the log's files in order.") var paths: [String]
        @Option(help: "The agent's address (default: the one named by the log's start records).") var address: String?
        @Option(
            help: ArgumentHelp(
                "Also check the state directories given (every agent's of one PostgreSQL ledger) against it: each "
                    + "ledger transaction is in exactly one log, byte for byte, and every record a log wrote in one "
                    + "is in it."))
        var ledgerUrl: String?

        func run() throws {
            guard let ledgerUrl else { return try verify(paths) }
            for path in paths { try verify([path]) }
            let outcome: LedgerCrossCheck.Outcome
            do { outcome = try LedgerCrossCheck.run(ledgerURL: ledgerUrl, stateDirectories: paths) } catch {
                throw CLIFailure(error.description, hint: error.hint, exitCode: error.exitCode)
            }
            for problem in outcome.problems.prefix(20) { FileHandle.standardError.write(Data("\(problem)\n".utf8)) }
            guard outcome.problems.isEmpty else {
                throw CLIFailure(
                    "the logs and the ledger database disagree: \(outcome.problems.count) problem(s)", exitCode: 2)
            }
            print(outcome.summary)
        }

        func verify(_ paths: [String]) throws {
            guard !paths.isEmpty else { throw CLIFailure("give a state directory, or the log's files in order") }
            var expected: Address?
            if let address {
                guard let parsed = Address(eip55: address) else { throw CLIFailure("--address must be EIP-55") }
                expected = parsed
            }
            var isDirectory: ObjCBool = false
            let directory =
                paths.count == 1 && FileManager.default.fileExists(atPath: paths[0], isDirectory: &isDirectory)
                && isDirectory.boolValue
            let evidence: StateEvidence
            let files: [Segments.File]
            do {
                evidence = directory ? try StateEvidence.read(stateDirectory: paths[0]) : StateEvidence()
                files = directory ? try Segments.list(directory: paths[0]) : paths.map { Segments.File(path: $0) }
            } catch {
                throw CLIFailure("\(error)", exitCode: 2)
            }
            let label = files.count == 1 ? files[0].path : directory ? paths[0] : paths.joined(separator: " ")
            if files.isEmpty && evidence.isEmpty { throw CLIFailure("no audit log in \(paths[0])") }
            for file in files where !directory && !FileIO.exists(file.path) {
                throw CLIFailure("no such file: \(file.path)")
            }
            var source = LineSource.log(files)
            let verification: AuditVerification
            if files.isEmpty {
                verification = AuditVerification(chain: AuditChain())
            } else {
                switch AuditVerifier.verify(&source, address: expected, headAt: evidence.anchor?.seq) {
                case .success(let value): verification = value
                case .failure(.unavailable(let why)): throw CLIFailure("\(label): \(why)")
                case .failure(.broken(let line, let why)):
                    throw CLIFailure("\(label): \(AuditError.broken(line: line, why: why))", exitCode: 2)
                case .failure(let error): throw CLIFailure("\(error)", exitCode: 2)
                }
            }
            let chain = verification.chain
            if chain.tornTail > 0, let last = chain.files.last {
                throw CLIFailure(
                    "\(last.file.path): line \(chain.count + 1 - last.firstLine + 1): truncated, \(chain.tornTail) bytes "
                        + "without a newline (a write cut short, or the file cut)",
                    exitCode: 2)
            }
            // A sealed segment's name gives its first and last record: a file renamed is named for what it holds.
            for (index, start) in chain.files.enumerated() {
                guard let first = start.file.first, let last = start.file.last else { continue }
                let holdsLast = index + 1 < chain.files.count ? chain.files[index + 1].firstLine - 1 : chain.count
                if first != UInt64(start.firstLine) || last != UInt64(holdsLast) {
                    throw CLIFailure(
                        "\(start.file.path) line 1: named for records \(first)…\(last), but holds records "
                            + "\(start.firstLine)…\(holdsLast): renamed, or not the file its name says",
                        exitCode: 2)
                }
            }
            if let shortfall = evidence.shortfall(of: verification) {
                throw CLIFailure("\(label): \(shortfall)", exitCode: 2)
            }
            let first = chain.files.first?.firstLine ?? 1
            let range = first > 1 ? " (records \(first)…\(chain.count), from a sealed segment on)" : ""
            let segments = chain.files.count > 1 ? " in \(chain.files.count) files" : ""
            print(
                "ok: \(chain.count) records\(range)\(segments) (\(verification.decisions) decisions), "
                    + "\(verification.checkpoints) checkpoints signed by \(verification.address?.checksummed ?? "nobody"), "
                    + "head \(chain.head)")
        }
    }
}
