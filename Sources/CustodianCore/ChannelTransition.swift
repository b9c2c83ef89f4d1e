/// The transitions of a home channel (PROTOCOL-v1-channels §1.2) and the state a user signs after a base state:
/// built from the signer's own copy and the requested transition, never taken from the caller (§7.1).
public enum ChannelTransition: UInt8, Sendable, CaseIterable {
    case acknowledgement = 1
    case homeDeposit = 10
    case homeWithdrawal = 11
    case transferSend = 30
    case transferReceive = 31
    case commit = 40
    case release = 41
    case finalize = 200

    /// The channel intent the contract reads (0 operate, 1 close, 2 deposit, 3 withdraw: not the app-session
    /// numbering).
    public var intent: UInt8 {
        switch self {
        case .homeDeposit: 2
        case .homeWithdrawal: 3
        case .finalize: 1
        default: 0
        }
    }

    /// Issued by the node alone (a receive, a release): never a transition the user signs.
    public var isNodeIssued: Bool { self == .transferReceive || self == .release }

    public var name: String {
        switch self {
        case .acknowledgement: "acknowledgement"
        case .homeDeposit: "home_deposit"
        case .homeWithdrawal: "home_withdrawal"
        case .transferSend: "transfer_send"
        case .transferReceive: "transfer_receive"
        case .commit: "commit"
        case .release: "release"
        case .finalize: "finalize"
        }
    }
}

/// A signer's copy of a home channel's latest state: what the next state is built from.
public struct ChannelCopy: Sendable, Equatable {
    /// `0x` + 64 lower-case hex digits.
    public var channelID: String
    public var user: Address
    public var asset: String
    /// The asset's decimals on the channel's chain (amounts have at most this many fractional digits).
    public var decimals: UInt8
    public var epoch: UInt64
    public var version: UInt64
    public var ledger: ChannelStateWire.HomeLedger

    public init(
        channelID: String, user: Address, asset: String, decimals: UInt8, epoch: UInt64, version: UInt64,
        ledger: ChannelStateWire.HomeLedger
    ) {
        self.channelID = channelID
        self.user = user
        self.asset = asset
        self.decimals = decimals
        self.epoch = epoch
        self.version = version
        self.ledger = ledger
    }
}

extension ChannelState {
    /// The zero id an acknowledgement names as its account and transaction (§1.2).
    public static let zeroID = "0x" + String(repeating: "0", count: 64)

    /// The state a user signs after `base` for `transition` of `amount` to `accountID` (§1.2's arithmetic): version
    /// + 1, the same epoch, channel, asset and token, the ids derived, the ledger moved. Refuses a transition the
    /// user never signs, an amount the transition does not take, and a ledger that would go below zero.
    public static func next(
        after base: ChannelCopy, _ transition: ChannelTransition, accountID: String, amount: Amount
    ) -> Result<ChannelStateWire, Denial> {
        guard !transition.isNodeIssued else {
            return .failure(
                Denial(.payloadMethodNotAllowed, "\(transition.name) is issued by the node; a user never signs one"))
        }
        guard base.version < UInt64.max else { return .failure(Denial(.payloadMalformed, "the version is at its end")) }
        if amount.isNegative || amount.fractionDigits > Int(base.decimals) {
            return .failure(
                Denial(
                    .precision, "\(amount) has more than the \(base.decimals) decimals \(base.asset) takes, or a sign"))
        }
        var ledger = base.ledger
        var amount = amount
        var account = accountID
        switch transition {
        case .acknowledgement:
            guard amount.isZero else { return .failure(Denial(.payloadMalformed, "an acknowledgement moves nothing")) }
            account = zeroID
        case .finalize:
            // Everything left goes back to the wallet; the amount is the balance, whatever it is.
            guard amount == ledger.userBalance else {
                return .failure(
                    Denial(
                        .payloadMalformed, "a finalize takes the whole balance",
                        figures: ["expected": "\(ledger.userBalance)", "got": "\(amount)"]))
            }
            amount = ledger.userBalance
            ledger.userNetFlow = ledger.userNetFlow - ledger.userBalance
            ledger.userBalance = .zero
        case .homeDeposit, .homeWithdrawal, .transferSend, .commit:
            guard !amount.isZero else {
                return .failure(Denial(.payloadMalformed, "\(transition.name) moves a positive amount"))
            }
            switch transition {
            case .homeDeposit:
                ledger.userBalance = ledger.userBalance + amount
                ledger.userNetFlow = ledger.userNetFlow + amount
            case .homeWithdrawal:
                ledger.userBalance = ledger.userBalance - amount
                ledger.userNetFlow = ledger.userNetFlow - amount
            default:
                ledger.userBalance = ledger.userBalance - amount
                ledger.nodeNetFlow = ledger.nodeNetFlow - amount
            }
            guard !ledger.userBalance.isNegative else {
                return .failure(
                    Denial(
                        .capExceeded, "\(transition.name) of \(amount) is more than the channel's balance",
                        figures: ["balance": "\(base.ledger.userBalance)", "amount": "\(amount)"]))
            }
        case .transferReceive, .release:
            return .failure(Denial(.payloadMethodNotAllowed, "node-issued"))
        }
        let version = base.version + 1
        let stateID = Hex.encode(
            stateID(user: base.user, asset: base.asset, epoch: base.epoch, version: version), prefixed: true)
        let transactionID =
            transition == .acknowledgement
            ? zeroID
            : Hex.encode(
                ChannelState.transactionID(accountID: account, stateID: Hex.decode(stateID.dropFirst(2)) ?? []),
                prefixed: true)
        return .success(
            ChannelStateWire(
                id: stateID,
                transition: ChannelStateWire.Transition(
                    type: transition.rawValue, transactionID: transactionID, accountID: account, amount: amount),
                asset: base.asset, userWallet: base.user, epoch: base.epoch, version: version,
                homeChannelID: base.channelID, homeLedger: ledger, userSig: nil, nodeSig: nil))
    }

