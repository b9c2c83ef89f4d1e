/// What this agent knows of one app session: only what it signed.
public struct SessionRecord: Sendable, Equatable {
    public enum Status: String, Sendable {
        case open, closed
    }

    public var appSessionID: String
    public var definition: AppDefinition
    public var status: Status
    /// ClearNode's version: 1 at creation, + 1 per state, + 1 at close.
    public var version: UInt64
    /// The allocations of the latest state this key signed (the final ones once closed).
    public var allocations: [Allocation]
    public var sessionData: String?
    /// Per asset, the session total (sum of every participant's sub-balance).
    public var totals: [ExactString: Amount]
    /// Per asset, what this key put in: at creation plus deposits.
    public var funding: [ExactString: Amount]
    /// Per asset, what withdrawals paid to this key.
    public var withdrawn: [ExactString: Amount]
    /// The create request's content, to tell a retry from a conflicting create.
    public var creation: [Allocation]
    public var creationSessionData: String?
    /// Per asset, the session's committed loss: the largest loss of this key among all the states it signed for the
    /// session ((funding − withdrawals paid to it) − its allocation), never lowered (a signed state cannot be
    /// recalled).
    public var committedLoss: [ExactString: Amount] = [:]

    /// Per asset, this key's funding at risk in the session: funding − withdrawals paid to it (0 once closed).
    public var fundingAtRisk: [ExactString: Amount] {
        guard status == .open else { return [:] }
        var atRisk: [ExactString: Amount] = [:]
        for (asset, funded) in funding {
            let remaining = funded - (withdrawn[asset] ?? .zero)
            if remaining > .zero { atRisk[asset] = remaining }
        }
        return atRisk
    }

    /// The held assets: those with a non-zero total, in a stable order.
    public var heldAssets: [ExactString] {
        totals.filter { !$0.value.isZero }.map(\.key).sorted()
    }
}

extension SessionRecord {
    /// The state an operator's release of this (the latest) state returns the session to: `before`, with the
    /// committed loss this state raised kept (a released signature exists, and may still be used).
    public func released(to before: SessionRecord) -> SessionRecord {
        var restored = before
        for (asset, loss) in committedLoss where (restored.committedLoss[asset] ?? .zero) < loss {
            restored.committedLoss[asset] = loss
        }
        return restored
    }
}

/// An increase of this key's committed loss in a session, for the velocity window.
public struct LossEvent: Sendable, Equatable {
    public var timeMs: UInt64
    public var asset: ExactString
    public var amount: Amount
    /// The session, and the version of the signed state that raised its committed loss.
    public var sessionID: String
    public var version: UInt64 = 0

    public init(timeMs: UInt64, asset: ExactString, amount: Amount, sessionID: String, version: UInt64) {
        self.timeMs = timeMs
        self.asset = asset
        self.amount = amount
        self.sessionID = sessionID
        self.version = version
    }
}

/// What the policy reads of the ledger. A shared database can stand behind it (for a pair of agents) as well as
/// the in-memory ``LedgerState``.
public protocol LedgerView {
    /// The session this agent signed for, as it stands after the latest signed state.
    func session(_ id: String) -> SessionRecord?
    /// The increases of this key's committed loss in `asset` signed after `sinceMs`.
    func realizedLoss(asset: ExactString, sinceMs: UInt64) -> Amount
    /// Those increases, each with its session and state, oldest first (to explain a velocity figure).
    func lossEvents(asset: ExactString, sinceMs: UInt64) -> [LossEvent]
    /// This key's funding at risk in `asset` summed over its open sessions.
    func openFunding(asset: ExactString) -> Amount
}

/// The ledger's write side: applying decisions, undoing those that could not be made durable, and releasing a
/// session by an operator.
///
/// Decisions become durable in order, in batches (one per write of the audit log), while later ones are already
/// applied on top: ``mark()`` names the point after a decision, ``forget(through:)`` makes everything up to a mark
/// permanent, and ``rollbackPending()`` undoes everything after the last forgotten mark, newest change first (a
/// failed write takes every later decision with it, since each was made on the state the failed ones left).
public protocol LedgerStore: LedgerView {
    mutating func apply(_ effect: Effect, atMs timeMs: UInt64)
    /// The point after every change applied so far.
    func mark() -> LedgerMark
    /// The changes up to `mark` are durable: they can no longer be undone.
    mutating func forget(through mark: LedgerMark)
    /// Undoes every change not yet forgotten.
    mutating func rollbackPending()
    /// Forgets the latest signed state of a session (an operator's release), returning to the one before it.
    mutating func release(_ id: String) -> Bool
    /// Counts of open and closed sessions.
    var counts: (open: Int, closed: Int) { get }
}

