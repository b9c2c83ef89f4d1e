import CustodianCore
import CustodianTestSupport
import Foundation
import Testing

/// A home channel's life through ChannelLedger's decisions: created with a deposit, transfers within the policy,
/// a withdrawal, a release the node issued, an acknowledgement, a finalize, a new channel; retries signed again,
/// a second message at a signed version refused, and every refusal the issue lists at this layer.
@Suite("v1 channel ledger")
struct ChannelLedgerTests {
    static let a = "0xFdEc8F58fA4b3bf07DD11eAF4c562Ee674e2C638"
    static let b = "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266"
    static let session = "0xad01a19bf0d985fb39a902d0ca3ea6943f7c0349214054516bd0c112ab690fde"

    struct Run {
        var ledger = ChannelLedger()
        let policy: ChannelPolicy
        let agent: Address
        var now: UInt64 = 1_767_225_600_000

        func decide(_ frame: ChannelFrame) -> ChannelDecision {
            ledger.decide(frame, policy: policy, agent: agent, nowMs: now, windowSeconds: 86_400)
        }

        /// Signs `frame` (it must be signed) and applies it; returns the message.
        @discardableResult
        mutating func sign(_ frame: ChannelFrame, _ what: String) throws -> [UInt8] {
            guard case .sign(let message, let effect) = decide(frame) else {
                throw VectorError("\(what) was not signed: \(decide(frame))")
            }
            ledger.apply(effect)
            now += 1_000
            return message
        }

        /// The node's answer `state`, its signature recovered to `signer`.
        func observe(_ state: ChannelStateWire, by signer: Address) -> ChannelLedger.Observation {
            let decimals = state.homeChannelID.flatMap { ledger.channels[$0]?.copy.decimals } ?? 6
            return ledger.observe(
                state, message: ChannelState.message(of: state, decimals: decimals), nodeSigner: signer, policy: policy)
        }

        func refusal(_ frame: ChannelFrame) -> Denial? {
            if case .refuse(let denial) = decide(frame) { return denial }
            return nil
        }
    }

    static func start() throws -> (Run, ChannelCopy, ChannelDefinitionWire) {
        let policy = try ChannelPolicyTests.policy()
        let agent = try #require(Address(eip55: a))
        let definition = ChannelDefinitionWire(
            nonce: 1_752_580_000_000_000_000, challengeSeconds: 86_400, validatorsText: "0x01", validators: 1)
        let void = try policy.creationBase(
            state: try Self.stub(policy, agent, definition), definition: definition, agent: agent, epoch: 0
        ).get()
        return (Run(policy: policy, agent: agent), void, definition)
    }

    /// A state naming only what creationBase reads (asset, wallet, channel id).
    static func stub(_ policy: ChannelPolicy, _ agent: Address, _ definition: ChannelDefinitionWire) throws
        -> ChannelStateWire
    {
        let id = Hex.encode(
            ChannelState.homeChannelID(
                challengeSeconds: definition.challengeSeconds, user: agent, node: policy.node, nonce: definition.nonce,
                validators: definition.validators, asset: "usdc"),
            prefixed: true)
        return ChannelStateWire(
            id: "", transition: ChannelStateWire.Transition(type: 10, transactionID: "", accountID: id, amount: .zero),
            asset: "usdc", userWallet: agent, epoch: 0, version: 1, homeChannelID: id,
            homeLedger: ChannelStateWire.HomeLedger(
                token: agent, chainID: 0, userBalance: .zero, userNetFlow: .zero, nodeBalance: .zero,
                nodeNetFlow: .zero),
            userSig: nil, nodeSig: nil)
    }

