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
    /// The 640-byte message of this key's latest state the node co-signed (seen through `observe`): the only state
    /// a challenge is signed for (PROTOCOL-v1-channels §7.9).
    public var coSignedMessage: [UInt8]?
    /// The Keccak-256 of the message of a node-issued base (to know it when the node answers with it again).
    public var nodeBaseHash: [UInt8]?
    /// Why signing on the channel stopped (the node signed a state custodian cannot take as a base: PROTOCOL-v1-channels
    /// §7.3, "stop"), until an operator resumes it; nil: it signs.
    public var halted: String?

    public init(
        copy: ChannelCopy, lastSigned: (version: UInt64, hash: [UInt8])?, nodeIssuedBase: Bool, coSigned: Bool,
        finalized: Bool = false, halted: String? = nil
    ) {
        self.copy = copy
        self.lastSigned = lastSigned
        self.nodeIssuedBase = nodeIssuedBase
        self.coSigned = coSigned
        self.finalized = finalized
        self.halted = halted
    }

    public static func == (lhs: ChannelEntry, rhs: ChannelEntry) -> Bool {
        lhs.copy == rhs.copy && lhs.lastSigned?.version == rhs.lastSigned?.version
            && lhs.lastSigned?.hash == rhs.lastSigned?.hash && lhs.nodeIssuedBase == rhs.nodeIssuedBase
            && lhs.coSigned == rhs.coSigned && lhs.finalized == rhs.finalized && lhs.halted == rhs.halted
            && lhs.nodeBaseHash == rhs.nodeBaseHash && lhs.coSignedMessage == rhs.coSignedMessage
    }
}

/// What signing a channel state changes: the channel's entry after it, and the money it sends out (transfers and
/// commits, counted in the outflow window).
public struct ChannelEffect: Sendable, Equatable {
    public var entry: ChannelEntry
    public var outflow: ChannelPolicy.Outflow?

    public init(entry: ChannelEntry, outflow: ChannelPolicy.Outflow?) {
        self.entry = entry
        self.outflow = outflow
    }
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
    public internal(set) var channels: [String: ChannelEntry] = [:]
    /// This key's transfers and commits, for the outflow window.
    public internal(set) var outflows: [ChannelPolicy.Outflow] = []

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
            guard state.userWallet == agent else {
                return .refuse(
                    Denial(
                        .notParticipant,
                        "the channel's wallet is \(state.userWallet), not this key: its withdrawals would go there"))
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
            if let refusal = Self.closed(entry) { return .refuse(refusal) }
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
        return build(sent, after: base, policy: policy, agent: agent, nowMs: nowMs, windowSeconds: windowSeconds)
    }

    /// Decides the commit a `app_sessions.v1.submit_deposit_state` frame carries as its `user_state`, together with
    /// the app deposit update it funds (PROTOCOL-v1-channels §7.7): this key's own channel, version = base + 1, the
    /// commit rebuilt and compared, paired with `update` against `session` (the session as it stands before the
    /// deposit), within the outflow window.
    public func decideCommit(
        _ commit: ChannelStateWire, update: RequestBody, session: SessionRecord?, policy: ChannelPolicy?,
        agent: Address, nowMs: UInt64, windowSeconds: UInt64
    ) -> ChannelDecision {
        guard let policy else {
            return .refuse(
                Denial(.payloadMethodNotAllowed, "the policy has no [channels] section: no channel state is signed"))
        }
        guard let channel = commit.homeChannelID, let entry = channels[channel] else {
            return .refuse(
                Denial(.sessionUnknown, "custodian holds no home channel \(commit.homeChannelID ?? "(none named)")"))
        }
        if commit.version <= entry.copy.version { return retryOrConflict(commit, entry: entry, policy: policy) }
        if let refusal = Self.closed(entry) { return .refuse(refusal) }
        guard let session else {
            return .refuse(Denial(.sessionUnknown, "the deposit names a session custodian has not signed for"))
        }
        if let denial = ChannelState.commitPairing(commit, update: update, session: session, agent: agent) {
            return .refuse(denial)
        }
        return build(
            commit, after: entry.copy, policy: policy, agent: agent, nowMs: nowMs, windowSeconds: windowSeconds)
    }

    /// Why nothing new is signed on a channel (finalized, or stopped), or nil.
    static func closed(_ entry: ChannelEntry) -> Denial? {
        if entry.finalized {
            return Denial(.sessionClosed, "\(entry.copy.channelID) is finalized: nothing more is signed on it")
        }
        if let halted = entry.halted {
            return Denial(
                .channelBaseRejected,
                "signing on \(entry.copy.channelID) stopped: \(halted); an operator resumes it (custodian channel "
                    + "resume) once the channel is understood")
        }
        return nil
    }

