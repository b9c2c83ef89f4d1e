/// Reads a Nitrolite v1 request frame `[1, id, method, payload, ts]` (PROTOCOL-v1 §1, §2) for the app-session
/// methods custodian signs, as strictly as the v0 reader (PROTOCOL-v1 §7: every reading on which nitronode's Go
/// decoder and a strict parser could differ is refused). What is signed is never bytes from the caller: the reader
/// computes the ABI hash (§3.2, §3.3) from the values it checked, and the key signs its EIP-191 digest (§3.4).
public struct NitroliteV1Reader: Sendable {
    /// nitronode's limits (PROTOCOL-v1 §5): `session_data` bytes, participants of a definition.
    public static let maxSessionData = 1024
    public static let maxParticipants = 32
    /// The quorum-signature type byte of a participant's wallet (PROTOCOL-v1 §3.4).
    public static let walletSignatureType = "a1"

    public init() {}

    /// Checks `message` (a v1 frame) and returns what it asks, or the first reason to refuse it.
    public func read(_ message: [UInt8]) -> Result<SignableRequest, Denial> {
        switch StrictJSON.parse(message) {
        case .success(let root): read(root, in: message)
        case .failure(let failure): .failure(RequestReader.denial(failure))
        }
    }

    func read(_ root: StrictJSON.Node, in message: [UInt8]) -> Result<SignableRequest, Denial> {
        guard let frame = root.value.elements, frame.count == 5 else {
            return .failure(Denial(.payloadMalformed, "a v1 frame is an array of 5 elements"))
        }
        var findings = Findings()
        let (requestID, timestamp) = Self.header(frame, &findings)
        guard let methodName = frame[2].value.string else {
            findings.note(.payloadMalformed, "the method is not a string")
            return .failure(findings.denial ?? Denial(.payloadMalformed, "bad method"))
        }
        guard let payload = frame[3].value.members else {
            findings.note(.payloadMalformed, "the payload is not an object")
            return .failure(findings.denial ?? Denial(.payloadMalformed, "bad payload"))
        }
        guard let method = RequestMethod(rawValue: methodName), methodName.hasSameBytes(as: method.rawValue),
            method.wireProtocol == .nitroliteV1
        else {
            findings.note(.payloadMethodNotAllowed, Self.unsignedMethod(methodName))
            return .failure(findings.denial ?? Denial(.payloadMethodNotAllowed, "unknown method"))
        }
        let known: [String] =
            switch method {
            case .v1CreateAppSession: ["definition", "session_data", "quorum_sigs", "owner_sig"]
            case .v1SubmitDepositState: ["app_state_update", "quorum_sigs", "user_state"]
            default: ["app_state_update", "quorum_sigs"]
            }
        var fields = FieldReader(members: payload, findings: findings)
        fields.expectOnly(payload, known, in: "the payload")
        var quorumSigs: StrictJSON.Node?
        var userState: ChannelStateWire?
        var userStateRefusal: Denial?
        let body: RequestBody?
        let hash: [UInt8]?
        switch method {
        case .v1CreateAppSession:
            let definition = fields.required("definition", in: "the payload").flatMap { fields.v1Definition($0) }
            let sessionData = fields.v1SessionData(payload)
            quorumSigs = fields.quorumSignatures(payload)
            if let owner = payload.member("owner_sig"), owner.value.string == nil {
                fields.findings.note(.payloadMalformed, "owner_sig is not a string")
            }
            if let definition, let sessionData {
                body = .create(definition: definition, allocations: [], sessionData: sessionData)
                hash = Keccak256.hash(ABI.encode(definition.v1Values + [.string(Array(sessionData.utf8))]))
            } else {
                body = nil
                hash = nil
            }
        case .v1SubmitAppState, .v1SubmitDepositState:
            let deposit = method == .v1SubmitDepositState
            if deposit, let node = fields.required("user_state", in: "the payload") {
                if node.value.members == nil {
                    fields.findings.note(.payloadMalformed, "user_state is not an object")
                } else {
                    // The channel state that funds the deposit, read as strictly as a channel frame's but on its own:
                    // only a [channels] policy signs it (paired with this update, PROTOCOL-v1-channels §7.7), and
                    // then a state that does not read refuses the deposit; without one it is the client's to sign.
                    var state = FieldReader(members: [], findings: Findings())
                    userState = state.channelState(node)
                    userStateRefusal =
                        state.findings.folded ?? state.findings.denial
                        ?? (userState == nil ? Denial(.payloadMalformed, "user_state is not a channel state") : nil)
                    if userStateRefusal != nil { userState = nil }
                }
            }
            quorumSigs = fields.quorumSignatures(payload)
            let update = fields.required("app_state_update", in: "the payload").flatMap {
                fields.appStateUpdate($0, deposit: deposit)
            }
            body = update?.body
            hash = update?.hash
        case .createAppSession, .submitAppState, .closeAppSession:
            return .failure(Denial(.payloadMethodNotAllowed, "\(methodName) is a v0 method"))
        }
        findings = fields.findings
        // An unknown key anywhere (a case variant Go's decoder folds into a known one, or merges with it) changes
        // what the rest means: it is the reason, whatever else is missing or wrong.
        if let unknown = findings.all.first(where: { $0.reason == .payloadUnknownField }) { return .failure(unknown) }
        if let denial = findings.denial { return .failure(denial) }
        guard let body, let hash, let requestID, let timestamp, let quorumSigs, let elements = quorumSigs.value.elements
        else { return .failure(Denial(.payloadMalformed, "incomplete request")) }
        let start = root.span.lowerBound
        var request = SignableRequest(
            method: method, requestID: requestID, timestamp: timestamp, body: body,
            signedBytes: Array(message[root.span]), digest: Self.eip191Digest(hash), requestHash: hash,
            existingSignatureTokens: [])
        request.quorumSigsEnd = quorumSigs.span.upperBound - 1 - start
        request.quorumSigsEmpty = elements.isEmpty
        request.quorumSigs = elements.compactMap { $0.value.string?.lowercased() }
        request.userState = userState
        request.userStateRefusal = userStateRefusal
        return .success(request)
    }