    /// The state a client would send: the one the transition gives from `base`.
    static func state(_ base: ChannelCopy, _ transition: ChannelTransition, _ account: String, _ amount: String)
        throws -> ChannelStateWire
    {
        try ChannelState.next(after: base, transition, accountID: account, amount: try #require(Amount(amount))).get()
    }

    @Test("create, transfer, withdraw, release, acknowledge, finalize, create again; retries and conflicts")
    func life() throws {
        var (run, void, definition) = try Self.start()
        let channel = void.channelID
        // Created with a deposit of 150.
        let deposit = try Self.state(void, .homeDeposit, channel, "150")
        let created = try run.sign(.requestCreation(deposit, definition), "the creation")
        guard case .retry(let again) = run.decide(.requestCreation(deposit, definition)) else {
            Issue.record("the identical creation asked again was not a retry")
            return
        }
        #expect(again == created)
        let other = try Self.state(void, .homeDeposit, channel, "151")
        #expect(run.refusal(.requestCreation(other, definition))?.reason == .versionConflict)
        var otherNonce = definition
        otherNonce.nonce += 1
        let second = try run.policy.creationBase(
            state: try Self.stub(run.policy, run.agent, otherNonce), definition: otherNonce, agent: run.agent, epoch: 0
        ).get()
        let secondDeposit = try Self.state(second, .homeDeposit, second.channelID, "1")
        #expect(run.refusal(.requestCreation(secondDeposit, otherNonce))?.reason == .sessionExists)

        var base = try #require(run.ledger.channels[channel]).copy
        #expect(base.version == 1 && "\(base.ledger.userBalance)" == "150")
        // Transfers: 25 and 30 to B (max_transfer 30, max_outflow 60); a stranger, then the window.
        let first = try Self.state(base, .transferSend, Self.b, "25")
        try run.sign(.submitState(first), "a transfer of 25")
        guard case .retry = run.decide(.submitState(first)) else {
            Issue.record("the transfer asked again was not a retry")
            return
        }
        let conflicting = try Self.state(base, .transferSend, Self.b, "24")
        #expect(run.refusal(.submitState(conflicting))?.reason == .versionConflict, "a second message at version 2")
        base = try #require(run.ledger.channels[channel]).copy
        let stranger = "0x70997970c51812dc3a010c7d01b50e0d17dc79c8"
        #expect(
            run.refusal(.submitState(try Self.state(base, .transferSend, stranger, "5")))?.reason
                == .counterpartyNotAllowed)
        try run.sign(.submitState(try Self.state(base, .transferSend, Self.b, "30")), "a transfer of 30")
        base = try #require(run.ledger.channels[channel]).copy
        #expect(
            run.refusal(.submitState(try Self.state(base, .transferSend, Self.b, "10")))?.reason == .velocityExceeded)
        #expect(run.ledger.outflows.map(\.amount.description) == ["25", "30"])
        // A ledger that takes more than the transfer says.
        var overstated = try Self.state(base, .transferSend, Self.b, "5")
        overstated.homeLedger.userBalance = overstated.homeLedger.userBalance - (try #require(Amount("10")))
        #expect(run.refusal(.submitState(overstated))?.reason == .ledgerMismatch)
        // A commit only inside the deposit it funds; an acknowledgement only after a node-issued state.
        #expect(run.refusal(.submitState(try Self.state(base, .commit, Self.session, "10")))?.reason == .commitUnpaired)
        #expect(
            run.refusal(.submitState(try Self.state(base, .acknowledgement, ChannelState.zeroID, "0")))?.reason
                == .payloadMalformed)
        // A withdrawal of 50: 45 left.
        try run.sign(.submitState(try Self.state(base, .homeWithdrawal, channel, "50")), "a withdrawal")
        base = try #require(run.ledger.channels[channel]).copy
        #expect("\(base.ledger.userBalance)" == "45" && base.version == 4)