    /// The state after `base` that `sent` asks for, built by custodian, compared with `sent`, and judged.
    private func build(
        _ sent: ChannelStateWire, after base: ChannelCopy, policy: ChannelPolicy, agent: Address, nowMs: UInt64,
        windowSeconds: UInt64
    ) -> ChannelDecision {
        guard base.version < UInt64.max, sent.version == base.version + 1 else {
            return .refuse(
                Denial(
                    .versionConflict, "version \(sent.version) where \(base.version &+ 1) is next",
                    figures: ["expected": "\(base.version &+ 1)", "got": "\(sent.version)"]))
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
        let window = windowSeconds.multipliedReportingOverflow(by: 1000)
        let windowStart = window.overflow || window.partialValue >= nowMs ? 0 : nowMs - window.partialValue
        if let denial = policy.judge(built, base: base, agent: agent, outflows: outflows, windowStartMs: windowStart) {
            return .refuse(denial)
        }
        guard let message = ChannelState.message(of: built, decimals: base.decimals) else {
            return .refuse(Denial(.payloadBadAmount, "an amount does not fit the token's units"))
        }
        return .sign(
            message: message, effect: Self.effect(of: built, after: base, message: message, nowMs: nowMs))
    }

    /// What signing `state` (the state after `base`, whose message is `message`) does to the ledger: the base moves
    /// to it, it is the last signed, and a transfer or commit is counted as outflow. The agent's decision and the
    /// replay of its record both take it from here.
    static func effect(of state: ChannelStateWire, after base: ChannelCopy, message: [UInt8], nowMs: UInt64)
        -> ChannelEffect
    {
        let transition = ChannelTransition(rawValue: state.transition.type)
        let outflow: ChannelPolicy.Outflow? =
            transition == .transferSend || transition == .commit
            ? ChannelPolicy.Outflow(timeMs: nowMs, asset: base.asset, amount: state.transition.amount) : nil
        var copy = base
        copy.version = state.version
        copy.ledger = state.homeLedger
        return ChannelEffect(
            entry: ChannelEntry(
                copy: copy, lastSigned: (state.version, Keccak256.hash(message)), nodeIssuedBase: false,
                coSigned: false, finalized: transition == .finalize),
            outflow: outflow)
    }

    /// The effect of a signed state as its audit record holds it (replay: the policy judged it when it was signed;
    /// what is checked here is that it follows the ledger): `decimals` are those the record names. Nil when it
    /// does not follow (another channel's state, a version that is not next).
    public func replaySigned(_ state: ChannelStateWire, decimals: UInt8, creation: Bool, nowMs: UInt64)
        -> ChannelEffect?
    {
        guard let channel = state.homeChannelID,
            let message = ChannelState.message(of: state, decimals: decimals)
        else { return nil }
        let base: ChannelCopy
        if creation, channels[channel] == nil {
            guard state.version == 1 else { return nil }
            base = ChannelCopy(
                channelID: channel, user: state.userWallet, asset: state.asset, decimals: decimals,
                epoch: state.epoch, version: state.version - 1,
                ledger: ChannelStateWire.HomeLedger(
                    token: state.homeLedger.token, chainID: state.homeLedger.chainID, userBalance: .zero,
                    userNetFlow: .zero, nodeBalance: .zero, nodeNetFlow: .zero))
        } else {
            guard let entry = channels[channel] else { return nil }
            if let last = entry.lastSigned, last.version == state.version, last.hash == Keccak256.hash(message) {
                return ChannelEffect(entry: entry, outflow: nil)  // a retry: signed again, nothing changes
            }
            guard entry.copy.version < UInt64.max, state.version == entry.copy.version + 1,
                entry.copy.decimals == decimals
            else { return nil }
            base = entry.copy
        }
        return Self.effect(of: state, after: base, message: message, nowMs: nowMs)
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

    /// What an answer of the node (`channels.v1.get_latest_state`) does: taken (this key's last signed state, now
    /// co-signed; or a node-issued state that passes §7.3, the new base), or refused. A refusal stops signing on
    /// the channel (`halt`, the entry after it) only when the node itself signed what cannot be taken: a state by
    /// anyone else proves nothing about the node and changes nothing.
    public enum Observation: Sendable, Equatable {
        case cosigned(ChannelEntry)
        case newBase(ChannelEntry)
        /// The state this key already holds as its base, seen again: nothing changes.
        case known(ChannelEntry)
        case refused(Denial, halt: ChannelEntry?)
    }

    /// Judges a state the node answered with. `nodeSigner` is the address recovered (strictly: low S, v 27/28) from
    /// `node_sig` over the state's message at the channel's decimals; `message` is that message (nil: it does not
    /// fit the token's units).
    public func observe(_ state: ChannelStateWire, message: [UInt8]?, nodeSigner: Address?, policy: ChannelPolicy?)
        -> Observation
    {
        guard let policy else {
            return .refused(Denial(.payloadMethodNotAllowed, "the policy has no [channels] section"), halt: nil)
        }
        guard let channel = state.homeChannelID, var entry = channels[channel] else {
            return .refused(
                Denial(.sessionUnknown, "custodian holds no home channel \(state.homeChannelID ?? "(none)")"), halt: nil
            )
        }
        let byNode = nodeSigner == policy.node
        func refuse(_ denial: Denial) -> Observation {
            guard byNode, entry.halted == nil else { return .refused(denial, halt: nil) }
            var halted = entry
            halted.halted = "the node signed a state that is not a base (version \(state.version)): \(denial.detail)"
            return .refused(denial, halt: halted)
        }
        guard let message else {
            return .refused(Denial(.payloadBadAmount, "an amount does not fit the token's units"), halt: nil)
        }
        guard byNode else {
            return .refused(
                Denial(
                    .channelBaseRejected,
                    "the state is not signed by the node \(policy.node) (a low-S signature, v 27 or 28, over its "
                        + "message)"),
                halt: nil)
        }
        let hash = Keccak256.hash(message)
        if state.version < entry.copy.version {
            return .refused(
                Denial(
                    .channelBaseRejected,
                    "version \(state.version) is behind custodian's base \(entry.copy.version) (the node has not "
                        + "answered a later state yet)",
                    figures: ["base": "\(entry.copy.version)", "got": "\(state.version)"]),
                halt: nil)
        }
        if state.version == entry.copy.version {
            let known = entry.nodeIssuedBase ? entry.nodeBaseHash : entry.lastSigned?.hash
            guard known == hash else {
                return refuse(
                    Denial(
                        .channelBaseRejected,
                        "the node answers version \(state.version) with another state than custodian's base"))
            }
            if entry.coSigned { return .known(entry) }
            entry.coSigned = true
            if !entry.nodeIssuedBase { entry.coSignedMessage = message }
            return .cosigned(entry)
        }
        if let denial = ChannelState.nodeIssuedBase(state, after: entry.copy, nodeSigner: nodeSigner, node: policy.node)
        {
            return refuse(denial)
        }
        return .newBase(Self.base(entry, taking: state, hash: hash))
    }

    /// `entry` with the node-issued `state` (whose message hashes to `hash`) as its base.
    static func base(_ entry: ChannelEntry, taking state: ChannelStateWire, hash: [UInt8]) -> ChannelEntry {
        var entry = entry
        entry.copy.version = state.version
        entry.copy.ledger = state.homeLedger
        entry.nodeIssuedBase = true
        entry.nodeBaseHash = hash
        entry.coSigned = true
        return entry
    }

    /// An observation as its audit record holds it (replay): `kind` is what the agent made of it.
    public func replayObserved(_ state: ChannelStateWire, decimals: UInt8, kind: String) -> ChannelEntry? {
        guard let channel = state.homeChannelID, let entry = channels[channel], entry.copy.decimals == decimals,
            let message = ChannelState.message(of: state, decimals: decimals)
        else { return nil }
        switch kind {
        case "cosigned":
            var cosigned = entry
            cosigned.coSigned = true
            if !cosigned.nodeIssuedBase { cosigned.coSignedMessage = message }
            return cosigned
        case "node_issued":
            return Self.base(entry, taking: state, hash: Keccak256.hash(message))
        default: return nil
        }
    }

    /// Adds an entry and outflows a ledger import brings.
    public mutating func adopt(_ entry: ChannelEntry, outflows more: [ChannelPolicy.Outflow]) {
        channels[entry.copy.channelID] = entry
        outflows.append(contentsOf: more)
    }

    /// Records an entry (an observation, a halt, an operator's resume).
    public mutating func accept(_ entry: ChannelEntry) {
        channels[entry.copy.channelID] = entry
    }

    /// The challenge this key may sign on `channelID` (PROTOCOL-v1-channels §3.2, §7.9): the 672-byte message over
    /// its latest state the node co-signed, and that state's version; or why not.
    public func challenge(_ channelID: String) -> Result<(message: [UInt8], version: UInt64), Denial> {
        guard let entry = channels[channelID] else {
            return .failure(Denial(.sessionUnknown, "custodian holds no home channel \(channelID)"))
        }
        guard let message = entry.coSignedMessage, message.count == 640, let last = entry.lastSigned else {
            return .failure(
                Denial(
                    .versionConflict,
                    "no state of \(channelID) signed by custodian has been seen co-signed by the node (observe its "
                        + "answer first): a challenge is signed only for the latest co-signed state"))
        }
        // abi.encode(bytes32 channelId, bytes data): the id, the offset, the length (544), the data.
        let data = Array(message[96..<640])
        return .success(
            (ABI.encode([.bytes32(Array(message[0..<32])), .string(data + Array("challenge".utf8))]), last.version))
    }
}