    /// EIP-191 `personal_sign` digest of a 32-byte hash: keccak256("\x19Ethereum Signed Message:\n32" ‖ hash).
    public static func eip191Digest(_ hash: [UInt8]) -> [UInt8] {
        var preimage = eip191Prefix
        preimage.append(contentsOf: hash)
        return Keccak256.hash(preimage)
    }

    private static let eip191Prefix = Array("\u{19}Ethereum Signed Message:\n32".utf8)

    /// `0xa1` ‖ the 65-byte signature (given as `0x` + 130 hex): a participant wallet's quorum signature.
    public static func quorumSignature(_ signature: String) -> String {
        "0x" + walletSignatureType + signature.dropFirst(2)
    }

    /// The frame with this key's quorum signature appended to `quorum_sigs`; every other byte as received. A frame
    /// that already holds it (a client's retry with the frame it was given) is returned as it is.
    static func frame(for request: SignableRequest, appending signature: String) -> [UInt8] {
        let bytes = request.signedBytes
        let quorumSig = quorumSignature(signature)
        if request.quorumSigs.contains(quorumSig.lowercased()) { return bytes }
        let end = min(max(request.quorumSigsEnd, 0), bytes.count)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count + 140)
        out.append(contentsOf: bytes[0..<end])
        if !request.quorumSigsEmpty { out.append(UInt8(ascii: ",")) }
        out.append(UInt8(ascii: "\""))
        out.append(contentsOf: quorumSig.utf8)
        out.append(UInt8(ascii: "\""))
        out.append(contentsOf: bytes[end...])
        return out
    }

    /// Why a v1 method custodian does not sign is refused: the ones with a clear reason, then any other.
    static func unsignedMethod(_ name: String) -> String {
        if name.hasPrefix("channels.v1.") {
            return "custodian does not sign \(name): of the channel methods it signs request_creation and "
                + "submit_state (with a [channels] policy)"
        }
        switch name {
        case "app_sessions.v1.submit_session_key_state":
            return "custodian does not sign session-key registrations: a key registered for a session could sign "
                + "any of its states, and no policy covers that"
        case "app_sessions.v1.rebalance_app_sessions":
            return "custodian does not sign rebalances: no policy covers moving value between sessions"
        default:
            return "custodian does not sign \(name)"
        }
    }

    /// A request frame's type (nitronode dispatches whatever it says; custodian signs requests only, type 1), its
    /// request id and its timestamp, each noted in `findings` when it is not what it must be.
    static func header(_ frame: [StrictJSON.Node], _ findings: inout Findings) -> (
        requestID: UInt64?, timestamp: UInt64?
    ) {
        if frame[0].value.numberToken != "1" { findings.note(.payloadMalformed, "the frame's type is not 1 (request)") }
        let requestID = unsigned(frame[1].value)
        if requestID == nil { findings.note(.payloadMalformed, "the request id is not an integer from 0 to 2^64-1") }
        let timestamp = unsigned(frame[4].value)
        if timestamp == nil { findings.note(.payloadMalformed, "the timestamp is not an integer from 0 to 2^64-1") }
        return (requestID, timestamp)
    }

    /// A JSON integer token from 0 to 2^64 − 1: digits only (no sign, fraction or exponent).
    static func unsigned(_ value: StrictJSON.Value) -> UInt64? {
        guard let token = value.numberToken else { return nil }
        return decimal(token)
    }

    /// A decimal text of a uint64 as nitronode reads versions and nonces, but strictly: digits only, no leading
    /// zero, no sign.
    static func decimal(_ text: String) -> UInt64? {
        let utf8 = text.utf8
        guard let first = utf8.first, utf8.count <= 20, utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }),
            first != UInt8(ascii: "0") || utf8.count == 1
        else { return nil }
        return UInt64(text)
    }
}

