import CustodianCore
import CustodianTestSupport
import Foundation
import Testing

/// The `[channels]` rules on A's usdc channel of the vectors (node N, Base, USDC): channel creation (node, challenge,
/// validator bitmap, id), and what leaves the wallet (recipients, per-transfer cap, outflow window), judged on states
/// built from the channel's copy.
@Suite("v1 channel policy")
struct ChannelPolicyTests {
    static let a = "0xFdEc8F58fA4b3bf07DD11eAF4c562Ee674e2C638"
    static let b = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
    static let node = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"
    static let usdc = "0x833589fcd6edb6e08f4c7c32d4f71b54bda02913"

    static func policy(maxTransfer: String? = "30", maxOutflow: String? = "60") throws -> ChannelPolicy {
        ChannelPolicy(
            node: try #require(Address(eip55: node)),
            assets: [
                "usdc": ChannelPolicy.Asset(
                    chainID: 8453, token: try #require(Address(anyCase: usdc)), decimals: 6,
                    maxTransfer: maxTransfer.flatMap { Amount($0) }, maxOutflow: maxOutflow.flatMap { Amount($0) })
            ],
            transferRecipients: [try #require(Address(eip55: b))])
    }

    /// The creation frame of deposit_create_channel_v1.json.
    static func creation() throws -> (ChannelStateWire, ChannelDefinitionWire) {
        let vector = try VectorFiles.load("v1-channels", "deposit_create_channel_v1.json")
        let frame = try #require(vector["frame_text"] as? String)
        let read = try ChannelStateReader().read(Array(frame.utf8)).get()
        guard case .requestCreation(let state, let definition) = read.frame else {
            throw VectorError("not a creation frame")
        }
        return (state, definition)
    }

    @Test("creation: the SDK's 0x03 bitmap refused; with 0x01 and the id recomputed, the base is the void state")
    func creation() throws {
        let (state, definition) = try Self.creation()
        let agent = try #require(Address(eip55: Self.a))
        let policy = try Self.policy()
        guard
            case .failure(let denial) = policy.creationBase(
                state: state, definition: definition, agent: agent, epoch: 0)
        else {
            Issue.record("a 0x03 bitmap (channel session keys enabled) was accepted")
            return
        }
        #expect(denial.reason == .definitionInvalid && denial.detail.contains("session keys"))
        var own = definition
        own.validatorsText = "0x01"
        own.validators = 1
        var renamed = state
        renamed.homeChannelID = Hex.encode(
            ChannelState.homeChannelID(
                challengeSeconds: 86_400, user: agent, node: try #require(Address(eip55: Self.node)),
                nonce: own.nonce, validators: 1, asset: "usdc"),
            prefixed: true)
        let base = try policy.creationBase(state: renamed, definition: own, agent: agent, epoch: 0).get()
        #expect(base.version == 0 && base.channelID == renamed.homeChannelID && base.ledger.userBalance.isZero)
        // The first state, the vector's deposit of 150, built on that base.
        let built = try ChannelState.next(
            after: base, .homeDeposit, accountID: try #require(renamed.homeChannelID), amount: state.transition.amount
        ).get()
        #expect("\(built.homeLedger.userBalance)" == "150")
        #expect(policy.judge(built, base: base, agent: agent, outflows: [], windowStartMs: 0) == nil)

        // Another node's channel id, a short challenge, another wallet, an asset the policy lacks.
        var otherNode = renamed
        otherNode.homeChannelID = state.homeChannelID
        #expect(
            policy.creationBase(state: otherNode, definition: own, agent: agent, epoch: 0).failureReason
                == .definitionInvalid)
        var short = own
        short.challengeSeconds = 3_600
        #expect(
            policy.creationBase(state: renamed, definition: short, agent: agent, epoch: 0).failureReason
                == .definitionInvalid)
        let other = try #require(Address(eip55: Self.b))
        #expect(
            policy.creationBase(state: renamed, definition: own, agent: other, epoch: 0).failureReason
                == .notParticipant)
        var eth = renamed
        eth.asset = "eth"
        #expect(
            policy.creationBase(state: eth, definition: own, agent: agent, epoch: 0).failureReason == .assetNotAllowed)
    }

    /// A's channel holding 150 at version 1.
    static func funded() throws -> ChannelCopy {
        ChannelCopy(
            channelID: "0x017f13816de5b43314eb79376aaa9d846e566cccb4a2ddacdf333549b9aca0c1",
            user: try #require(Address(eip55: a)), asset: "usdc", decimals: 6, epoch: 0, version: 1,
            ledger: ChannelStateWire.HomeLedger(
                token: try #require(Address(anyCase: usdc)), chainID: 8453, userBalance: try #require(Amount("150")),
                userNetFlow: try #require(Amount("150")), nodeBalance: .zero, nodeNetFlow: .zero))
    }

    static func judge(
        _ transition: ChannelTransition, to account: String, _ amount: String, outflows: [ChannelPolicy.Outflow] = [],
        policy: ChannelPolicy? = nil, agent: String = a
    ) throws -> Denial? {
        let base = try funded()
        let built = try ChannelState.next(
            after: base, transition, accountID: account, amount: try #require(Amount(amount))
        ).get()
        return (try policy ?? Self.policy()).judge(
            built, base: base, agent: try #require(Address(eip55: agent)), outflows: outflows, windowStartMs: 1_000)
    }

    @Test("transfers: to an allowed recipient within the caps; not to another, not over max_transfer or max_outflow")
    func transfers() throws {
        let recipient = Self.b.lowercased()
        #expect(try Self.judge(.transferSend, to: recipient, "25") == nil)
        #expect(try Self.judge(.transferSend, to: recipient, "30") == nil, "the cap itself is allowed")
        #expect(
            try Self.judge(.transferSend, to: "0x70997970c51812dc3a010c7d01b50e0d17dc79c8", "25")?.reason
                == .counterpartyNotAllowed)
        #expect(try Self.judge(.transferSend, to: recipient, "30.000001")?.reason == .capExceeded)
        // The window: 40 already out (a transfer and a commit); one before the window does not count.
        let out = [
            ChannelPolicy.Outflow(timeMs: 1_500, asset: "usdc", amount: try #require(Amount("15"))),
            ChannelPolicy.Outflow(timeMs: 2_000, asset: "usdc", amount: try #require(Amount("25"))),
            ChannelPolicy.Outflow(timeMs: 999, asset: "usdc", amount: try #require(Amount("100"))),
            ChannelPolicy.Outflow(timeMs: 2_000, asset: "eth", amount: try #require(Amount("100"))),
        ]
        #expect(try Self.judge(.transferSend, to: recipient, "20", outflows: out) == nil)
        let past = try Self.judge(.transferSend, to: recipient, "20.5", outflows: out)
        #expect(past?.reason == .velocityExceeded)
        #expect(past?.figures.map(\.value) == ["40", "20.5", "60"])
        // A commit counts in the same window and is not capped per transfer.
        let session = "0x" + String(repeating: "ab", count: 32)
        #expect(try Self.judge(.commit, to: session, "20", outflows: out) == nil)
        #expect(try Self.judge(.commit, to: session, "21", outflows: out)?.reason == .velocityExceeded)
        #expect(try Self.judge(.commit, to: session, "100", policy: try Self.policy(maxOutflow: nil)) == nil)
        // No recipients: no transfers.
        var closed = try Self.policy()
        closed.transferRecipients = []
        #expect(try Self.judge(.transferSend, to: recipient, "1", policy: closed)?.reason == .counterpartyNotAllowed)
    }

    @Test("withdrawals and finalize: this key's own channel on the pinned chain and token only")
    func withdrawals() throws {
        let channel = try Self.funded().channelID
        #expect(try Self.judge(.homeWithdrawal, to: channel, "100") == nil)
        #expect(try Self.judge(.finalize, to: channel, "150") == nil)
        // A channel whose wallet is another address: its withdrawal would pay that address.
        #expect(try Self.judge(.homeWithdrawal, to: channel, "100", agent: Self.b)?.reason == .notParticipant)
        var moved = try Self.policy()
        moved.assets["usdc"]?.chainID = 1
        #expect(try Self.judge(.homeWithdrawal, to: channel, "100", policy: moved)?.reason == .assetNotAllowed)
        moved = try Self.policy()
        moved.assets["usdc"]?.token = try #require(Address(anyCase: "0x" + String(repeating: "1", count: 40)))
        #expect(try Self.judge(.homeDeposit, to: channel, "1", policy: moved)?.reason == .assetNotAllowed)
    }
}

extension Result where Failure == Denial {
    var failureReason: ReasonCode? {
        if case .failure(let denial) = self { return denial.reason }
        return nil
    }
}
