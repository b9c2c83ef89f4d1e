/// The two judgements on v1 channel states that are not a transition the signer builds (PROTOCOL-v1-channels §7):
/// whether a state the node issued may become the signer's new base (§7.3), and whether a commit is paired with
/// the app deposit update it funds so that nobody else can be credited with it (§7.7). Pure: the caller recovers
/// signatures and looks up the session.
extension ChannelState {
    /// Whether `observed`, a state the node issued (a transfer received, a release from an app session), may become
    /// the base after `current`, the signer's copy (nil: it may). Only credits happen without the user: same
    /// channel, wallet, asset, epoch, token and chain; a higher version; the user's net flow and the node's balance
    /// unchanged; the user's balance and the node's net flow grown by one amount, not negative; the state id the
    /// values give; and a node signature (`nodeSigner`, recovered by the caller from `node_sig` over the state's
    /// message) by the pinned node. Anything else means the node lies or the signer missed a state.
    public static func nodeIssuedBase(
        _ observed: ChannelStateWire, after current: ChannelCopy, nodeSigner: Address?, node: Address
    ) -> Denial? {
        func refuse(_ why: String, _ figures: KeyValuePairs<String, String> = [:]) -> Denial {
            Denial(.channelBaseRejected, "the node's state is not a base custodian accepts: \(why)", figures: figures)
        }
        guard let transition = ChannelTransition(rawValue: observed.transition.type), transition.isNodeIssued else {
            return refuse(
                "transition \(observed.transition.type) is not one the node issues alone (transfer_receive, release)")
        }
        guard observed.homeChannelID == current.channelID, observed.userWallet == current.user,
            observed.asset == current.asset, observed.epoch == current.epoch
        else { return refuse("another channel, wallet, asset or epoch") }
        let before = current.ledger
        let after = observed.homeLedger
        guard after.token == before.token, after.chainID == before.chainID else {
            return refuse("another token or chain")
        }
        guard observed.version > current.version else {
            return refuse(
                "version \(observed.version) is not above the base's", ["base": "\(current.version)"])
        }
        let expectedID = Hex.encode(
            stateID(user: current.user, asset: current.asset, epoch: current.epoch, version: observed.version),
            prefixed: true)
        guard observed.id == expectedID else { return refuse("its id is not the one its values give") }
        guard after.userNetFlow == before.userNetFlow, after.nodeBalance == before.nodeBalance else {
            return refuse("it moves the user's net flow or the node's balance, which only the user's states move")
        }
        let credit = after.userBalance - before.userBalance
        guard after.nodeNetFlow - before.nodeNetFlow == credit else {
            return refuse("the user's balance and the node's net flow moved by different amounts")
        }
        guard !credit.isNegative else {
            return refuse(
                "it takes \(Amount.zero - credit) from this wallet's balance",
                ["balance": "\(before.userBalance)", "observed": "\(after.userBalance)"])
        }
        guard observed.transition.amount == credit else {
            return refuse("its transition says \(observed.transition.amount), its ledger credits \(credit)")
        }
        guard let nodeSigner, nodeSigner == node else {
            return refuse("it is not signed by the node \(node) (a valid low-S signature over its message)")
        }
        return nil
    }

    /// Whether `commit` (a user state of a `submit_deposit_state` frame) funds exactly `update` (the app deposit
    /// update in the same frame) and nothing else can be paired with it (nil: it does): the commit names the
    /// session as its account, the session needs this key's quorum signature (the others' weights stay below the
    /// quorum), and the update's only increase over the session's current allocations is this key's, in the
    /// commit's asset, by exactly the committed amount.
    public static func commitPairing(
        _ commit: ChannelStateWire, update: RequestBody, session: SessionRecord, agent: Address
    ) -> Denial? {
        func refuse(_ why: String, _ figures: KeyValuePairs<String, String> = [:]) -> Denial {
            Denial(.commitUnpaired, "the commit is not paired with the deposit it funds: \(why)", figures: figures)
        }
        guard commit.transition.type == ChannelTransition.commit.rawValue else {
            return refuse("a deposit's user_state must be a commit (type 40)")
        }
        guard case .submit(let id, .deposit, _, let allocations, _) = update else {
            return refuse("the update is not an app deposit")
        }
        guard commit.transition.accountID == id, session.appSessionID == id else {
            return refuse("the commit's account_id is not the update's app_session_id")
        }
        guard commit.userWallet == agent else { return refuse("the commit is not this wallet's") }
        let definition = session.definition
        var others: UInt64 = 0
        var participates = false
        for (participant, weight) in zip(definition.participants, definition.weights) {
            if participant == agent {
                participates = true
            } else {
                others += UInt64(clamping: weight)
            }
        }
        guard participates, others < definition.quorum else {
            return refuse(
                "the session can be operated without this key's signature, so the commit could be paired with a "
                    + "deposit crediting someone else",
                ["others_weight": "\(others)", "quorum": "\(definition.quorum)"])
        }
        var before: [String: Amount] = [:]
        for allocation in session.allocations {
            before[allocation.participant.checksummed + " " + allocation.asset.value, default: .zero] =
                before[allocation.participant.checksummed + " " + allocation.asset.value, default: .zero]
                + allocation.amount
        }
        var afterByKey: [String: Amount] = [:]
        for allocation in allocations {
            afterByKey[allocation.participant.checksummed + " " + allocation.asset.value, default: .zero] =
                afterByKey[allocation.participant.checksummed + " " + allocation.asset.value, default: .zero]
                + allocation.amount
        }
        let own = agent.checksummed + " " + commit.asset
        for key in Set(before.keys).union(afterByKey.keys) {
            let change = afterByKey[key, default: .zero] - before[key, default: .zero]
            if key == own {
                guard change == commit.transition.amount else {
                    return refuse(
                        "this key's allocation grows by \(change), the commit is \(commit.transition.amount)",
                        ["increase": "\(change)", "commit": "\(commit.transition.amount)"])
                }
            } else if !change.isZero {
                return refuse(
                    "the deposit changes another allocation (\(key)) by \(change): only this key's may grow, by the "
                        + "committed amount")
            }
        }
        if afterByKey[own] == nil {
            return refuse("the deposit does not credit this key in \(commit.asset)")
        }
        return nil
    }
}