extension AppDefinition {
    /// The definition's ABI values in `GenerateAppSessionIDV1`'s order (PROTOCOL-v1 §3.1).
    var v1Values: [ABIValue] {
        [
            .string(Array((application ?? "").utf8)),
            .array(
                zip(participants, weights).map { participant, weight in
                    .tuple([.address(participant), .uint(UInt64(clamping: weight))])
                }),
            .uint(quorum), .uint(nonce),
        ]
    }

    /// v1's `app_session_id`: keccak256 of the ABI-encoded definition, as `0x` + 64 lower-case hex.
    var v1AppSessionID: String {
        Hex.encode(Keccak256.hash(ABI.encode(v1Values)), prefixed: true)
    }
}

extension FieldReader {
    /// v1's definition: `application_id`, participants as {wallet_address, signature_weight}, uint8 quorum, nonce as
    /// a decimal string.
    mutating func v1Definition(_ node: StrictJSON.Node) -> AppDefinition? {
        guard let fields = node.value.members else {
            findings.note(.payloadMalformed, "definition is not an object")
            return nil
        }
        expectOnly(fields, ["application_id", "participants", "quorum", "nonce"], in: "definition")
        var reader = FieldReader(members: fields, findings: findings)
        let application = reader.required("application_id", in: "definition").flatMap {
            reader.string($0, "application_id")
        }
        var participants: [Address] = []
        var weights: [Int64] = []
        var complete = true
        if let list = reader.required("participants", in: "definition") {
            if let elements = list.value.elements {
                for element in elements {
                    guard let entry = element.value.members else {
                        reader.findings.note(.payloadMalformed, "a participant is not an object")
                        complete = false
                        continue
                    }
                    reader.expectOnly(entry, ["wallet_address", "signature_weight"], in: "a participant")
                    var address: Address?
                    if let wallet = entry.member("wallet_address") {
                        address = reader.address(wallet, "wallet_address")
                    } else {
                        reader.findings.note(.payloadMalformed, "a participant lacks wallet_address")
                    }
                    var weight: UInt64?
                    if let value = entry.member("signature_weight") {
                        weight = NitroliteV1Reader.unsigned(value.value).flatMap { $0 <= 255 ? $0 : nil }
                        if weight == nil { reader.findings.note(.payloadMalformed, "signature_weight is not a uint8") }
                    } else {
                        reader.findings.note(.payloadMalformed, "a participant lacks signature_weight")
                    }
                    if let address, let weight {
                        participants.append(address)
                        weights.append(Int64(weight))
                    } else {
                        complete = false
                    }
                }
            } else {
                reader.findings.note(.payloadMalformed, "participants is not an array")
                complete = false
            }
        } else {
            complete = false
        }
        var quorum: UInt64?
        if let node = reader.required("quorum", in: "definition") {
            quorum = NitroliteV1Reader.unsigned(node.value).flatMap { $0 <= 255 ? $0 : nil }
            if quorum == nil { reader.findings.note(.payloadMalformed, "quorum is not a uint8") }
        }
        var nonce: UInt64?
        if let node = reader.required("nonce", in: "definition") {
            nonce = node.value.string.flatMap(NitroliteV1Reader.decimal)
            if nonce == nil { reader.findings.note(.payloadMalformed, "nonce is not a decimal string of a uint64") }
        }
        findings = reader.findings
        guard let application, complete, let quorum, let nonce else { return nil }
        var definition = AppDefinition(
            application: application, protocolName: "", participants: participants, weights: weights, quorum: quorum,
            challenge: 0, nonce: nonce)
        definition.wire = .nitroliteV1
        return definition
    }

    /// `session_data`: absent reads as "" (as nitronode reads it, and hashes it); at most 1024 bytes.
    mutating func v1SessionData(_ fields: [StrictJSON.Member]) -> String? {
        guard let node = fields.member("session_data") else { return "" }
        guard let text = string(node, "session_data") else { return nil }
        if text.utf8.count > NitroliteV1Reader.maxSessionData {
            findings.note(
                .payloadMalformed,
                "session_data has \(text.utf8.count) bytes; nitronode takes \(NitroliteV1Reader.maxSessionData)")
        }
        return text
    }

    /// `quorum_sigs`: required (it may be empty), an array of strings, passed through as received.
    mutating func quorumSignatures(_ fields: [StrictJSON.Member]) -> StrictJSON.Node? {
        guard let node = required("quorum_sigs", in: "the payload") else { return nil }
        guard let elements = node.value.elements else {
            findings.note(.payloadMalformed, "quorum_sigs is not an array")
            return nil
        }
        if elements.contains(where: { $0.value.string == nil }) {
            findings.note(.payloadMalformed, "a quorum_sigs entry is not a string")
        }
        return node
    }

