/// One home channel as this key knows it (PROTOCOL-v1-channels §7.4): the base the next state is built from, and
/// the message it signed last, so that the identical message asked again is signed again (RFC 6979: the same
/// signature) and any other message at that version is refused. A signed but unanswered state counts as spent: it
/// is the base at once.
public struct ChannelEntry: Sendable, Equatable {
    public var copy: ChannelCopy
    /// The version and Keccak-256 of the last message this key signed on the channel.
    public var lastSigned: (version: UInt64, hash: [UInt8])?
    /// The base came from the node alone (a receive, a release): only then may an acknowledgement be signed.
    public var nodeIssuedBase: Bool
    /// The node's signature was seen on the base (co-signed): the only state a challenge may be signed for.
    public var coSigned: Bool
    /// This key signed the channel's finalize: nothing more on it; a new channel for the asset may follow.
    public var finalized: Bool

    public init(
        copy: ChannelCopy, lastSigned: (version: UInt64, hash: [UInt8])?, nodeIssuedBase: Bool, coSigned: Bool,
        finalized: Bool = false
    ) {
        self.copy = copy
        self.lastSigned = lastSigned
        self.nodeIssuedBase = nodeIssuedBase
        self.coSigned = coSigned
        self.finalized = finalized
    }

    public static func == (lhs: ChannelEntry, rhs: ChannelEntry) -> Bool {
        lhs.copy == rhs.copy && lhs.lastSigned?.version == rhs.lastSigned?.version
            && lhs.lastSigned?.hash == rhs.lastSigned?.hash && lhs.nodeIssuedBase == rhs.nodeIssuedBase
            && lhs.coSigned == rhs.coSigned && lhs.finalized == rhs.finalized
    }
}

/// What signing a channel state changes: the channel's entry after it, and the money it sends out (transfers and
/// commits, counted in the outflow window).
public struct ChannelEffect: Sendable, Equatable {
    public var entry: ChannelEntry
    public var outflow: ChannelPolicy.Outflow?
}

/// A decision on a channel state: the message to sign (custodian's own bytes) and its effect, or a refusal.
public enum ChannelDecision: Sendable {
    case sign(message: [UInt8], effect: ChannelEffect)
    /// The identical message signed before, asked again: signed again, nothing changes.
    case retry(message: [UInt8])
    case refuse(Denial)
}

/// This key's home channels and its outflows (PROTOCOL-v1-channels §7): the decisions on the states it is asked to
/// sign, each built from its own copy. Pure; the agent keeps it beside the app-session ledger.
public struct ChannelLedger: Sendable, Equatable {
    /// By channel id (`0x` + 64 lower-case hex).
    public private(set) var channels: [String: ChannelEntry] = [:]
    /// This key's transfers and commits, for the outflow window.
    public private(set) var outflows: [ChannelPolicy.Outflow] = []

    public init() {}

    /// The channel this key holds for `asset`, if any: one home channel per (wallet, asset) (the newest epoch).
    public func home(asset: String) -> ChannelEntry? {
        channels.values.filter { $0.copy.asset == asset }.max { $0.copy.epoch < $1.copy.epoch }
    }

