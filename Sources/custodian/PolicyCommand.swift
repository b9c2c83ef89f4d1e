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
        @Option(help: "The ledger database of a pair (a libpq URL): its ledger gives the sessions and channels.")
        var ledgerUrl: String?
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
            var databaseAgent: Address?
            if let ledgerUrl {
                guard stateDir == nil else {
                    throw CLIFailure("give --state-dir or --ledger-url, not both: the ledger is in one of them")
                }
                do {
                    let ledger = try StateDirectory.databaseLedger(ledgerURL: ledgerUrl, address: given)
                    databaseAgent = ledger.agent
                    state = ledger.state
                } catch {
                    throw CLIFailure(error.description, hint: error.hint, exitCode: 2)
                }
            }
            if let stateDir {
                do {
                    let rebuilt = try StateDirectory.readHistory(stateDir)
                    chain = rebuilt.chain
                    state = rebuilt.state
                } catch {
                    throw CLIFailure(error.description, hint: error.hint, exitCode: 2)
                }
            }
            guard let agent = given ?? databaseAgent ?? chain.agent else {
                throw CLIFailure(
                    "policy test needs the agent's address",
                    hint: "give --address 0x… (EIP-55), --state-dir of an agent that has run, or --ledger-url")
            }
            let now = nowMs ?? Engine.systemClock()
            var writer = JSONWriter()
            writer.beginObject()
            let allowed: Bool
            let window = loaded.policy.velocity?.windowSeconds ?? 86_400
            if ChannelStateReader.isChannelFrame(bytes) {
                allowed = Self.channel(bytes, loaded: loaded, state: state, agent: agent, now: now, &writer)
            } else {
                allowed = Self.request(
                    bytes, loaded: loaded, state: state, agent: agent, now: now, window: window, &writer)
            }
            writer.field("policy_hash", loaded.hash)
            writer.field("now_ms", now)
            writer.endObject()
            CLI.out(writer.bytes)
            if !allowed { throw ExitCode(2) }
        }

        /// The decision on a v1 channel frame, from the channels the state directory's ledger holds.
        static func channel(
            _ bytes: [UInt8], loaded: LoadedPolicy, state: LedgerState, agent: Address, now: UInt64,
            _ writer: inout JSONWriter
        ) -> Bool {
            switch ChannelStateReader().read(bytes) {
            case .failure(let denial):
                writer.field("decision", "deny")
                writeDenial(denial, &writer)
                return false
            case .success(let read):
                writer.field("method", Engine.methodName(read.frame))
                writer.field("protocol", WireProtocol.nitroliteV1.rawValue)
                let decision = state.channels.decide(
                    read.frame, policy: loaded.policy.channels, agent: agent, nowMs: now,
                    windowSeconds: loaded.policy.velocity?.windowSeconds ?? 86_400)
                switch decision {
                case .sign(let message, _), .retry(let message):
                    writer.field("request_hash", Hex.encode(Keccak256.hash(message), prefixed: true))
                    writer.field("decision", "allow")
                    return true
                case .refuse(let denial):
                    writer.field("decision", "deny")
                    writeDenial(denial, &writer)
                    return false
                }
            }
        }

        /// The decision on a v0 message or a v1 app-session frame (a deposit's commit too, under `[channels]`).
        static func request(
            _ bytes: [UInt8], loaded: LoadedPolicy, state: LedgerState, agent: Address, now: UInt64, window: UInt64,
            _ writer: inout JSONWriter
        ) -> Bool {
            let allowed: Bool
            switch RequestReader().read(bytes) {
            case .failure(let denial):
                writer.field("decision", "deny")
                writeDenial(denial, &writer)
                allowed = false
            case .success(let request):
                writer.field("method", request.method.rawValue)
                writer.field("protocol", request.wireProtocol.rawValue)
                writer.field("request_hash", Hex.encode(request.requestHash, prefixed: true))
                switch request.body {
                case .create(let definition, _, _): writer.field("app_session_id", definition.appSessionID)
                default: writer.field("app_session_id", request.namedSessionID ?? "")
                }
                var decision = loaded.policy.evaluate(request, state: state, agent: agent, nowMs: now)
                if case .allow = decision, request.method == .v1SubmitDepositState,
                    let channels = loaded.policy.channels
                {
                    if let refusal = request.userStateRefusal {
                        decision = .deny(refusal)
                    } else if let commit = request.userState,
                        case .refuse(let denial) = state.channels.decideCommit(
                            commit, update: request.body, session: request.namedSessionID.flatMap { state.session($0) },
                            policy: channels, agent: agent, nowMs: now, windowSeconds: window)
                    {
                        decision = .deny(denial)
                    }
                }
                switch decision {
                case .allow(let effect):
                    writer.field("decision", "allow")
                    writeWarnings(effect.warnings, &writer)
                    allowed = true
                case .deny(let denial):
                    writer.field("decision", "deny")
                    writeDenial(denial, &writer)
                    Self.explain(denial, state: state, &writer)
                    allowed = false
                }
            }
            return allowed
        }

        /// For a velocity or exposure refusal, the signed states its figure sums: `explanation`, one object each.
        static func explain(_ denial: Denial, state: LedgerState, _ writer: inout JSONWriter) {
            let figures = Dictionary(
                denial.figures.map { ($0.name, $0.value) }, uniquingKeysWith: { first, _ in first })
            guard let asset = figures["asset"].map({ ExactString($0) }) else { return }
            switch denial.reason {
            case .velocityExceeded:
                let since = figures["since_ms"].flatMap { UInt64($0) } ?? 0
                writer.key("explanation")
                writer.beginArray()
                for event in state.lossEvents(asset: asset, sinceMs: since) {
                    writer.beginObject()
                    writer.field("app_session_id", event.sessionID)
                    writer.field("version", event.version)
                    writer.field("time_ms", event.timeMs)
                    writer.field("committed_loss_increase", "\(event.amount)")
                    writer.endObject()
                }
                writer.endArray()
            case .exposureExceeded:
                writer.key("explanation")
                writer.beginArray()
                for session in state.sessions.values.sorted(by: { $0.appSessionID < $1.appSessionID }) {
                    guard let atRisk = session.fundingAtRisk[asset] else { continue }
                    writer.beginObject()
                    writer.field("app_session_id", session.appSessionID)
                    writer.field("version", session.version)
                    writer.field("funding_at_risk", "\(atRisk)")
                    writer.endObject()
                }
                writer.endArray()
            default: break
            }
        }
    }
}