    /// `app_state_update` (PROTOCOL-v1 §2) and its ABI hash (§3.3).
    mutating func appStateUpdate(_ node: StrictJSON.Node, deposit: Bool) -> (body: RequestBody, hash: [UInt8])? {
        guard let fields = node.value.members else {
            findings.note(.payloadMalformed, "app_state_update is not an object")
            return nil
        }
        expectOnly(
            fields, ["app_session_id", "intent", "version", "allocations", "session_data"], in: "app_state_update")
        var reader = FieldReader(members: fields, findings: findings)
        defer { findings = reader.findings }
        var id: String?
        if let node = reader.required("app_session_id", in: "app_state_update"),
            let text = reader.string(node, "app_session_id")
        {
            if text.utf8.count == 66, text.hasPrefix("0x"), Hex.isLowerCase(text.utf8.dropFirst(2)) {
                id = text
            } else {
                reader.findings.note(.payloadMalformed, "app_session_id is not 0x + 64 lower-case hex digits")
            }
        }
        var intent: UInt64?
        if let node = reader.required("intent", in: "app_state_update") {
            // A number, as the Go type is uint8: `"close"`, `3.0`, `3e0` and 256 are refused.
            intent = NitroliteV1Reader.unsigned(node.value)
            switch intent {
            case nil:
                reader.findings.note(.payloadMalformed, "intent is not an integer (0 operate, 2 withdraw, 3 close)")
            case 1 where !deposit:
                reader.findings.note(.payloadMalformed, "a deposit (intent 1) goes to submit_deposit_state")
            case let value? where deposit && value != 1:
                reader.findings.note(.payloadMalformed, "submit_deposit_state takes intent 1 (deposit), not \(value)")
            case 4:
                reader.findings.note(
                    .payloadMethodNotAllowed,
                    "custodian does not sign intent 4 (rebalance): no policy covers moving value between sessions")
            case let value? where value > 4:
                reader.findings.note(.payloadMalformed, "intent \(value) is not one nitronode defines")
            default: break
            }
        }
        var version: UInt64?
        if let node = reader.required("version", in: "app_state_update") {
            version = node.value.string.flatMap(NitroliteV1Reader.decimal)
            if version == nil || version == 0 {
                reader.findings.note(.payloadMalformed, "version is not a decimal string of a positive uint64")
                version = nil
            }
        }
        let allocations = reader.required("allocations", in: "app_state_update").flatMap { reader.allocations($0) }
        let sessionData = reader.v1SessionData(fields)
        guard let id, let intent, let version, let allocations, let sessionData,
            let idBytes = Hex.decode(id.dropFirst(2))
        else { return nil }
        let body: RequestBody
        switch intent {
        case 0:
            body = .submit(
                appSessionID: id, intent: .operate, version: version, allocations: allocations, sessionData: sessionData
            )
        case 1:
            body = .submit(
                appSessionID: id, intent: .deposit, version: version, allocations: allocations, sessionData: sessionData
            )
        case 2:
            body = .submit(
                appSessionID: id, intent: .withdraw, version: version, allocations: allocations,
                sessionData: sessionData)
        case 3: body = .close(appSessionID: id, allocations: allocations, sessionData: sessionData, version: version)
        default: return nil
        }
        // Each amount as nitronode hashes it: shopspring's plain form, trailing fractional zeros trimmed.
        let encoded = ABI.encodeStateUpdate(
            id: idBytes, intent: intent, version: version,
            allocations: allocations.map { ($0.participant, $0.asset.value, $0.amount.description) },
            data: sessionData)
        return (body, Keccak256.hash(encoded))
    }
}

extension WireProtocol {
    /// What the protocol's node refuses in a definition beyond the rules common to both (PROTOCOL-v1 §5 for v1).
    public func nodeRefusals(of definition: AppDefinition) -> [String] {
        guard self == .nitroliteV1 else { return [] }
        var problems: [String] = []
        let application = Array((definition.application ?? "").utf8)
        let allowed: (UInt8) -> Bool = {
            (97...122).contains($0) || (48...57).contains($0) || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: "-")
        }
        if application.isEmpty || application.count > 66 || !application.allSatisfy(allowed) {
            problems.append("application_id must match ^[a-z0-9_-]{1,66}$")
        }
        if definition.quorum == 0 { problems.append("quorum is 0") }
        if definition.participants.count > NitroliteV1Reader.maxParticipants {
            problems.append(
                "\(definition.participants.count) participants; nitronode takes \(NitroliteV1Reader.maxParticipants)")
        }
        return problems
    }
}