    /// Decides a `channels.v1.submit_state` or `request_creation` frame: the state rebuilt from this key's copy (or,
    /// for a creation, the void base of the checked definition), compared field by field with what was sent, judged
    /// by the policy, and never a second message at one (channel, version).
    public func decide(
        _ frame: ChannelFrame, policy: ChannelPolicy?, agent: Address, nowMs: UInt64, windowSeconds: UInt64
    ) -> ChannelDecision {
        guard let policy else {
            return .refuse(
                Denial(.payloadMethodNotAllowed, "the policy has no [channels] section: no channel state is signed"))
        }
        let sent: ChannelStateWire
        let base: ChannelCopy
        switch frame {
        case .submitSessionKeyState:
            return .refuse(
                Denial(
                    .payloadMethodNotAllowed,
                    "custodian does not sign channel session keys: on chain a key's authorization has no expiry, "
                        + "asset or channel limit (PROTOCOL-v1-channels §4.1)"))
        case .requestCreation(let state, let definition):
            sent = state
            if let channel = state.homeChannelID, let known = channels[channel] {
                return retryOrConflict(sent, entry: known, policy: policy)
            }
            let existing = home(asset: state.asset)
            if let existing, !existing.finalized {
                return .refuse(
                    Denial(
                        .sessionExists,
                        "this key already has the \(state.asset) home channel \(existing.copy.channelID); a new one "
                            + "only after it is finalized"))
            }
            let epoch = existing.map { $0.copy.epoch &+ 1 } ?? 0
            guard epoch > (existing?.copy.epoch ?? 0) || existing == nil else {
                return .refuse(Denial(.payloadMalformed, "the epochs of \(state.asset) are at their end"))
            }
            switch policy.creationBase(state: state, definition: definition, agent: agent, epoch: epoch) {
            case .failure(let denial): return .refuse(denial)
            case .success(let void): base = void
            }
            guard let transition = ChannelTransition(rawValue: state.transition.type),
                [.acknowledgement, .homeDeposit, .homeWithdrawal, .transferSend].contains(transition)
            else {
                return .refuse(
                    Denial(
                        .payloadMalformed,
                        "a channel begins with an acknowledgement, a deposit, a withdrawal or a transfer"))
            }
        case .submitState(let state):
            sent = state
            guard let channel = state.homeChannelID, let entry = channels[channel] else {
                return .refuse(
                    Denial(.sessionUnknown, "custodian holds no home channel \(state.homeChannelID ?? "(none named)")"))
            }
            if state.version <= entry.copy.version { return retryOrConflict(sent, entry: entry, policy: policy) }
            guard !entry.finalized else {
                return .refuse(Denial(.sessionClosed, "\(channel) is finalized: nothing more is signed on it"))
            }
            guard let transition = ChannelTransition(rawValue: state.transition.type) else {
                return .refuse(Denial(.payloadMethodNotAllowed, "transition \(state.transition.type) is not signed"))
            }
            switch transition {
            case .commit:
                return .refuse(
                    Denial(
                        .commitUnpaired,
                        "a commit is signed only inside the app deposit it funds (app_sessions.v1.submit_deposit_state)"
                    ))
            case .acknowledgement where !entry.nodeIssuedBase:
                return .refuse(
                    Denial(.payloadMalformed, "an acknowledgement follows only a state the node issued alone"))
            default: break
            }
            base = entry.copy
        }
        guard base.version < UInt64.max, sent.version == base.version + 1 else {
            return .refuse(
                Denial(
                    .versionConflict, "version \(sent.version) where \(base.version + 1) is next",
                    figures: ["expected": "\(base.version + 1)", "got": "\(sent.version)"]))
        }
        guard let transition = ChannelTransition(rawValue: sent.transition.type) else {
            return .refuse(Denial(.payloadMethodNotAllowed, "transition \(sent.transition.type) is not signed"))
        }
        let built: ChannelStateWire
        switch ChannelState.next(
            after: base, transition, accountID: sent.transition.accountID, amount: sent.transition.amount)
        {
        case .failure(let denial): return .refuse(denial)
        case .success(let state): built = state
        }
        if let difference = ChannelState.difference(sent: sent, built: built) { return .refuse(difference) }
        let windowStart = nowMs > windowSeconds &* 1000 ? nowMs - windowSeconds &* 1000 : 0
        if let denial = policy.judge(built, base: base, agent: agent, outflows: outflows, windowStartMs: windowStart) {
            return .refuse(denial)
        }
        guard let message = ChannelState.message(of: built, decimals: base.decimals) else {
            return .refuse(Denial(.payloadBadAmount, "an amount does not fit the token's units"))
        }
        let outflow: ChannelPolicy.Outflow? =
            transition == .transferSend || transition == .commit
            ? ChannelPolicy.Outflow(timeMs: nowMs, asset: base.asset, amount: built.transition.amount) : nil
        var copy = base
        copy.version = built.version
        copy.ledger = built.homeLedger
        return .sign(
            message: message,
            effect: ChannelEffect(
                entry: ChannelEntry(
                    copy: copy, lastSigned: (built.version, Keccak256.hash(message)), nodeIssuedBase: false,
                    coSigned: false, finalized: transition == .finalize),
                outflow: outflow))
    }

    /// A state at or below the base's version: the identical message signed last is signed again; anything else
    /// is a second message for a (channel, version) this key already signed, or a state behind the base.
    private func retryOrConflict(_ sent: ChannelStateWire, entry: ChannelEntry, policy: ChannelPolicy)
        -> ChannelDecision
    {
        if let last = entry.lastSigned, last.version == sent.version,
            let message = ChannelState.message(of: sent, decimals: entry.copy.decimals),
            Keccak256.hash(message) == last.hash
        {
            return .retry(message: message)
        }
        return .refuse(
            Denial(
                .versionConflict,
                "version \(sent.version) of \(entry.copy.channelID) is already spent (this key signed, or holds, "
                    + "version \(entry.copy.version)); another message at a version signed before is never signed",
                figures: ["base": "\(entry.copy.version)", "got": "\(sent.version)"]))
    }

    /// Applies a signed state's effect.
    public mutating func apply(_ effect: ChannelEffect) {
        channels[effect.entry.copy.channelID] = effect.entry
        if let outflow = effect.outflow { outflows.append(outflow) }
    }

    /// Takes a state the node answered with (`channels.v1.get_latest_state`): this key's last signed state with the
    /// node's signature (now co-signed), or a node-issued state that passes §7.3 (the new base). `nodeSigner` is the
    /// address the caller recovered from `node_sig` over the state's message. Returns the entry after it, or why not.
    public func observe(_ state: ChannelStateWire, nodeSigner: Address?, policy: ChannelPolicy?) -> Result<
        ChannelEntry, Denial
    > {
        guard let policy else {
            return .failure(Denial(.payloadMethodNotAllowed, "the policy has no [channels] section"))
        }
        guard let channel = state.homeChannelID, var entry = channels[channel] else {
            return .failure(
                Denial(.sessionUnknown, "custodian holds no home channel \(state.homeChannelID ?? "(none)")"))
        }
        if state.version == entry.copy.version, let last = entry.lastSigned, last.version == state.version {
            guard let message = ChannelState.message(of: state, decimals: entry.copy.decimals),
                Keccak256.hash(message) == last.hash
            else {
                return .failure(
                    Denial(
                        .channelBaseRejected,
                        "the node answers version \(state.version) with another state than the one this key signed"))
            }
            guard nodeSigner == policy.node else {
                return .failure(Denial(.channelBaseRejected, "the answer is not signed by the node \(policy.node)"))
            }
            entry.coSigned = true
            return .success(entry)
        }
        if let denial = ChannelState.nodeIssuedBase(state, after: entry.copy, nodeSigner: nodeSigner, node: policy.node)
        {
            return .failure(denial)
        }
        entry.copy.version = state.version
        entry.copy.ledger = state.homeLedger
        entry.nodeIssuedBase = true
        entry.coSigned = true
        return .success(entry)
    }

    /// Records an observation's entry.
    public mutating func accept(_ entry: ChannelEntry) {
        channels[entry.copy.channelID] = entry
    }
}
