import CustodianCore
import CustodianCrypto
import CustodianTestSupport
import Foundation
import Testing

/// PROTOCOL-v1-channels §7.3 (a node-issued state as a new base) and §7.7 (a commit paired with the deposit it funds),
/// on the vectors' channel and session: A's channel after the commit of 100 (version 3), and the two-party v1 session
/// the commit funds.
@Suite("v1 channel rules: node-issued bases, commit pairing")
struct ChannelRulesTests {
    static let folder = "v1-channels"
    static let a = "0xFdEc8F58fA4b3bf07DD11eAF4c562Ee674e2C638"
    /// Key B stands in for the node here (the rule compares the signer with the pinned node, whoever it is).
    static let nodeKey = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"

    /// A's copy after the commit of v3: 25 left, 100 committed.
    static func afterCommit() throws -> (ChannelCopy, ChannelStateWire) {
        let vector = try VectorFiles.load(Self.folder, "commit_to_app_session_v3.json")
        let state = try #require(vector["state"] as? [String: Any])
        let commit = try ChannelStateReader().readState(Array(try JSONSerialization.data(withJSONObject: state))).get()
        let copy = ChannelCopy(
            channelID: try #require(commit.homeChannelID), user: commit.userWallet, asset: commit.asset, decimals: 6,
            epoch: commit.epoch, version: commit.version, ledger: commit.homeLedger)
        return (copy, commit)
    }

    /// A release of `credit` to A from the session, as the node would issue it at `version`, and the node's
    /// signature over its message recovered (nil when `signed` is false).
    static func release(
        after copy: ChannelCopy, credit: String, version: UInt64? = nil, userNetFlow: Amount? = nil,
        key: String = nodeKey
    ) throws -> (ChannelStateWire, Address?) {
        let amount = try #require(Amount(signed: credit))
        let next = version ?? copy.version + 1
        var ledger = copy.ledger
        ledger.userBalance = ledger.userBalance + amount
        ledger.nodeNetFlow = ledger.nodeNetFlow + amount
        if let userNetFlow { ledger.userNetFlow = userNetFlow }
        let id = Hex.encode(
            ChannelState.stateID(user: copy.user, asset: copy.asset, epoch: copy.epoch, version: next), prefixed: true)
        let session = "0xad01a19bf0d985fb39a902d0ca3ea6943f7c0349214054516bd0c112ab690fde"
        let transaction = Hex.encode(
            ChannelState.transactionID(accountID: session, stateID: Hex.decode(id.dropFirst(2)) ?? []), prefixed: true)
        let state = ChannelStateWire(
            id: id,
            transition: ChannelStateWire.Transition(
                type: ChannelTransition.release.rawValue, transactionID: transaction, accountID: session,
                amount: amount.isNegative ? Amount.zero - amount : amount),
            asset: copy.asset, userWallet: copy.user, epoch: copy.epoch, version: next,
            homeChannelID: copy.channelID, homeLedger: ledger, userSig: nil, nodeSig: nil)
        let message = try #require(ChannelState.message(of: state, decimals: 6))
        let digest = ChannelState.eip191Digest(message)
        let signature = try signingKey(hex: key).sign(digest: digest)
        return (state, Recovery.address(digest: digest, signature: signature))
    }