        // The node answers with the withdrawal co-signed; then issues a release of 20 from an app session.
        let withdrawn = try #require(run.ledger.channels[channel])
        let cosigned = try Self.issued(withdrawn.copy, version: 4, credit: "0", type: .homeWithdrawal, amount: "50")
        guard case .cosigned(let seen) = run.observe(cosigned, by: run.policy.node) else {
            throw VectorError("the co-signed withdrawal was not taken: \(run.observe(cosigned, by: run.policy.node))")
        }
        #expect(seen.coSigned && !seen.nodeIssuedBase)
        run.ledger.accept(seen)
        #expect(run.observe(cosigned, by: run.policy.node) == .known(seen))
        let release = try Self.issued(base, version: 5, credit: "20", type: .release, amount: "20")
        // Signed by someone else: refused, and nothing stops (it proves nothing about the node).
        guard case .refused(let stranger, let strangerHalt) = run.observe(release, by: run.agent) else {
            throw VectorError("a release signed by another key was taken")
        }
        #expect(stranger.reason == .channelBaseRejected && strangerHalt == nil)
        // Signed by the node, shrinking the balance: refused, and signing on the channel would stop.
        let shrinking = try Self.issued(base, version: 5, credit: "-5", type: .release, amount: "5")
        guard case .refused(let shrinks, let halt) = run.observe(shrinking, by: run.policy.node) else {
            throw VectorError("a shrinking release was taken")
        }
        #expect(shrinks.reason == .channelBaseRejected)
        #expect(halt?.halted?.contains("takes 5") == true)
        if let halt {
            var halted = run
            halted.ledger.accept(halt)
            let refusal = halted.refusal(.submitState(try Self.state(base, .homeDeposit, channel, "1")))
            #expect(refusal?.reason == .channelBaseRejected && refusal?.detail.contains("stopped") == true)
        }
        guard case .newBase(let accepted) = run.observe(release, by: run.policy.node) else {
            throw VectorError("the release was not taken: \(run.observe(release, by: run.policy.node))")
        }
        #expect(accepted.nodeIssuedBase && "\(accepted.copy.ledger.userBalance)" == "65" && accepted.copy.version == 5)
        run.ledger.accept(accepted)
        #expect(run.observe(release, by: run.policy.node) == .known(accepted))
        #expect(run.observe(cosigned, by: run.policy.node).isRefusal)
        base = accepted.copy
        // Nothing can be signed at the version the node issued: it is spent.
        #expect(
            run.refusal(.submitState(try Self.state(withdrawn.copy, .homeDeposit, channel, "1")))?.reason
                == .versionConflict)
        try run.sign(
            .submitState(try Self.state(base, .acknowledgement, ChannelState.zeroID, "0")), "the acknowledgement")
        base = try #require(run.ledger.channels[channel]).copy
        // Finalize: everything left comes back; the channel takes nothing more; a new one may be created.
        try run.sign(.submitState(try Self.state(base, .finalize, channel, "65")), "the finalize")
        let closed = try #require(run.ledger.channels[channel])
        #expect(closed.finalized && closed.copy.ledger.userBalance.isZero)
        #expect(
            run.refusal(.submitState(try Self.state(closed.copy, .homeDeposit, channel, "1")))?.reason == .sessionClosed
        )
        var next = try run.policy.creationBase(
            state: try Self.stub(run.policy, run.agent, otherNonce), definition: otherNonce, agent: run.agent, epoch: 1
        ).get()
        next.epoch = 1
        try run.sign(
            .requestCreation(try Self.state(next, .homeDeposit, next.channelID, "10"), otherNonce), "a new channel")
        #expect(run.ledger.home(asset: "usdc")?.copy.channelID == next.channelID)

        // Session keys, and a policy without [channels], are refused.
        let key = ChannelSessionKeyWire(
            user: run.agent, sessionKey: run.agent, version: 1, assets: ["usdc"], expiresAt: 1_798_761_600)
        #expect(run.refusal(.submitSessionKeyState(key))?.reason == .payloadMethodNotAllowed)
        let none = run.ledger.decide(
            .submitState(try Self.state(base, .homeDeposit, channel, "1")), policy: nil, agent: run.agent, nowMs: 0,
            windowSeconds: 1)
        guard case .refuse(let denial) = none, denial.reason == .payloadMethodNotAllowed else {
            Issue.record("a policy without [channels] signed a channel state")
            return
        }
    }

    @Test("a channel at the last version takes nothing more, without a trap")
    func lastVersion() throws {
        var (run, void, _) = try Self.start()
        var copy = void
        copy.version = UInt64.max - 1
        let last = try Self.state(copy, .homeDeposit, copy.channelID, "1")
        #expect(last.version == UInt64.max)
        copy.version = UInt64.max
        run.ledger.accept(ChannelEntry(copy: copy, lastSigned: nil, nodeIssuedBase: false, coSigned: true))
        #expect(run.refusal(.submitState(last))?.reason == .versionConflict)
        var beyond = last
        beyond.version = 0
        #expect(run.refusal(.submitState(beyond))?.reason == .versionConflict)
        #expect(
            ChannelState.next(after: copy, .homeDeposit, accountID: copy.channelID, amount: try #require(Amount("1")))
                .failureReason == .payloadMalformed)
    }

    /// A state the node issues after `base`: `credit` to the user's balance and the node's net flow.
    static func issued(
        _ base: ChannelCopy, version: UInt64, credit: String, type: ChannelTransition, amount: String
    ) throws -> ChannelStateWire {
        let credited = try #require(Amount(signed: credit))
        var ledger = base.ledger
        ledger.userBalance = ledger.userBalance + credited
        ledger.nodeNetFlow = ledger.nodeNetFlow + credited
        var state = try ChannelState.next(
            after: ChannelCopy(
                channelID: base.channelID, user: base.user, asset: base.asset, decimals: base.decimals,
                epoch: base.epoch, version: version - 1, ledger: base.ledger),
            .homeDeposit, accountID: base.channelID, amount: try #require(Amount("1"))
        ).get()
        state.transition.type = type.rawValue
        state.transition.amount = try #require(Amount(amount))
        if type != .homeWithdrawal { state.homeLedger = ledger } else { state.homeLedger = base.ledger }
        return state
    }
}

