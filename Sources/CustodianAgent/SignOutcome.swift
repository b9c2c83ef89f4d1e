import CustodianCore

/// The connected client, from SO_PEERCRED.
public struct Peer: Sendable, Equatable {
    public var pid: Int32
    public var uid: UInt32
    public var gid: UInt32

    public init(pid: Int32, uid: UInt32, gid: UInt32) {
        self.pid = pid
        self.uid = uid
        self.gid = gid
    }
}

/// The answer to one `sign` request.
public enum SignOutcome: Sendable {
    /// Signed and recorded: the signature, v1's quorum signature (nil for v0), the message to send (v0's envelope,
    /// v1's frame), the request hash, the audit seq; for a channel state its `user_sig` (and, in a deposit frame,
    /// the app update's request hash beside the channel message's).
    case signed(
        signature: String, quorumSig: String?, envelope: [UInt8], requestHash: String, auditSeq: UInt64,
        userSig: String? = nil, appRequestHash: String? = nil)
    /// Refused and recorded.
    case refused(Denial, auditSeq: UInt64)
    /// The decision could not be made durable: nothing was signed (fail closed). `reason`: the audit log's
    /// (`audit.unavailable`) or the ledger database's (`ledger.unavailable`).
    case unavailable(String, reason: ReasonCode = .auditUnavailable)
}

/// What `status` reports.
public struct StatusSnapshot: Sendable {
    public var address: String
    public var policyHash: String
    public var auditSeq: UInt64
    public var auditHead: String
    public var openSessions: Int
    public var closedSessions: Int
    public var startedAtMs: UInt64
}
