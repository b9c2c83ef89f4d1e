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
    case velocityExceeded = "policy.velocity_exceeded"
    case applicationNotAllowed = "policy.application_not_allowed"
    case notParticipant = "policy.not_participant"
    case definitionInvalid = "policy.definition_invalid"
    case sessionExists = "policy.session_exists"
    case quorumWithoutUs = "policy.quorum_without_us"
    case auditUnavailable = "audit.unavailable"

    private var rank: Int { ReasonCode.allCases.firstIndex(of: self) ?? Int.max }

    public static func < (lhs: ReasonCode, rhs: ReasonCode) -> Bool { lhs.rank < rhs.rank }

    /// Whether the payload itself was refused (JSON-RPC -32002), as opposed to the policy (-32001).
    public var isPayload: Bool { self <= .payloadBadAddress }
}

/// A refusal: the stable reason code and a human sentence with the figures that failed.
public struct Denial: Error, Equatable, Sendable {
    public var reason: ReasonCode
    public var detail: String

    public init(_ reason: ReasonCode, _ detail: String) {
        self.reason = reason
        self.detail = detail
    }
}

/// Keeps the first reason in contract order among several findings.
struct FirstDenial {
    private(set) var denial: Denial?
    var enforcing = true

    mutating func note(_ reason: ReasonCode, _ detail: @autoclosure () -> String) {
        guard enforcing else { return }
        if let current = denial, current.reason <= reason { return }
        denial = Denial(reason, detail())
    }
}