    @Test(
        "a release signed by the node is a new base; one that shrinks the balance, or is unsigned, or moves the net flow, is not"
    )
    func nodeIssuedBase() throws {
        let (copy, _) = try Self.afterCommit()
        let node = try #require(Address(eip55: "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"))
        let (release, signer) = try Self.release(after: copy, credit: "100")
        #expect(ChannelState.nodeIssuedBase(release, after: copy, nodeSigner: signer, node: node) == nil)
        // A gap in versions is allowed (receives the signer never saw are covered by the ledger it checks).
        let (later, laterSigner) = try Self.release(after: copy, credit: "100", version: copy.version + 3)
        #expect(ChannelState.nodeIssuedBase(later, after: copy, nodeSigner: laterSigner, node: node) == nil)

        func refused(_ state: ChannelStateWire, _ signer: Address?, _ words: String) {
            let denial = ChannelState.nodeIssuedBase(state, after: copy, nodeSigner: signer, node: node)
            #expect(denial?.reason == .channelBaseRejected, "\(words)")
            #expect(denial?.detail.contains(words) == true, "\(denial?.detail ?? "accepted"): \(words)")
        }
        // A base that shrinks this wallet's balance: the node takes 5 and says it released.
        var (shrinks, shrinksSigner) = try Self.release(after: copy, credit: "-5")
        shrinks.transition.amount = try #require(Amount("5"))
        refused(shrinks, shrinksSigner, "takes 5 from this wallet's balance")
        refused(release, nil, "not signed by the node")
        let (byOther, otherSigner) = try Self.release(
            after: copy, credit: "100", key: "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01ac362b318")
        refused(byOther, otherSigner, "not signed by the node")
        let (moved, movedSigner) = try Self.release(
            after: copy, credit: "100", userNetFlow: Amount(signed: "250"))
        refused(moved, movedSigner, "moves the user's net flow")
        let (same, sameSigner) = try Self.release(after: copy, credit: "100", version: copy.version)
        refused(same, sameSigner, "is not above the base's")
        var transfer = release
        transfer.transition.type = ChannelTransition.transferSend.rawValue
        refused(transfer, signer, "not one the node issues alone")
        var overstated = release
        overstated.transition.amount = try #require(Amount("90"))
        refused(overstated, signer, "its transition says 90, its ledger credits 100")
    }

    /// The v1 session of create_two_party.json (A and B, weight 1 each, quorum 2) as A's ledger holds it once
    /// created.
    static func session() throws -> SessionRecord {
        let vector = try VectorFiles.load("v1", "create_two_party.json")
        let create = try NitroliteV1Reader().read(Array(try #require(vector["frame_text"] as? String).utf8)).get()
        let agent = try #require(Address(eip55: a))
        var ledger = LedgerState()
        let effect = try #require(Policy.replay(create, state: ledger, agent: agent))
        ledger.apply(effect, atMs: 1_767_225_600_000)
        return try #require(ledger.session("0xad01a19bf0d985fb39a902d0ca3ea6943f7c0349214054516bd0c112ab690fde"))
    }

    static func deposit(_ allocations: [(String, String)]) throws -> RequestBody {
        .submit(
            appSessionID: "0xad01a19bf0d985fb39a902d0ca3ea6943f7c0349214054516bd0c112ab690fde", intent: .deposit,
            version: 2,
            allocations: try allocations.map { participant, amount in
                Allocation(
                    participant: try #require(Address(eip55: participant)), asset: ExactString("usdc"),
                    amount: try #require(Amount(amount)))
            }, sessionData: "")
    }

    @Test("the vector's commit is paired with its deposit; a deposit crediting B, or the wrong amount, is not")
    func commitPairing() throws {
        let (_, commit) = try Self.afterCommit()
        let session = try Self.session()
        let agent = try #require(Address(eip55: Self.a))
        let vector = try VectorFiles.load(Self.folder, "commit_to_app_session_v3.json")
        let paired = try #require(vector["paired_app_state_update"] as? [String: Any])
        let update = try #require(paired["app_state_update"] as? [String: Any])
        let allocations = try #require(update["allocations"] as? [[String: String]])
        let body = try Self.deposit(allocations.map { ($0["participant"] ?? "", $0["amount"] ?? "") })
        #expect(ChannelState.commitPairing(commit, update: body, session: session, agent: agent) == nil)

        func refused(_ body: RequestBody, _ words: String, session: SessionRecord? = nil) throws {
            let denial = ChannelState.commitPairing(
                commit, update: body, session: try session ?? Self.session(), agent: agent)
            #expect(denial?.reason == .commitUnpaired, "\(words)")
            #expect(denial?.detail.contains(words) == true, "\(denial?.detail ?? "paired"): \(words)")
        }
        let b = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
        try refused(try Self.deposit([(b, "100")]), "changes another allocation")
        try refused(try Self.deposit([(Self.a, "100"), (b, "1")]), "changes another allocation")
        try refused(try Self.deposit([(Self.a, "99")]), "grows by 99, the commit is 100")
        var elsewhere = commit
        elsewhere.transition.accountID = "0x" + String(repeating: "cd", count: 32)
        #expect(
            ChannelState.commitPairing(elsewhere, update: body, session: session, agent: agent)?.reason
                == .commitUnpaired)
        // A session B alone can operate (A's weight not needed): the commit could be paired with anything B signs.
        var withoutA = session
        withoutA.definition.weights = [1, 2]
        try refused(body, "can be operated without this key's signature", session: withoutA)
    }
}
