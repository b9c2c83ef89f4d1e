/// The methods custodian can sign. Anything else is refused as `payload.method_not_allowed`.
public enum RequestMethod: String, CaseIterable, Sendable, Codable {
    case createAppSession = "create_app_session"
    case submitAppState = "submit_app_state"
    case closeAppSession = "close_app_session"
}

/// One entry of an allocation list: what `participant` holds of `asset`.
public struct Allocation: Equatable, Sendable {
    public var participant: Address
    public var asset: ExactString
    public var amount: Amount

    public init(participant: Address, asset: ExactString, amount: Amount) {
        self.participant = participant
        self.asset = asset
        self.amount = amount
    }
}

/// A NitroRPC/0.4 state-update intent.
public enum Intent: String, Sendable, Equatable {
    case operate, deposit, withdraw
}

/// An app session's definition, as ClearNode stores it (PROTOCOL.md §6).
public struct AppDefinition: Equatable, Sendable {
    /// Absent before v0.5; Go then hashes "".
    public var application: String?
    public var protocolName: String
    public var participants: [Address]
    public var weights: [Int64]
    public var quorum: UInt64
    public var challenge: UInt64
    public var nonce: UInt64

    public init(
        application: String?, protocolName: String, participants: [Address], weights: [Int64], quorum: UInt64,
        challenge: UInt64, nonce: UInt64
    ) {
        self.application = application
        self.protocolName = protocolName
        self.participants = participants
        self.weights = weights
        self.quorum = quorum
        self.challenge = challenge
        self.nonce = nonce
    }
}

/// What a request asks for, independent of the wire protocol that carried it.
public enum RequestBody: Equatable, Sendable {
    case create(definition: AppDefinition, allocations: [Allocation], sessionData: String?)
    case submit(
        appSessionID: String, intent: Intent?, version: UInt64?, allocations: [Allocation], sessionData: String?)
    case close(appSessionID: String, allocations: [Allocation], sessionData: String?)

    /// The method name on the wire.
    public var method: RequestMethod {
        switch self {
        case .create: .createAppSession
        case .submit: .submitAppState
        case .close: .closeAppSession
        }
    }

    /// The allocations of any method.
    public var allocations: [Allocation] {
        switch self {
        case .create(_, let allocations, _), .submit(_, _, _, let allocations, _), .close(_, let allocations, _):
            allocations
        }
    }
}

/// A request that passed the payload checks, with everything needed to sign exactly what was checked.
public struct SignableRequest: Sendable {
    /// The wire protocol that carried it.
    public var wireProtocol: WireProtocol
    public var requestID: UInt64
    /// Unix milliseconds.
    public var timestamp: UInt64
    public var body: RequestBody
    /// The exact bytes that are signed (for v0: the `req` array as it stands in the message text).
    public var signedBytes: [UInt8]
    /// The 32-byte digest the key signs.
    public var digest: [UInt8]
    /// The signatures already present, as their JSON tokens exactly as received.
    public var existingSignatureTokens: [ArraySlice<UInt8>]

    /// The session a submit or close names, or that a create would open (computed by the caller).
    public var namedSessionID: String? {
        switch body {
        case .create: nil
        case .submit(let id, _, _, _, _), .close(let id, _, _): id
        }
    }
}

/// The wire protocols custodian reads. v1 (nitronode, PROTOCOL-v1.md) will sit beside v0 under the same policy.
public enum WireProtocol: String, Sendable {
    case nitroRPCv0 = "nitrorpc/v0"
}
