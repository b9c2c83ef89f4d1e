import BigInt

/// The policy's `[channels]` section (CONTRACT §5): the node, the least challenge period, where each asset's home
/// channel lives, the caps on money leaving the wallet through transfers and commits, and who may receive a
/// transfer. Absent, every channel state is refused.
public struct ChannelPolicy: Sendable, Equatable {
    /// One asset's home channel: its chain, token and decimals are pinned; what may leave through transfers and
    /// commits is capped per transfer and per window.
    public struct Asset: Sendable, Equatable {
        public var chainID: UInt64
        public var token: Address
        public var decimals: UInt8
        /// Per `transfer_send`.
        public var maxTransfer: Amount?
        /// Transfers and commits within the `[velocity]` window.
        public var maxOutflow: Amount?

        public init(chainID: UInt64, token: Address, decimals: UInt8, maxTransfer: Amount?, maxOutflow: Amount?) {
            self.chainID = chainID
            self.token = token
            self.decimals = decimals
            self.maxTransfer = maxTransfer
            self.maxOutflow = maxOutflow
        }
    }

    /// The nitronode signing address: a channel must name it, and a node-issued state be signed by it.
    public var node: Address
    public var minChallengeSeconds: UInt32
    /// By symbol, case-sensitive.
    public var assets: [String: Asset]
    /// Who may receive a transfer (empty: nobody).
    public var transferRecipients: [Address]

    public init(
        node: Address, minChallengeSeconds: UInt32 = 86_400, assets: [String: Asset], transferRecipients: [Address]
    ) {
        self.node = node
        self.minChallengeSeconds = minChallengeSeconds
        self.assets = assets
        self.transferRecipients = transferRecipients
    }

    /// The only validator bitmap custodian accepts: the default ECDSA validator alone (PROTOCOL-v1-channels §7.6).
    /// A bitmap with bit 1 lets a channel session key sign for the wallet, which custodian refuses (§7.8).
    public static let defaultValidators = "0x01"

    /// Money that left the wallet through a transfer or a commit, counted in the window.
    public struct Outflow: Sendable, Equatable {
        public var timeMs: UInt64
        public var asset: String
        public var amount: Amount

        public init(timeMs: UInt64, asset: String, amount: Amount) {
            self.timeMs = timeMs
            self.asset = asset
            self.amount = amount
        }
    }

    /// The base a new home channel starts from (its void state), once its definition passes: the channel id
    /// recomputed with the pinned node, a challenge of at least `min_challenge_s`, the default validator alone, the
    /// asset's pinned chain and token, this key as the wallet. `epoch` is the wallet's next epoch for the asset (0
    /// for its first channel).
    public func creationBase(
        state: ChannelStateWire, definition: ChannelDefinitionWire, agent: Address, epoch: UInt64
    ) -> Result<ChannelCopy, Denial> {
        guard let asset = assets[state.asset] else {
            return .failure(Denial(.assetNotAllowed, "no home channel for \(state.asset) in the policy's [channels]"))
        }
        guard state.userWallet == agent else {
            return .failure(
                Denial(
                    .notParticipant,
                    "the channel's wallet is \(state.userWallet), not this key: its withdrawals would go there"))
        }
        guard definition.challengeSeconds >= minChallengeSeconds else {
            return .failure(
                Denial(
                    .definitionInvalid, "a challenge of \(definition.challengeSeconds) s is under the policy's least",
                    figures: ["challenge": "\(definition.challengeSeconds)", "min": "\(minChallengeSeconds)"]))
        }
        guard definition.validatorsText == Self.defaultValidators else {
            return .failure(
                Denial(
                    .definitionInvalid,
                    "approved_sig_validators \(definition.validatorsText): only 0x01 (this key's own signatures); "
                        + "custodian refuses channel session keys"))
        }
        let id = Hex.encode(
            ChannelState.homeChannelID(
                challengeSeconds: definition.challengeSeconds, user: agent, node: node, nonce: definition.nonce,
                validators: definition.validators, asset: state.asset),
            prefixed: true)
        guard state.homeChannelID == id else {
            return .failure(
                Denial(
                    .definitionInvalid,
                    "the home_channel_id is not the id of this definition with the node \(node): another node, or "
                        + "another definition"))
        }
        return .success(
            ChannelCopy(
                channelID: id, user: agent, asset: state.asset, decimals: asset.decimals, epoch: epoch, version: 0,
                ledger: ChannelStateWire.HomeLedger(
                    token: asset.token, chainID: asset.chainID, userBalance: .zero, userNetFlow: .zero,
                    nodeBalance: .zero, nodeNetFlow: .zero)))
    }

    /// Judges a state this key would sign, built from `base` (the transition's arithmetic already checked): the
    /// asset's chain and token pinned, this key's own channel, and for money that leaves (transfers, commits) the
    /// recipient allow-list (transfers), the per-transfer cap and the window's outflow cap, counting `outflows`
    /// (this key's earlier transfers and commits) since `windowStartMs`. Nil: allowed.
    public func judge(
        _ built: ChannelStateWire, base: ChannelCopy, agent: Address, outflows: [Outflow], windowStartMs: UInt64
    ) -> Denial? {
        guard let asset = assets[base.asset] else {
            return Denial(.assetNotAllowed, "no home channel for \(base.asset) in the policy's [channels]")
        }
        guard base.user == agent, built.userWallet == agent else {
            return Denial(
                .notParticipant, "the channel's wallet is \(base.user), not this key: its withdrawals would go there")
        }
        guard built.homeLedger.chainID == asset.chainID, built.homeLedger.token == asset.token else {
            return Denial(
                .assetNotAllowed,
                "\(base.asset) lives on chain \(asset.chainID) at \(asset.token) in the policy, not chain "
                    + "\(built.homeLedger.chainID) at \(built.homeLedger.token)")
        }
        guard let transition = ChannelTransition(rawValue: built.transition.type) else {
            return Denial(.payloadMethodNotAllowed, "transition \(built.transition.type) is not signed by custodian")
        }
        let amount = built.transition.amount
        switch transition {
        case .transferSend:
            guard let recipient = Address(anyCase: built.transition.accountID),
                transferRecipients.contains(recipient)
            else {
                return Denial(
                    .counterpartyNotAllowed,
                    "\(built.transition.accountID) is not among the policy's transfer recipients",
                    figures: ["recipient": built.transition.accountID])
            }
            if let cap = asset.maxTransfer, cap < amount {
                return Denial(
                    .capExceeded, "a transfer of \(amount) \(base.asset) is over the policy's max_transfer",
                    figures: ["amount": "\(amount)", "max_transfer": "\(cap)"])
            }
        case .commit, .homeDeposit, .homeWithdrawal, .finalize, .acknowledgement: break
        case .transferReceive, .release:
            return Denial(.payloadMethodNotAllowed, "\(transition.name) is issued by the node")
        }
        if transition == .transferSend || transition == .commit, let cap = asset.maxOutflow {
            let used = outflows.filter { $0.asset == base.asset && $0.timeMs >= windowStartMs }.map(\.amount).sum()
            if cap < used + amount {
                return Denial(
                    .velocityExceeded,
                    "\(transition.name) of \(amount) \(base.asset) would bring transfers and commits in the window to "
                        + "\(used + amount), over max_outflow",
                    figures: ["used": "\(used)", "amount": "\(amount)", "max_outflow": "\(cap)"])
            }
        }
        return nil
    }
}