/// A point in the sequence of a ledger's changes.
public struct LedgerMark: Sendable, Equatable {
    /// Changes applied since the ledger was built.
    let changes: Int
    /// Loss events recorded at that point.
    let losses: Int
}

/// The in-memory ledger: every session this key signed for, and its recent losses.
///
/// It is rebuilt at start-up by replaying the allowed decisions (and operator releases) of the audit log, so the
/// state always equals what the log implies.
public struct LedgerState: LedgerStore, Sendable {
    public internal(set) var sessions: [String: SessionRecord] = [:]
    /// Each session's state before its latest signed one, for an operator's release.
    var previous: [String: SessionRecord] = [:]
    public internal(set) var losses: [LossEvent] = []
    /// For an operator's release: the session whose every earlier signed state is kept in ``history`` (oldest first),
    /// nil for none. Set before a replay; the agent itself never keeps history.
    public var historyOf: String? {
        didSet { history = [] }
    }
    /// The states of session ``historyOf`` before its current one.
    public internal(set) var history: [SessionRecord] = []
    /// Per asset, the sum of every open session's ``SessionRecord/fundingAtRisk``, kept as sessions change.
    public internal(set) var openFundingTotals: [ExactString: Amount] = [:]
    /// This key's home channels and its outflows (v1 channel states).
    public internal(set) var channels = ChannelLedger()
    /// A change that can be undone: a session's record and previous record before it, or a channel's entry and the
    /// count of outflows before it.
    private enum Change {
        case session(String, SessionRecord?, SessionRecord?)
        case channel(String, ChannelEntry?, outflows: Int)
    }
    /// The changes not yet forgotten, oldest first.
    private var undo: [Change] = []
    /// Changes forgotten so far (the count of `undo`'s first entry).
    private var forgotten = 0
    /// The loss events that are durable.
    private var durableLosses = 0
    /// Whether changes are kept for undoing (an agent's ledger; not a replay's).
    private var tracking = false

    public init() {}

    public func session(_ id: String) -> SessionRecord? { sessions[id] }

    public var counts: (open: Int, closed: Int) {
        var open = 0
        var closed = 0
        for session in sessions.values {
            if session.status == .open { open += 1 } else { closed += 1 }
        }
        return (open, closed)
    }

    public mutating func apply(_ effect: Effect, atMs timeMs: UInt64) {
        guard let session = effect.session else { return }
        let id = session.appSessionID
        if tracking { undo.append(.session(id, sessions[id], previous[id])) }
        if id == historyOf, let before = sessions[id] { history.append(before) }
        previous[id] = sessions[id]
        replace(id, with: session)
        for (asset, amount) in effect.realizedLoss.sorted(by: { $0.key < $1.key }) where !amount.isZero {
            losses.append(
                LossEvent(timeMs: timeMs, asset: asset, amount: amount, sessionID: id, version: session.version))
        }
    }

    /// Applies a signed channel state's effect (undone with the rest if its record is not made durable).
    public mutating func apply(channel effect: ChannelEffect) {
        let id = effect.entry.copy.channelID
        if tracking { undo.append(.channel(id, channels.channels[id], outflows: channels.outflows.count)) }
        channels.apply(effect)
    }

    /// Records a channel's entry after an observation, a halt or a resume.
    public mutating func accept(channel entry: ChannelEntry) {
        let id = entry.copy.channelID
        if tracking { undo.append(.channel(id, channels.channels[id], outflows: channels.outflows.count)) }
        channels.accept(entry)
    }

    /// Sets a session's record, keeping ``openFundingTotals`` in step.
    mutating func replace(_ id: String, with session: SessionRecord?) {
        if let old = sessions[id] {
            for (asset, amount) in old.fundingAtRisk {
                openFundingTotals[asset] = (openFundingTotals[asset] ?? .zero) - amount
            }
        }
        sessions[id] = session
        if let session {
            for (asset, amount) in session.fundingAtRisk {
                openFundingTotals[asset] = (openFundingTotals[asset] ?? .zero) + amount
            }
        }
    }

    /// Recomputes ``openFundingTotals`` from the sessions (after a snapshot is decoded).
    mutating func recountOpenFunding() {
        openFundingTotals = [:]
        for session in sessions.values {
            for (asset, amount) in session.fundingAtRisk {
                openFundingTotals[asset] = (openFundingTotals[asset] ?? .zero) + amount
            }
        }
    }

    /// From now on changes can be undone until forgotten; everything so far is durable.
    public mutating func startTracking() {
        tracking = true
        undo.removeAll()
        forgotten = 0
        durableLosses = losses.count
    }