extension ChannelLedger.Observation {
    var isRefusal: Bool {
        if case .refused = self { return true }
        return false
    }
}

/// The agent's ledger keeps channels beside app sessions: undone with the rest when a write fails, and carried by
/// snapshots (v5), field for field.
@Suite("v1 channels in the agent's ledger")
struct ChannelLedgerStateTests {
    /// A ledger with a channel signed to version 3 (a deposit, a transfer counted as outflow), then seen co-signed,
    /// then stopped; and one released by the node.
    static func walked() throws -> LedgerState {
        var (run, void, definition) = try ChannelLedgerTests.start()
        var state = LedgerState()
        var base = void
        for (index, (transition, account, amount)) in [
            (ChannelTransition.homeDeposit, void.channelID, "100"), (.transferSend, ChannelLedgerTests.b, "25"),
        ].enumerated() {
            let sent = try ChannelLedgerTests.state(base, transition, account, amount)
            let frame: ChannelFrame = index == 0 ? .requestCreation(sent, definition) : .submitState(sent)
            guard case .sign(_, let effect) = run.decide(frame) else { throw VectorError("not signed: \(frame)") }
            state.apply(channel: effect)
            run.ledger = state.channels
            base = try #require(state.channels.channels[void.channelID]).copy
        }
        var entry = try #require(state.channels.channels[void.channelID])
        entry.coSigned = true
        entry.coSignedMessage = [UInt8](repeating: 7, count: 640)
        entry.halted = "the node signed a state that is not a base"
        state.accept(channel: entry)
        return state
    }

    @Test("a snapshot carries every channel and outflow; a v4 snapshot still decodes, with none")
    func snapshot() throws {
        let state = try Self.walked()
        #expect(state.channels.channels.count == 1 && state.channels.outflows.count == 1)
        let bytes = state.encodeSnapshot(seq: 42)
        let decoded = try #require(LedgerState.decodeSnapshot(bytes))
        #expect(decoded.seq == 42)
        #expect(decoded.state.channels == state.channels)
        let entry = try #require(decoded.state.channels.channels.values.first)
        #expect(entry.halted != nil && entry.coSignedMessage?.count == 640 && entry.lastSigned?.version == 2)
        #expect("\(entry.copy.ledger.nodeNetFlow)" == "-25")
        // Cut anywhere in the channel section: refused.
        #expect(LedgerState.decodeSnapshot(Array(bytes.dropLast(3))) == nil)
        // The previous layout (no channel section) decodes to a ledger with no channels.
        var older = Array("custodian ledger snapshot v4\n".utf8)
        older.append(contentsOf: LedgerState().encodeSnapshot(seq: 9).dropFirst(older.count).dropLast(2))
        let v4 = try #require(LedgerState.decodeSnapshot(older))
        #expect(v4.seq == 9 && v4.state.channels.channels.isEmpty)
    }

    @Test("a failed write undoes channel changes with the rest, newest first")
    func rollback() throws {
        var state = try Self.walked()
        state.startTracking()
        let durable = state.channels
        let id = try #require(durable.channels.keys.first)
        var resumed = try #require(durable.channels[id])
        resumed.halted = nil
        state.accept(channel: resumed)
        let mark = state.mark()
        var advanced = resumed
        advanced.copy.version += 1
        state.apply(
            channel: ChannelEffect(
                entry: advanced,
                outflow: ChannelPolicy.Outflow(timeMs: 5, asset: "usdc", amount: try #require(Amount("1")))))
        #expect(state.channels.outflows.count == 2)
        state.forget(through: mark)
        state.rollbackPending()
        #expect(state.channels.channels[id] == resumed, "the resume was durable; the later state is undone")
        #expect(state.channels.outflows == durable.outflows)
    }
}
