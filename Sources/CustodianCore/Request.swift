/// The methods custodian can sign, by their protocol's names. Anything else is refused as
/// `payload.method_not_allowed`.
public enum RequestMethod: String, CaseIterable, Sendable, Codable {
    case createAppSession = "create_app_session"
    case submitAppState = "submit_app_state"
    case closeAppSession = "close_app_session"
    case v1CreateAppSession = "app_sessions.v1.create_app_session"
    case v1SubmitAppState = "app_sessions.v1.submit_app_state"
    case v1SubmitDepositState = "app_sessions.v1.submit_deposit_state"

    /// The protocol whose method this is.
    public var wireProtocol: WireProtocol {
        switch self {
        case .createAppSession, .submitAppState, .closeAppSession: .nitroRPCv0
        case .v1CreateAppSession, .v1SubmitAppState, .v1SubmitDepositState: .nitroliteV1
        }
    }
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

/// A state-update intent (NitroRPC/0.4's names; v1 numbers them 0 operate, 1 deposit, 2 withdraw, 3 close).
public enum Intent: String, Sendable, Equatable {
    case operate, deposit, withdraw
}

/// An app session's definition, as ClearNode (PROTOCOL.md §6) or nitronode (PROTOCOL-v1 §2) stores it.
public struct AppDefinition: Equatable, Sendable {
    /// The protocol the session was created under: it fixes its id's hash and the rules its states follow.
    public var wire: WireProtocol = .nitroRPCv0
    /// v0's `application` (absent before v0.5; Go then hashes ""), v1's `application_id`.
    public var application: String?
    /// v0's `protocol`; empty for v1, whose definition has none.
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
    /// v0's close_app_session (no version), v1's close intent (with one).
    case close(appSessionID: String, allocations: [Allocation], sessionData: String?, version: UInt64? = nil)

    /// The allocations of any method.
    public var allocations: [Allocation] {
        switch self {
        case .create(_, let allocations, _), .submit(_, _, _, let allocations, _), .close(_, let allocations, _, _):
            allocations
        }
    }
}

/// A request that passed the payload checks, with everything needed to sign exactly what was checked.
public struct SignableRequest: Sendable {
    /// The wire protocol that carried it.
    public var wireProtocol: WireProtocol { method.wireProtocol }
    /// The method, by its protocol's name.
    public var method: RequestMethod
    public var requestID: UInt64
    /// Unix milliseconds.
    public var timestamp: UInt64
    public var body: RequestBody
    /// The request's text as the audit log keeps it, from which the codec computes ``requestHash`` again: for v0
    /// the exact `req` array as it stands in the message (what is signed); for v1 the frame, whose parsed values
    /// are what is hashed.
    public var signedBytes: [UInt8]
    /// The 32-byte digest the key signs.
    public var digest: [UInt8]
    /// The 32-byte hash the audit record names as `request_hash`: v0's Keccak-256 of the `req` bytes (equal to
    /// ``digest``), v1's ABI hash of the checked values (``digest`` is its EIP-191 digest).
    public var requestHash: [UInt8]
    /// The signatures already present, as their JSON tokens exactly as received (v0's `sig`).
    public var existingSignatureTokens: [ArraySlice<UInt8>]
    /// v1: where in ``signedBytes`` this key's quorum signature goes (the offset of `quorum_sigs`' closing bracket),
    /// and whether the array already holds one.
    public var quorumSigsEnd: Int = 0
    public var quorumSigsEmpty = true
    /// v1: the signatures already in `quorum_sigs`, lower-cased (a retry that carries this key's own is not given it
    /// twice: nitronode counts the entries against the participants).
    public var quorumSigs: [String] = []
    /// v1 `submit_deposit_state`: the `user_state` (the channel's commit that funds the deposit), read strictly.
    public var userState: ChannelStateWire?
    /// Why `user_state` does not read as a channel state (nil when it does).
    public var userStateRefusal: Denial?

    /// The session a submit or close names, or that a create would open (computed by the caller).
    public var namedSessionID: String? {
        switch body {
        case .create: nil
        case .submit(let id, _, _, _, _), .close(let id, _, _, _): id
        }
    }

    /// The message to send, with `signature` (`0x` + 130 hex) added as the protocol wants it: v0's envelope with
    /// the signature appended to `sig`; v1's frame with the quorum signature appended to `quorum_sigs`.
    public func signedMessage(appending signature: String) -> [UInt8] {
        switch wireProtocol {
        case .nitroRPCv0: NitroRPCv0Reader.envelope(for: self, appending: signature)
        case .nitroliteV1: NitroliteV1Reader.frame(for: self, appending: signature)
        }
    }

    /// The quorum signature v1 adds to `quorum_sigs` (`0xa1` ‖ signature); nil for v0.
    public func quorumSignature(_ signature: String) -> String? {
        guard wireProtocol == .nitroliteV1 else { return nil }
        return NitroliteV1Reader.quorumSignature(signature)
    }
}

/// The wire protocols custodian reads, side by side under one policy: v0 (ClearNode, PROTOCOL.md) and v1
/// (nitronode, PROTOCOL-v1.md). Its name is what audit records carry in `protocol`.
public enum WireProtocol: String, Sendable, CaseIterable {
    case nitroRPCv0 = "nitrorpc/v0"
    case nitroliteV1 = "nitrolite/v1"

    /// v1 states are full snapshots whose close must equal the current state (PROTOCOL-v1 §5, §6): value moves in
    /// an operate, never in a close. A v0 close sets the final split.
    public var closeIsValueNeutral: Bool { self == .nitroliteV1 }
    /// v1 requires every current non-zero (participant, asset) pair and lets zero pairs be omitted; v0 requires
    /// every participant × held asset.
    public var omitsZeroPairs: Bool { self == .nitroliteV1 }
    /// v0's definition names a protocol (checked against `[sessions] protocols`); v1's has none.
    public var definitionNamesProtocol: Bool { self == .nitroRPCv0 }
    /// A v1 create carries no funds (funding is a deposit); a v1 deposit raises one asset only, never from a zero
    /// entry listed for a new pair.
    public var depositsOneAsset: Bool { self == .nitroliteV1 }
}