    /// Where a state sent differs from the state built (nil: it does not): the first field that differs, compared
    /// as values (ids and hex as the exact lower-case text, amounts numerically).
    public static func difference(sent: ChannelStateWire, built: ChannelStateWire) -> Denial? {
        func mismatch(_ field: String, _ got: String, _ expected: String) -> Denial {
            Denial(
                .ledgerMismatch,
                "the state sent differs from the one custodian builds from its copy of the channel: \(field) is "
                    + "\(got), custodian's is \(expected)",
                figures: ["field": field, "got": got, "expected": expected])
        }
        let sentLedger = sent.homeLedger
        let builtLedger = built.homeLedger
        let pairs: [(String, String, String)] = [
            ("version", "\(sent.version)", "\(built.version)"),
            ("epoch", "\(sent.epoch)", "\(built.epoch)"),
            ("asset", sent.asset, built.asset),
            ("user_wallet", sent.userWallet.checksummed, built.userWallet.checksummed),
            ("home_channel_id", sent.homeChannelID ?? "(none)", built.homeChannelID ?? "(none)"),
            ("id", sent.id, built.id),
            ("transition.type", "\(sent.transition.type)", "\(built.transition.type)"),
            ("transition.account_id", sent.transition.accountID, built.transition.accountID),
            ("transition.tx_id", sent.transition.transactionID, built.transition.transactionID),
            ("transition.amount", "\(sent.transition.amount)", "\(built.transition.amount)"),
            ("home_ledger.token_address", sentLedger.token.checksummed, builtLedger.token.checksummed),
            ("home_ledger.blockchain_id", "\(sentLedger.chainID)", "\(builtLedger.chainID)"),
            ("home_ledger.user_balance", "\(sentLedger.userBalance)", "\(builtLedger.userBalance)"),
            ("home_ledger.user_net_flow", "\(sentLedger.userNetFlow)", "\(builtLedger.userNetFlow)"),
            ("home_ledger.node_balance", "\(sentLedger.nodeBalance)", "\(builtLedger.nodeBalance)"),
            ("home_ledger.node_net_flow", "\(sentLedger.nodeNetFlow)", "\(builtLedger.nodeNetFlow)"),
        ]
        for (field, got, expected) in pairs where got != expected { return mismatch(field, got, expected) }
        return nil
    }

    /// The 640-byte message of a state (§2), from its values: the ledger in token units of `decimals`, the
    /// transition hashed as nitronode hashes it. Nil if an amount does not fit the token's units or the ids are not
    /// hex.
    public static func message(of state: ChannelStateWire, decimals: UInt8) -> [UInt8]? {
        let wire = state.homeLedger
        guard let channel = state.homeChannelID.flatMap({ Hex.decode($0.dropFirst(2)) }), channel.count == 32,
            let transition = ChannelTransition(rawValue: state.transition.type),
            let home = Ledger(
                chainID: wire.chainID, token: wire.token, decimals: decimals, userBalance: wire.userBalance,
                userNetFlow: wire.userNetFlow, nodeBalance: wire.nodeBalance, nodeNetFlow: wire.nodeNetFlow)
        else { return nil }
        let hash = transitionHash(
            type: state.transition.type, transactionID: state.transition.transactionID,
            accountID: state.transition.accountID, amount: state.transition.amount)
        return message(
            channelID: channel, version: state.version, intent: transition.intent, transitionHash: hash, home: home)
    }
}
