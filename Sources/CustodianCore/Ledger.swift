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

    /// The held assets: those with a non-zero total, in a stable order.
    public var heldAssets: [ExactString] {
        totals.filter { !$0.value.isZero }.map(\.key).sorted()
    }
}

/// A realized loss of this key, for the velocity window.
public struct LossEvent: Sendable, Equatable {
    public var timeMs: UInt64
    public var asset: ExactString
    public var amount: Amount
}

/// The state the policy reads: every session this key signed for, and its recent losses.
///
/// It is rebuilt at start-up by replaying the allowed decisions of the audit log through ``apply(_:atMs:)``, so the
/// state always equals what the log implies.
public struct LedgerState: Sendable {
    public var sessions: [String: SessionRecord] = [:]
    public var losses: [LossEvent] = []

    public init() {}

    /// Counts of open and closed sessions.
    public var counts: (open: Int, closed: Int) {
        var open = 0
        var closed = 0
        for session in sessions.values {
            if session.status == .open { open += 1 } else { closed += 1 }
        }
        return (open, closed)
    }

    /// Applies an allowed decision's effect.
    public mutating func apply(_ effect: Effect, atMs timeMs: UInt64) {
        if let session = effect.session {
            sessions[session.appSessionID] = session
        }
        for (asset, amount) in effect.realizedLoss where !amount.isZero {
            losses.append(LossEvent(timeMs: timeMs, asset: asset, amount: amount))
        }
    }

    /// This key's losses for `asset` realized after `sinceMs`.
    public func realizedLoss(asset: ExactString, sinceMs: UInt64) -> Amount {
        losses.filter { $0.asset == asset && $0.timeMs > sinceMs }.map(\.amount).sum()
    }
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
