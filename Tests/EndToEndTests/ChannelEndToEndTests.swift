import CustodianClient
import CustodianCore
import CustodianTestSupport
import Foundation
import Testing

/// Builds v1 home-channel frames (PROTOCOL-v1-channels §1, §5) as a client keeping its own copy of the channel would
/// send them, in the canonical forms of §7.10.
enum ChannelMessages {
    /// The node's key (a test key; its address is pinned in the policy).
    static let nodeKey = "0x8f2a55949038a9610f50fb23b5883af3b4ecb3c3bb792cbcefbd1542c692be63"
    static let token = "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913"
    static let stranger = "0x90F79bf6EB2c4f870365E785982E1f101E93b906"

    static func policy(node: String) -> String {
        V1EndToEndTests.policy + """
            [channels]
            node = "\(node)"
            min_challenge_s = 86400
            [channels.assets.usdc]
            blockchain_id = 8453
            token = "\(token)"
            max_transfer = "50"
            max_outflow = "150"
            [channels.transfers]
            allow = ["\(Messages.b)"]

            """
    }

    /// A state's JSON (`StateV1`), lower-case ids and hex, amounts plain, numbers as decimal strings.
    static func json(_ state: ChannelStateWire, userSig: String? = nil, nodeSig: String? = nil) -> String {
        let ledger = state.homeLedger
        var text =
            #"{"id":"\#(state.id)","transition":{"type":\#(state.transition.type),"#
            + #""tx_id":"\#(state.transition.transactionID)","account_id":"\#(state.transition.accountID)","#
            + #""amount":"\#(state.transition.amount)"},"asset":"\#(state.asset)","#
            + #""user_wallet":"\#(state.userWallet.checksummed.lowercased())","epoch":"\#(state.epoch)","#
            + #""version":"\#(state.version)","home_channel_id":"\#(state.homeChannelID ?? "")","#
            + #""home_ledger":{"token_address":"\#(ledger.token.checksummed.lowercased())","#
            + #""blockchain_id":"\#(ledger.chainID)","user_balance":"\#(ledger.userBalance)","#
            + #""user_net_flow":"\#(ledger.userNetFlow)","node_balance":"\#(ledger.nodeBalance)","#
            + #""node_net_flow":"\#(ledger.nodeNetFlow)"}"#
        if let userSig { text += #","user_sig":"\#(userSig)""# }
        if let nodeSig { text += #","node_sig":"\#(nodeSig)""# }
        return text + "}"
    }

    static func submit(_ state: ChannelStateWire) -> String {
        #"[1,7,"channels.v1.submit_state",{"state":\#(json(state))},\#(Messages.nowMs())]"#
    }

    static func creation(_ state: ChannelStateWire, nonce: UInt64) -> String {
        #"[1,6,"channels.v1.request_creation",{"state":\#(json(state)),"channel_definition":"#
            + #"{"nonce":"\#(nonce)","challenge":86400,"approved_sig_validators":"0x01"}},\#(Messages.nowMs())]"#
    }

    /// An app deposit (intent 1) of A's `amount` into session `id` at `version`, with `commit` as its user_state.
    static func deposit(id: String, version: Int, _ amountA: String?, _ amountB: String?, commit: ChannelStateWire)
        -> String
    {
        var allocations: [String] = []
        if let amountA {
            allocations.append(#"{"participant":"\#(Messages.a)","asset":"usdc","amount":"\#(amountA)"}"#)
        }
        if let amountB {
            allocations.append(#"{"participant":"\#(Messages.b)","asset":"usdc","amount":"\#(amountB)"}"#)
        }
        return #"[1,\#(version),"app_sessions.v1.submit_deposit_state",{"app_state_update":{"app_session_id":"\#(id)","#
            + #""intent":1,"version":"\#(version)","allocations":[\#(allocations.joined(separator: ","))],"#
            + #""session_data":""},"user_state":\#(json(commit)),"quorum_sigs":[]},\#(Messages.nowMs())]"#
    }

    /// The node's answer to `channels.v1.get_latest_state`.
    static func answer(_ state: ChannelStateWire, nodeSig: String) -> String {
        #"[2,9,"channels.v1.get_latest_state",{"state":\#(json(state, nodeSig: nodeSig))},\#(Messages.nowMs())]"#
    }

    /// A state the node issues alone after `base` (a release of `amount` from session `account`): the credit moves
    /// the user's balance and the node's net flow by `credit` (which a lying node makes differ from the amount).
    static func issued(
        after base: ChannelCopy, type: ChannelTransition, account: String, amount: String, credit: String
    )
        throws -> ChannelStateWire
    {
        let version = base.version + 1
        let stateID = ChannelState.stateID(user: base.user, asset: base.asset, epoch: base.epoch, version: version)
        let change = try #require(Amount(signed: credit))
        var ledger = base.ledger
        ledger.userBalance = ledger.userBalance + change
        ledger.nodeNetFlow = ledger.nodeNetFlow + change
        return ChannelStateWire(
            id: Hex.encode(stateID, prefixed: true),
            transition: ChannelStateWire.Transition(
                type: type.rawValue,
                transactionID: Hex.encode(
                    ChannelState.transactionID(accountID: account, stateID: stateID), prefixed: true),
                accountID: account, amount: try #require(Amount(amount))),
            asset: base.asset, userWallet: base.user, epoch: base.epoch, version: version,
            homeChannelID: base.channelID, homeLedger: ledger, userSig: nil, nodeSig: nil)
    }
}

/// The issue's end-to-end walk of a v1 home channel through the socket, each signature recovered with eth-account
/// over the 640-byte message eth-abi builds from the state's values (Tests/EndToEndTests/oracle.py), not custodian's.
@Suite("Nitrolite v1 home channels end to end, checked by eth-abi and eth-account", .serialized)
struct ChannelEndToEndTests {
    /// The client's copy of the channel: the state after `base`, built by §1.2 (its ledger is asserted at each step
    /// against figures written here).
    static func next(_ base: ChannelCopy, _ transition: ChannelTransition, _ account: String, _ amount: String)
        throws -> ChannelStateWire
    {
        try ChannelState.next(after: base, transition, accountID: account, amount: try #require(Amount(amount))).get()
    }

    static func advance(_ copy: inout ChannelCopy, to state: ChannelStateWire) {
        copy.version = state.version
        copy.ledger = state.homeLedger
    }

    /// The state under `key` in a printed frame, and who signed it (eth-account over eth-abi's message).
    static func signer(_ printed: String, key: String, in workspace: Workspace) throws -> String {
        let frame = try #require(try JSONSerialization.jsonObject(with: Data(printed.utf8)) as? [Any])
        let payload = try #require(frame[3] as? [String: Any])
        let state = try #require(payload[key])
        let file = try workspace.write(
            "state-\(UUID().uuidString).json",
            String(decoding: try JSONSerialization.data(withJSONObject: state), as: UTF8.self))
        return try Harness.oracle(["channel-state", file, "6"])
    }

    /// The node's signature over `state` (eth-account).
    static func nodeSign(_ state: ChannelStateWire, in workspace: Workspace) throws -> String {
        let file = try workspace.write("issued-\(UUID().uuidString).json", ChannelMessages.json(state))
        return try Harness.oracle(["channel-sign", ChannelMessages.nodeKey, file, "6"])
    }

    static func reason(_ error: Error) -> String? {
        if case .refused(_, _, let reason, _) = error as? ClientError { return reason }
        return nil
    }

    /// A workspace with key A, a policy pinning the test node, and A's usdc channel at its void state (not created).
    struct Setup {
        let workspace: Workspace
        let policyFile: String
        let stateDir: String
        let arguments: [String]
        let socket: String
        let a: Address
        let nodeAddress: Address
        let nonce: UInt64
        let channelID: String
        let void: ChannelCopy

        init(extra: [String] = []) throws {
            workspace = try Workspace()
            let (keyFile, passphrase) = try EndToEndTests.importKeyA(workspace)
            let node = try Harness.oracle(["address", ChannelMessages.nodeKey])
            policyFile = try workspace.write("policy.toml", ChannelMessages.policy(node: node))
            stateDir = workspace.path + "/state"
            arguments =
                [
                    "--key-file", keyFile, "--policy", policyFile, "--state-dir", stateDir, "--passphrase-file",
                    passphrase,
                ] + extra
            socket = workspace.path + "/agent.sock"
            a = try #require(Address(eip55: Messages.a))
            nodeAddress = try #require(Address(eip55: node))
            nonce = Messages.nowMs()
            channelID = Hex.encode(
                ChannelState.homeChannelID(
                    challengeSeconds: 86_400, user: a, node: nodeAddress, nonce: nonce, validators: 1, asset: "usdc"),
                prefixed: true)
            void = ChannelCopy(
                channelID: channelID, user: a, asset: "usdc", decimals: 6, epoch: 0, version: 0,
                ledger: ChannelStateWire.HomeLedger(
                    token: try #require(Address(eip55: ChannelMessages.token)), chainID: 8453, userBalance: .zero,
                    userNetFlow: .zero, nodeBalance: .zero, nodeNetFlow: .zero))
        }

        func start(_ log: String) throws -> RunningAgent {
            try RunningAgent(arguments: arguments, socket: socket, logFile: workspace.path + "/\(log).log")
        }
    }

    @Test(
        "create a channel, deposit, fund a v1 session by a paired commit, play, close, take the release, transfer, withdraw; every refusal of the issue; a stop on a lying node; restarts; audit verify"
    )
    func homeChannelLife() throws {
        let setup = try Setup()
        let (workspace, policyFile, stateDir, socket) = (
            setup.workspace, setup.policyFile, setup.stateDir, setup.socket
        )
        let (nodeAddress, nonce, channelID) = (setup.nodeAddress, setup.nonce, setup.channelID)
        var agent = try setup.start("agent1")
        var copy = setup.void
        var signatures = 0

        /// Signs `frame`; the state under `key` in the printed frame must recover to A.
        func signed(_ frame: String, key: String = "state") throws -> String {
            let output = try EndToEndTests.sign(agent, frame, in: workspace)
            #expect(output.status == 0, "\(output.stderr)")
            let printed = output.stdout.trimmingCharacters(in: .newlines)
            #expect(try Self.signer(printed, key: key, in: workspace) == Messages.a, "\(printed)")
            signatures += 1
            return printed
        }
        func refused(_ frame: String, _ reason: String, _ what: String) throws {
            let output = try EndToEndTests.sign(agent, frame, in: workspace)
            #expect(output.status == 2, "\(what): \(output.stdout)")
            #expect(output.stderr.contains(reason), "\(what): \(output.stderr)")
        }

        // Hostile frames through the socket: a key Go would fold into `amount`, a channel session key.
        try refused(
            ChannelMessages.submit(try Self.next(copy, .acknowledgement, ChannelState.zeroID, "0"))
                .replacingOccurrences(of: #""amount":"0"}"#, with: #""amount":"0","Amount":"5"}"#),
            "payload.unknown_field", "a folded key")
        try refused(
            #"[1,2,"channels.v1.submit_session_key_state",{"state":{"user_address":"\#(Messages.a.lowercased())","#
                + #""session_key":"\#(Messages.b.lowercased())","version":"1","assets":["usdc"],"#
                + #""expires_at":"1798761600","user_sig":"0x00"}},\#(Messages.nowMs())]"#,
            "payload.", "a channel session key")
        // The channel, created with an acknowledgement (version 1), then a deposit of 200 (version 2).
        let first = try Self.next(copy, .acknowledgement, ChannelState.zeroID, "0")
        let createFrame = ChannelMessages.creation(first, nonce: nonce)
        let created = try signed(createFrame)
        // The frame as sent, with user_sig added to the state and nothing else changed.
        let userSig = try #require(
            (try JSONSerialization.jsonObject(with: Data(created.utf8)) as? [Any]).flatMap {
                (($0[3] as? [String: Any])?["state"] as? [String: Any])?["user_sig"] as? String
            })
        #expect(
            created
                == createFrame.replacingOccurrences(
                    of: "}},\"channel_definition\"", with: "},\"user_sig\":\"\(userSig)\"},\"channel_definition\""))
        Self.advance(&copy, to: first)
        let deposit = try Self.next(copy, .homeDeposit, channelID, "200")
        #expect("\(deposit.homeLedger.userBalance)" == "200" && "\(deposit.homeLedger.userNetFlow)" == "200")
        _ = try signed(ChannelMessages.submit(deposit))
        Self.advance(&copy, to: deposit)
        // The identical state again: the same signature (a retry); through the Swift client, which returns user_sig.
        let retry = try CustodianClient(socketPath: socket).sign(message: Array(ChannelMessages.submit(deposit).utf8))
        #expect(retry.userSig == "0x00" + retry.signature.dropFirst(2))

        // A v1 session A/B (quorum 2: A's signature is required), funded by a commit of 100 from the channel.
        let created1 = try V1EndToEndTests.sign(agent, V1Messages.create(nonce: nonce), in: workspace)
        #expect(created1.status == 0, "\(created1.stderr)")
        let session = try LedgerInterchangeTests.lastSessionID(stateDir)
        let commit = try Self.next(copy, .commit, session, "100")
        #expect("\(commit.homeLedger.userBalance)" == "100" && "\(commit.homeLedger.nodeNetFlow)" == "-100")
        // Paired with an update that credits B: refused.
        try refused(
            ChannelMessages.deposit(id: session, version: 2, nil, "100", commit: commit), "policy.commit_unpaired",
            "a commit paired with an update crediting B")
        let funded = try signed(
            ChannelMessages.deposit(id: session, version: 2, "100", nil, commit: commit), key: "user_state")
        // The same frame carries A's quorum signature over the app update (eth-abi's hash, eth-keys).
        let fundedFile = try workspace.write("funded.json", funded)
        #expect(try Harness.oracle(["v1-frame", fundedFile]) == Messages.a)
        Self.advance(&copy, to: commit)

        // Play and close the session: A ends with 70.
        for (intent, version, amountA, amountB) in [(0, 3, "70", "30"), (3, 4, "70", "30")] {
            let output = try V1EndToEndTests.sign(
                agent, V1Messages.update(id: session, intent: intent, version: version, amountA, amountB),
                in: workspace)
            #expect(output.status == 0, "\(output.stderr)")
        }

        // The node releases A's 70 into the channel (version 4, issued and signed by the node alone).
        let client = CustodianClient(socketPath: socket)
        let release = try ChannelMessages.issued(
            after: copy, type: .release, account: session, amount: "70", credit: "70")
        let releaseSig = try Self.nodeSign(release, in: workspace)
        // Signed by someone else (A's own key over it, as a compromised client could): refused, nothing changes.
        let releaseFile = try workspace.write("release.json", ChannelMessages.json(release))
        let forged = ChannelMessages.answer(
            release, nodeSig: try Harness.oracle(["channel-sign", EndToEndTests.keyA, releaseFile, "6"]))
        #expect(throws: ClientError.self) { try client.observe(message: Array(forged.utf8)) }
        let taken = try client.observe(message: Array(ChannelMessages.answer(release, nodeSig: releaseSig).utf8))
        #expect(taken.channel == channelID && taken.version == 4)
        Self.advance(&copy, to: release)
        #expect("\(copy.ledger.userBalance)" == "170")

        // A transfer of 20 to B (allowed); its version again with other content is refused.
        let transfer = try Self.next(copy, .transferSend, Messages.b.lowercased(), "20")
        _ = try signed(ChannelMessages.submit(transfer))
        let other = try Self.next(copy, .transferSend, Messages.b.lowercased(), "10")
        try refused(ChannelMessages.submit(other), "policy.version_conflict", "a second message for version 5")
        Self.advance(&copy, to: transfer)
        // A recipient the policy does not list; then past the window's outflow (100 + 20 + 40 > 150).
        try refused(
            ChannelMessages.submit(try Self.next(copy, .transferSend, ChannelMessages.stranger.lowercased(), "5")),
            "policy.counterparty_not_allowed", "a transfer to a stranger")
        try refused(
            ChannelMessages.submit(try Self.next(copy, .transferSend, Messages.b.lowercased(), "40")),
            "policy.velocity_exceeded", "a transfer past the window's cap")
        // A withdrawal whose funds would go to another address: a channel of B's wallet, and this channel's next
        // state naming B as its wallet.
        let b = try #require(Address(eip55: Messages.b))
        let theirs = Hex.encode(
            ChannelState.homeChannelID(
                challengeSeconds: 86_400, user: b, node: nodeAddress, nonce: nonce, validators: 1, asset: "usdc"),
            prefixed: true)
        var theirCopy = copy
        theirCopy.channelID = theirs
        theirCopy.user = b
        theirCopy.version = 0
        theirCopy.ledger.userBalance = .zero
        theirCopy.ledger.userNetFlow = .zero
        theirCopy.ledger.nodeNetFlow = .zero
        try refused(
            ChannelMessages.creation(
                try Self.next(theirCopy, .acknowledgement, ChannelState.zeroID, "0"), nonce: nonce),
            "policy.not_participant", "a channel of another wallet")
        var redirected = try Self.next(copy, .homeWithdrawal, channelID, "50")
        redirected.userWallet = b
        try refused(ChannelMessages.submit(redirected), "policy.ledger_mismatch", "a withdrawal naming B's wallet")
        // No challenge before the node is seen co-signing a state of custodian's.
        let early = try Harness.custodian(["channel", "challenge", "--socket", socket, channelID])
        #expect(early.status == 2 && early.stderr.contains("co-signed"), "\(early.stderr)")
        // The withdrawal of 50 to A; the node's answer co-signs it; the operator's challenge covers it.
        let withdrawal = try Self.next(copy, .homeWithdrawal, channelID, "50")
        let withdrawn = try signed(ChannelMessages.submit(withdrawal))
        Self.advance(&copy, to: withdrawal)
        #expect("\(copy.ledger.userBalance)" == "100")
        let withdrawnSig = try #require(
            (try JSONSerialization.jsonObject(with: Data(withdrawn.utf8)) as? [Any]).flatMap {
                (($0[3] as? [String: Any])?["state"] as? [String: Any])?["user_sig"] as? String
            })
        let cosigned = ChannelMessages.answer(
            withdrawal, nodeSig: try Self.nodeSign(withdrawal, in: workspace)
        ).replacingOccurrences(of: #""node_sig""#, with: #""user_sig":"\#(withdrawnSig)","node_sig""#)
        #expect(try client.observe(message: Array(cosigned.utf8)).version == 6)
        let challenge = try Harness.custodian(["channel", "challenge", "--socket", socket, channelID])
        #expect(challenge.status == 0, "\(challenge.stderr)")
        let words = challenge.stdout.split(separator: " ").map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
        #expect(words.count == 3 && words[1] == "6", "\(challenge.stdout)")
        let withdrawalFile = try workspace.write("withdrawal.json", ChannelMessages.json(withdrawal))
        #expect(
            try Harness.oracle(["channel-challenge", withdrawalFile, "6", words.last ?? ""]) == Messages.a,
            "the challenge recovers to A over the 672-byte message eth-abi builds")

        // A restart from the log after SIGKILL: the channel's copy comes back; the spent version is still spent.
        kill(agent.process.processIdentifier, SIGKILL)
        agent.process.waitUntilExit()
        agent = try setup.start("agent2")
        try refused(ChannelMessages.submit(other), "policy.version_conflict", "version 5 after a restart")

        // The node signs a release that shrinks A's balance: refused, and signing on the channel stops.
        let shrinking = try ChannelMessages.issued(
            after: copy, type: .release, account: session, amount: "5", credit: "-5")
        let lie = ChannelMessages.answer(shrinking, nodeSig: try Self.nodeSign(shrinking, in: workspace))
        do {
            _ = try CustodianClient(socketPath: socket).observe(message: Array(lie.utf8))
            Issue.record("a base that shrinks the balance was taken")
        } catch {
            #expect(Self.reason(error) == "policy.channel_base_rejected", "\(error)")
        }
        let next = try Self.next(copy, .homeWithdrawal, channelID, "10")
        try refused(ChannelMessages.submit(next), "policy.channel_base_rejected", "signing after the node lied")
        // It stays stopped across a clean restart (from the snapshot), until the operator resumes it.
        #expect(agent.stop() == 0)
        agent = try setup.start("agent3")
        try refused(ChannelMessages.submit(next), "policy.channel_base_rejected", "stopped after a restart")
        let resume = try Harness.custodian(["channel", "resume", "--socket", socket, channelID])
        #expect(resume.status == 0, "\(resume.stderr)")
        _ = try signed(ChannelMessages.submit(next))
        Self.advance(&copy, to: next)
        #expect(agent.stop() == 0)

        // `policy test` gives the same decisions from the stopped agent's state directory.
        func dryRun(_ frame: String) throws -> Harness.Output {
            let file = try workspace.write("dry-\(UUID().uuidString).json", frame)
            return try Harness.custodian(["policy", "test", policyFile, "--message", file, "--state-dir", stateDir])
        }
        let allowed = try dryRun(ChannelMessages.submit(try Self.next(copy, .homeWithdrawal, channelID, "5")))
        #expect(allowed.status == 0 && allowed.stdout.contains(#""decision":"allow""#), "\(allowed.stdout)")
        let stranger = try dryRun(
            ChannelMessages.submit(try Self.next(copy, .transferSend, ChannelMessages.stranger.lowercased(), "5")))
        #expect(
            stranger.status == 2 && stranger.stdout.contains("policy.counterparty_not_allowed"), "\(stranger.stdout)")

        // The log verifies (every channel signature recovered over the message rebuilt from req and decimals), and
        // holds each allowance with the hash of the message custodian signed.
        let verify = try Harness.custodian(["audit", "verify", stateDir, "--address", Messages.a])
        #expect(verify.status == 0, "\(verify.stderr)")
        let records = try EndToEndTests.auditRecords(stateDir)
        let channelAllowances = records.filter {
            $0["event"] as? String == "sign" && $0["decision"] as? String == "allow" && $0["channel_id"] != nil
        }
        #expect(channelAllowances.count == signatures + 1, "every signed channel state, the retry included")
        #expect(records.contains { $0["event"] as? String == "observe" && $0["halted"] != nil })
        #expect(records.contains { $0["action"] as? String == "channel_resume" })
        #expect(records.contains { $0["action"] as? String == "channel_challenge" && $0["signature"] != nil })
        // The report reads a log with channel records; an export refuses (its format does not carry channels).
        let report = try Harness.custodian(["audit", "report", stateDir, "-o", workspace.path + "/report.html"])
        #expect(report.status == 0, "\(report.stderr)")
        let export = try Harness.custodian(["ledger", "export", "--state-dir", stateDir])
        #expect(export.status == 2 && export.stderr.contains("home channels"), "\(export.stderr)")
        // An edited channel record is found.
        let log = stateDir + "/audit.log"
        let text = try String(contentsOfFile: log, encoding: .utf8)
        try text.replacingOccurrences(of: #"\"amount\":\"50\""#, with: #"\"amount\":\"51\""#).write(
            toFile: log, atomically: false, encoding: .utf8)
        let edited = try Harness.custodian(["audit", "verify", stateDir, "--address", Messages.a])
        #expect(edited.status != 0, "an edited withdrawal verifies: \(edited.stdout)")
    }

    /// `CUSTODIAN_CHANNEL_KILLS` (default 12) rounds: a channel state sent while the agent is SIGKILLed at a random
    /// moment (before, during or after its record), the agent started again, the identical state sent again.
    @Test(
        "SIGKILL while channel states are signed: a signature that left is on record, the same state signs again with it, another is refused"
    )
    func crashes() throws {
        let setup = try Setup(extra: ["--snapshot-every", "5"])
        let (stateDir, socket, nonce, channelID) = (setup.stateDir, setup.socket, setup.nonce, setup.channelID)
        var agent = try setup.start("agent0")
        var copy = setup.void
        let first = try Self.next(copy, .acknowledgement, ChannelState.zeroID, "0")
        _ = try CustodianClient(socketPath: socket).sign(
            message: Array(ChannelMessages.creation(first, nonce: nonce).utf8))
        Self.advance(&copy, to: first)
        let rounds = Int(ProcessInfo.processInfo.environment["CUSTODIAN_CHANNEL_KILLS"] ?? "") ?? 12
        var early = 0
        for round in 1...rounds {
            let state = try Self.next(copy, .homeDeposit, channelID, "\(round)")
            let frame = Array(ChannelMessages.submit(state).utf8)
            let received = Collected<String>()
            let done = DispatchSemaphore(value: 0)
            Thread.detachNewThread {
                if let result = try? CustodianClient(socketPath: socket, timeoutSeconds: 5).sign(message: frame) {
                    received.append(result.signature)
                }
                done.signal()
            }
            Thread.sleep(forTimeInterval: Double.random(in: round % 2 == 0 ? 0...0.002 : 0.004...0.02))
            kill(agent.process.processIdentifier, SIGKILL)
            agent.process.waitUntilExit()
            agent = try setup.start("agent\(round)")
            #expect(done.wait(timeout: .now() + 10) == .success)
            let again = try CustodianClient(socketPath: socket).sign(message: frame)
            if let got = received.all.first {
                early += 1
                #expect(got == again.signature, "round \(round): the signature that left before the kill")
            }
            let other = try Self.next(copy, .homeDeposit, channelID, "\(round + 1000)")
            do {
                _ = try CustodianClient(socketPath: socket).sign(message: Array(ChannelMessages.submit(other).utf8))
                Issue.record("round \(round): a second message at version \(state.version) was signed")
            } catch {
                #expect(Self.reason(error) == "policy.version_conflict", "\(error)")
            }
            Self.advance(&copy, to: state)
        }
        #expect(agent.stop() == 0)
        let verify = try Harness.custodian(["audit", "verify", stateDir, "--address", Messages.a])
        #expect(verify.status == 0, "\(verify.stderr)")
        // One message per (channel, version) in the whole log.
        var hashes: [String: Set<String>] = [:]
        for record in try EndToEndTests.auditRecords(stateDir)
        where record["channel_id"] as? String == channelID && record["decision"] as? String == "allow" {
            let frame = try #require(record["req"] as? String)
            let version = try #require(frame.range(of: #""version":""#)).upperBound
            let key = String(frame[version...].prefix { $0 != "\"" })
            hashes[key, default: []].insert(try #require(record["request_hash"] as? String))
        }
        #expect(hashes.count == rounds + 1 && hashes.values.allSatisfy { $0.count == 1 }, "\(hashes)")
        print("channel crash loop: \(rounds) SIGKILLs, \(early) signatures received before the kill")
    }
}