    public func mark() -> LedgerMark {
        LedgerMark(changes: forgotten + undo.count, losses: losses.count)
    }

    public mutating func forget(through mark: LedgerMark) {
        let count = min(max(mark.changes - forgotten, 0), undo.count)
        undo.removeFirst(count)
        forgotten += count
        durableLosses = max(durableLosses, min(mark.losses, losses.count))
    }

    public mutating func rollbackPending() {
        for change in undo.reversed() {
            switch change {
            case .session(let id, let session, let before):
                replace(id, with: session)
                previous[id] = before
            case .channel(let id, let entry, let outflows):
                channels.channels[id] = entry
                if outflows < channels.outflows.count { channels.outflows.removeSubrange(outflows...) }
            }
        }
        undo.removeAll(keepingCapacity: true)
        if durableLosses < losses.count { losses.removeSubrange(durableLosses...) }
    }

    /// Returns session `id` to `record` (nil: forgets it), as an operator's release records it: the state to
    /// return to is written in the release record itself. The loss events stay: a released state was signed, and its
    /// signature cannot be recalled.
    public mutating func restore(_ id: String, to record: SessionRecord?) {
        if id == historyOf { _ = history.popLast() }
        previous[id] = nil
        replace(id, with: record)
    }

    /// Adds a home channel this ledger does not hold, with outflows of the key's velocity window (a `ledger import`
    /// into a ledger database).
    public mutating func adopt(channel entry: ChannelEntry, outflows: [ChannelPolicy.Outflow]) {
        let id = entry.copy.channelID
        if tracking { undo.append(.channel(id, channels.channels[id], outflows: channels.outflows.count)) }
        channels.adopt(entry, outflows: outflows)
    }

    /// Adds a session this ledger does not hold, with its loss events (a `ledger import`).
    public mutating func adopt(_ record: SessionRecord, losses events: [LossEvent]) {
        previous[record.appSessionID] = nil
        replace(record.appSessionID, with: record)
        losses.append(contentsOf: events)
    }

    /// A release as custodian recorded it before release records carried the state to return to: back to the state
    /// before the latest, forgetting the session when there is none (and a released close's loss events). Kept so
    /// that such logs replay as they were decided.
    public mutating func release(_ id: String) -> Bool {
        guard sessions[id] != nil else { return false }
        if id == historyOf { _ = history.popLast() }
        let restored = previous.removeValue(forKey: id)
        replace(id, with: restored)
        // A released close was never executed: the loss it would have realized did not happen.
        if restored?.status != .closed { losses.removeAll { $0.sessionID == id } }
        return true
    }

    public func realizedLoss(asset: ExactString, sinceMs: UInt64) -> Amount {
        losses.filter { $0.asset == asset && $0.timeMs > sinceMs }.map(\.amount).sum()
    }

    public func lossEvents(asset: ExactString, sinceMs: UInt64) -> [LossEvent] {
        losses.filter { $0.asset == asset && $0.timeMs > sinceMs }
    }

    public func openFunding(asset: ExactString) -> Amount { openFundingTotals[asset] ?? .zero }
}

extension Array where Element == Allocation {
    /// Per asset, the sum of the amounts.
    public func totals() -> [ExactString: Amount] {
        var totals: [ExactString: Amount] = [:]
        for allocation in self {
            totals[allocation.asset, default: .zero] = totals[allocation.asset, default: .zero] + allocation.amount
        }
        return totals
    }

    /// Per asset, the amount allocated to `participant`.
    public func amounts(of participant: Address) -> [ExactString: Amount] {
        var amounts: [ExactString: Amount] = [:]
        for allocation in self where allocation.participant == participant {
            amounts[allocation.asset, default: .zero] = amounts[allocation.asset, default: .zero] + allocation.amount
        }
        return amounts
    }
}

/// A (participant, asset) pair, as a dictionary key.
public struct PairKey: Hashable, Sendable {
    public var participant: Address
    public var asset: ExactString

    public init(_ participant: Address, _ asset: ExactString) {
        self.participant = participant
        self.asset = asset
    }
}

extension Array where Element == Allocation {
    /// The non-zero amounts by (participant, asset), duplicates summed: the state as nitronode's ledger holds it.
    public func nonZeroPairs() -> [PairKey: Amount] {
        var pairs: [PairKey: Amount] = [:]
        for allocation in self {
            let key = PairKey(allocation.participant, allocation.asset)
            pairs[key] = (pairs[key] ?? .zero) + allocation.amount
        }
        return pairs.filter { !$0.value.isZero }
    }
}
