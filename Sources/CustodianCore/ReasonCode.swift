/// The stable reason codes of CONTRACT §4, in the contract's order: where several rules fail, the first case in
/// this order is the one reported (payload before policy).
public enum ReasonCode: String, CaseIterable, Sendable, Comparable, Codable {
    case payloadMalformed = "payload.malformed"
    case payloadDuplicateKey = "payload.duplicate_key"
    case payloadUnknownField = "payload.unknown_field"
    case payloadBadAmount = "payload.bad_amount"
    case payloadBadAddress = "payload.bad_address"
    case payloadStale = "payload.stale"
    case payloadFuture = "payload.future"
    case payloadMethodNotAllowed = "payload.method_not_allowed"
    case sessionUnknown = "policy.session_unknown"
    case sessionClosed = "policy.session_closed"
    case closeNotCurrent = "policy.close_not_current"
    case sumMismatch = "policy.sum_mismatch"
    case participantUnknown = "policy.participant_unknown"
    case participantMissing = "policy.participant_missing"
    case duplicateAllocation = "policy.duplicate_allocation"
    case assetNotAllowed = "policy.asset_not_allowed"
    case precision = "policy.precision"
    case capExceeded = "policy.cap_exceeded"
    case ownLossExceeded = "policy.own_loss_exceeded"
    case fundingExceeded = "policy.funding_exceeded"
    case counterpartyNotAllowed = "policy.counterparty_not_allowed"
    case versionConflict = "policy.version_conflict"
    /// A v1 channel state that differs from the one custodian builds from its own copy and the transition.
    case ledgerMismatch = "policy.ledger_mismatch"
    /// A v1 channel state the node issued that may not become the signer's new base (PROTOCOL-v1-channels §7.3).
    case channelBaseRejected = "policy.channel_base_rejected"
    /// A v1 commit not paired with the app deposit it funds, or in a session that does not need this key (§7.7).
    case commitUnpaired = "policy.commit_unpaired"
    case velocityExceeded = "policy.velocity_exceeded"
    case exposureExceeded = "policy.exposure_exceeded"
    case applicationNotAllowed = "policy.application_not_allowed"
    case notParticipant = "policy.not_participant"
    case definitionInvalid = "policy.definition_invalid"
    case sessionExists = "policy.session_exists"
    case quorumWithoutUs = "policy.quorum_without_us"
    case auditUnavailable = "audit.unavailable"
    /// The ledger database (`--ledger-url`) could not be reached, timed out, or left a commit in doubt: nothing signed.
    case ledgerUnavailable = "ledger.unavailable"

    private var rank: Int { ReasonCode.allCases.firstIndex(of: self) ?? Int.max }

    public static func < (lhs: ReasonCode, rhs: ReasonCode) -> Bool { lhs.rank < rhs.rank }

    /// Whether the payload itself was refused (JSON-RPC -32002), as opposed to the policy (-32001).
    public var isPayload: Bool { self <= .payloadBadAddress }
}

/// A named figure of a decision ("expected": "150", "got": "149.999999").
public struct Figure: Equatable, Sendable {
    public var name: String
    public var value: String

    public init(_ name: String, _ value: String) {
        self.name = name
        self.value = value
    }
}

/// A refusal: the stable reason code, a human sentence, and the figures that failed.
public struct Denial: Error, Equatable, Sendable {
    public var reason: ReasonCode
    public var detail: String
    public var figures: [Figure]

    public init(_ reason: ReasonCode, _ detail: String, figures: KeyValuePairs<String, String> = [:]) {
        self.reason = reason
        self.detail = detail
        self.figures = figures.map { Figure($0.key, $0.value) }
    }
}

extension ReasonCode {
    /// The reasons only v1 channel states give (their cases are the channel tests', not Tests/PolicyCases).
    public static let channelStates: Set<ReasonCode> = [.ledgerMismatch, .channelBaseRejected, .commitUnpaired]

    /// The reasons a policy may turn into warnings for a trial run. Never the payload's ambiguity, nor what keeps
    /// the ledger consistent (unknown or closed sessions, conflicting versions or creates, the key's own
    /// participation): signing those would leave custodian unable to judge what comes next.
    public static let warnable: Set<ReasonCode> = [
        .payloadStale, .payloadFuture, .sumMismatch, .participantUnknown, .participantMissing, .duplicateAllocation,
        .assetNotAllowed, .precision, .capExceeded, .ownLossExceeded, .fundingExceeded, .counterpartyNotAllowed,
        .velocityExceeded, .exposureExceeded, .applicationNotAllowed, .definitionInvalid, .quorumWithoutUs,
    ]
}

/// Everything a request breaks, in the order found; reports the first in contract order.
struct Findings {
    private(set) var all: [Denial] = []
    var enforcing = true
    /// The first unknown key that is a letter-case variant of a known one: Go's decoder folds it into the known key
    /// (or merges the two objects), so it changes what the rest means.
    private(set) var folded: Denial?

    mutating func note(
        _ reason: ReasonCode, _ detail: @autoclosure () -> String, _ figures: KeyValuePairs<String, String> = [:]
    ) {
        guard enforcing else { return }
        all.append(Denial(reason, detail(), figures: figures))
    }

    /// Notes an unknown key that Go folds into a known one.
    mutating func noteFolded(_ detail: String) {
        guard enforcing else { return }
        let denial = Denial(.payloadUnknownField, detail)
        all.append(denial)
        if folded == nil { folded = denial }
    }

    /// The first finding in contract order (the earliest found among equals).
    var denial: Denial? {
        all.enumerated().min { ($0.element.reason, $0.offset) < ($1.element.reason, $1.offset) }?.element
    }

    /// The first finding that is not a warning, and one warning per warned reason.
    func verdict(warn: Set<ReasonCode>) -> (denial: Denial?, warnings: [Denial]) {
        var enforced = Findings()
        var warnings: [Denial] = []
        for finding in all {
            if warn.contains(finding.reason) {
                if !warnings.contains(where: { $0.reason == finding.reason }) { warnings.append(finding) }
            } else {
                enforced.all.append(finding)
            }
        }
        return (enforced.denial, warnings.sorted { $0.reason < $1.reason })
    }
}
