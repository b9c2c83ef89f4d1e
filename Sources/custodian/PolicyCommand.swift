import ArgumentParser
import CustodianAgent
import CustodianCore
import CustodianCrypto

struct PolicyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "policy", abstract: "Validate policy files and dry-run decisions.",
        subcommands: [Check.self, Test.self])

    struct Check: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Validate a policy file; print its hash.")

        @Argument(help: "The policy file.") var file: String

        func run() throws {
            do {
                print(try PolicyFile.load(path: file).hash)
            } catch {
                throw CLIFailure("\(file): \(error)", exitCode: 2)
            }
        }
    }

    struct Test: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Dry run: print the decision for a message as JSON; sign nothing. Exit 0 allow, 2 refuse.")

        @Argument(help: "The policy file.") var file: String
        @Option(help: "The message file, read as bytes.") var message: String
        @Option(help: "The state directory of a stopped agent (its audit log gives the sessions).") var stateDir:
            String?
        @Option(help: "The clock, in Unix milliseconds (default: now).") var nowMs: UInt64?
        @Option(help: "The agent's address (default: the one in the state directory's audit log).") var address: String?

        func run() throws {
            let loaded: LoadedPolicy
            do { loaded = try PolicyFile.load(path: file) } catch { throw CLIFailure("\(file): \(error)") }
            let bytes = try CLI.readInput(message)
            let given = address.flatMap { Address(eip55: $0) }
            if address != nil && given == nil { throw CLIFailure("--address must be an EIP-55 address") }
            var chain = AuditChain()
            var state = LedgerState()
            if let stateDir {
                do {
                    let rebuilt = try StateDirectory.readHistory(stateDir)
                    chain = rebuilt.chain
                    state = rebuilt.state
                } catch {
                    throw CLIFailure(error.description, hint: error.hint, exitCode: 2)
                }
            }
            guard let agent = given ?? chain.agent else {
                throw CLIFailure(
                    "policy test needs the agent's address",
                    hint: "give --address 0x… (EIP-55) or --state-dir of an agent that has run")
            }
            let now = nowMs ?? Engine.systemClock()
            var writer = JSONWriter()
            writer.beginObject()
            let allowed: Bool
            switch NitroRPCv0Reader().read(bytes) {
            case .failure(let denial):
                writer.field("decision", "deny")
                writeDenial(denial, &writer)
                allowed = false
            case .success(let request):
                writer.field("method", request.body.method.rawValue)
                writer.field("request_hash", Hex.encode(request.digest, prefixed: true))
                switch request.body {
                case .create(let definition, _, _): writer.field("app_session_id", definition.appSessionID)
                default: writer.field("app_session_id", request.namedSessionID ?? "")
                }
                switch loaded.policy.evaluate(request, state: state, agent: agent, nowMs: now) {
                case .allow(let effect):
                    writer.field("decision", "allow")
                    writeWarnings(effect.warnings, &writer)
                    allowed = true
                case .deny(let denial):
                    writer.field("decision", "deny")
                    writeDenial(denial, &writer)
                    allowed = false
                }
            }
            writer.field("policy_hash", loaded.hash)
            writer.field("now_ms", now)
            writer.endObject()
            CLI.out(writer.bytes)
            if !allowed { throw ExitCode(2) }
        }
    }
}
