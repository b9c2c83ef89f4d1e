/// Reads a NitroRPC v0 message (PROTOCOL.md §2, §6, §10): an envelope `{"req":[…],"sig":[…]}` or a bare `req`
/// array. The result carries the exact bytes of the `req` array, which is what gets signed, never a re-encoding.
public struct NitroRPCv0Reader: Sendable {
    /// The largest integer accepted in an integer field: ClearNode passes numbers through float64.
    public static let maxSafeInteger: UInt64 = (1 << 53) - 1

    public init() {}

    /// Checks `message` and returns what it asks, or the first reason (in contract order) to refuse it. Reads v0
    /// only: ``RequestReader`` also takes v1 frames.
    public func read(_ message: [UInt8]) -> Result<SignableRequest, Denial> {
        switch StrictJSON.parse(message) {
        case .success(let root): read(root, in: message)
        case .failure(let failure): .failure(RequestReader.denial(failure))
        }
    }

    /// Checks the parsed `message`.
    func read(_ root: StrictJSON.Node, in message: [UInt8]) -> Result<SignableRequest, Denial> {
        var findings = Findings()
        var reqNode: StrictJSON.Node?
        var signatureTokens: [ArraySlice<UInt8>] = []
        switch root.value {
        case .array:
            reqNode = root
        case .object(let members):
            for member in members {
                switch member.key {
                case _ where member.key.hasSameBytes(as: "req"):
                    reqNode = member.node
                case _ where member.key.hasSameBytes(as: "sig"):
                    guard let elements = member.node.value.elements else {
                        findings.note(.payloadMalformed, "sig is not an array")
                        continue
                    }
                    for element in elements {
                        guard let text = element.value.string, Self.isSignatureHex(text) else {
                            findings.note(.payloadMalformed, "a sig entry is not 0x + 130 hex digits")
                            continue
                        }
                        signatureTokens.append(message[element.span])
                    }
                default:
                    findings.note(.payloadUnknownField, "unknown top-level key \"\(member.key)\" (only req and sig)")
                }
            }
        default:
            return .failure(Denial(.payloadMalformed, "the message is neither an envelope object nor a req array"))
        }
        guard let reqNode, let req = reqNode.value.elements else {
            findings.note(.payloadMalformed, "no req array")
            return .failure(findings.denial ?? Denial(.payloadMalformed, "no req array"))
        }
        guard req.count == 4 else {
            findings.note(.payloadMalformed, "req has \(req.count) elements, not 4")
            return .failure(findings.denial ?? Denial(.payloadMalformed, "req has \(req.count) elements"))
        }
        let requestID = Self.unsigned(req[0].value, min: 1)
        if requestID == nil { findings.note(.payloadMalformed, "the request id is not an integer from 1 to 2^53-1") }
        let timestamp = Self.unsigned(req[3].value, min: 1)
        if timestamp == nil { findings.note(.payloadMalformed, "the timestamp is not an integer from 1 to 2^53-1") }
        guard let methodName = req[1].value.string else {
            findings.note(.payloadMalformed, "the method is not a string")
            return .failure(findings.denial ?? Denial(.payloadMalformed, "bad method"))
        }
        guard let params = req[2].value.members else {
            findings.note(.payloadMalformed, "params is not an object")
            return .failure(findings.denial ?? Denial(.payloadMalformed, "bad params"))
        }
        guard let method = RequestMethod(rawValue: methodName), methodName.hasSameBytes(as: method.rawValue),
            method.wireProtocol == .nitroRPCv0
        else {
            findings.note(.payloadMethodNotAllowed, "custodian does not sign \(methodName)")
            return .failure(findings.denial ?? Denial(.payloadMethodNotAllowed, "unknown method"))
        }
        var fields = FieldReader(members: params, findings: findings)
        let body = fields.body(for: method)
        findings = fields.findings
        if let denial = findings.denial { return .failure(denial) }
        guard let body, let requestID, let timestamp else {
            return .failure(Denial(.payloadMalformed, "incomplete request"))
        }
        let signed = Array(message[reqNode.span])
        let hash = Keccak256.hash(signed)
        return .success(
            SignableRequest(
                method: method, requestID: requestID, timestamp: timestamp, body: body, signedBytes: signed,
                digest: hash, requestHash: hash, existingSignatureTokens: signatureTokens))
    }

    /// The v0 envelope with `signature` appended: the `req` bytes unchanged, co-signatures kept in order.
    public static func envelope(for request: SignableRequest, appending signature: String) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(request.signedBytes.count + 160 * (request.existingSignatureTokens.count + 1) + 16)
        out.append(contentsOf: #"{"req":"#.utf8)
        out.append(contentsOf: request.signedBytes)
        out.append(contentsOf: #","sig":["#.utf8)
        for token in request.existingSignatureTokens {
            out.append(contentsOf: token)
            out.append(UInt8(ascii: ","))
        }
        out.append(UInt8(ascii: "\""))
        out.append(contentsOf: signature.utf8)
        out.append(contentsOf: "\"]}".utf8)
        return out
    }

    /// ClearNode's rule for a signature string: `0x`/`0X`, hex, exactly 65 bytes.
    static func isSignatureHex(_ text: String) -> Bool {
        let utf8 = text.utf8
        guard utf8.count == 132, text.hasPrefix("0x") || text.hasPrefix("0X") else { return false }
        return Hex.decode(text.dropFirst(2))?.count == 65
    }

    /// A plain digit token with no sign, fraction or exponent, from `min` to 2^53 − 1.
    static func unsigned(_ value: StrictJSON.Value, min: UInt64 = 0) -> UInt64? {
        guard let token = value.numberToken, !token.isEmpty, token.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }),
            token.utf8.count <= 16, let number = UInt64(token), number >= min, number <= maxSafeInteger
        else { return nil }
        return number
    }

    /// A plain integer token, optionally negative, within ±(2^53 − 1).
    static func signed(_ value: StrictJSON.Value) -> Int64? {
        guard let token = value.numberToken else { return nil }
        if token.hasPrefix("-") {
            guard let magnitude = unsigned(.number(String(token.dropFirst()))) else { return nil }
            return -Int64(magnitude)
        }
        return unsigned(value).map { Int64($0) }
    }
}

/// Reads the params of one method, noting every finding and keeping the first in contract order.
struct FieldReader {
    let members: [StrictJSON.Member]
    var findings: Findings

    mutating func body(for method: RequestMethod) -> RequestBody? {
        switch method {
        case .v1CreateAppSession, .v1SubmitAppState, .v1SubmitDepositState:
            findings.note(.payloadMethodNotAllowed, "\(method.rawValue) is a v1 method: send it as a v1 frame")
            return nil
        case .createAppSession:
            expectOnly(members, ["definition", "allocations", "session_data"], in: "params")
            let definition = required("definition").flatMap { self.definition($0) }
            let allocations = required("allocations").flatMap { self.allocations($0) }
            let sessionData = optionalString("session_data")
            guard let definition, let allocations else { return nil }
            return .create(definition: definition, allocations: allocations, sessionData: sessionData)
        case .submitAppState:
            expectOnly(members, ["app_session_id", "intent", "version", "allocations", "session_data"], in: "params")
            let id = required("app_session_id").flatMap { string($0, "app_session_id") }
            var intent: Intent?
            if let node = members.member("intent") {
                if let text = node.value.string, let parsed = Intent(rawValue: text) {
                    intent = parsed
                } else {
                    findings.note(.payloadMalformed, "intent is not operate, deposit or withdraw")
                }
            }
            var version: UInt64?
            if let node = members.member("version") {
                version = NitroRPCv0Reader.unsigned(node.value, min: 1)
                if version == nil { findings.note(.payloadMalformed, "version is not a positive integer") }
            }
            let allocations = required("allocations").flatMap { self.allocations($0) }
            let sessionData = optionalString("session_data")
            guard let id, let allocations else { return nil }
            return .submit(
                appSessionID: id, intent: intent, version: version, allocations: allocations, sessionData: sessionData)
        case .closeAppSession:
            expectOnly(members, ["app_session_id", "allocations", "session_data"], in: "params")
            let id = required("app_session_id").flatMap { string($0, "app_session_id") }
            let allocations = required("allocations").flatMap { self.allocations($0) }
            let sessionData = optionalString("session_data")
            guard let id, let allocations else { return nil }
            return .close(appSessionID: id, allocations: allocations, sessionData: sessionData)
        }
    }

    mutating func expectOnly(_ members: [StrictJSON.Member], _ known: [String], in place: String) {
        for member in members where !known.contains(where: { $0.hasSameBytes(as: member.key) }) {
            if let variant = known.first(where: { $0.lowercased() == member.key.lowercased() }) {
                findings.noteFolded(
                    "\(place) has the unknown key \"\(member.key)\", which Go's decoder reads as \"\(variant)\"")
            } else {
                findings.note(.payloadUnknownField, "\(place) has the unknown key \"\(member.key)\"")
            }
        }
    }

    mutating func required(_ key: String, in place: String = "params") -> StrictJSON.Node? {
        guard let node = members.member(key) else {
            findings.note(.payloadMalformed, "\(place) lacks \(key)")
            return nil
        }
        return node
    }

    mutating func string(_ node: StrictJSON.Node, _ name: String) -> String? {
        guard let text = node.value.string else {
            findings.note(.payloadMalformed, "\(name) is not a string")
            return nil
        }
        return text
    }

    mutating func optionalString(_ key: String) -> String? {
        guard let node = members.member(key) else { return nil }
        return string(node, key)
    }

    mutating func address(_ node: StrictJSON.Node, _ name: String) -> Address? {
        guard let text = node.value.string else {
            findings.note(.payloadMalformed, "\(name) is not a string")
            return nil
        }
        guard let address = Address(eip55: text) else {
            findings.note(.payloadBadAddress, "\(name) \(text) is not an address in EIP-55 form")
            return nil
        }
        return address
    }

    mutating func allocations(_ node: StrictJSON.Node) -> [Allocation]? {
        guard let elements = node.value.elements else {
            findings.note(.payloadMalformed, "allocations is not an array")
            return nil
        }
        var result: [Allocation] = []
        for element in elements {
            guard let fields = element.value.members else {
                findings.note(.payloadMalformed, "an allocation is not an object")
                continue
            }
            expectOnly(fields, ["participant", "asset", "amount"], in: "an allocation")
            var participant: Address?
            if let node = fields.member("participant") {
                participant = address(node, "participant")
            } else {
                findings.note(.payloadMalformed, "an allocation lacks participant")
            }
            var asset: String?
            if let node = fields.member("asset") {
                asset = string(node, "asset")
            } else {
                findings.note(.payloadMalformed, "an allocation lacks asset")
            }
            var amount: Amount?
            if let node = fields.member("amount") {
                if let text = node.value.string, let parsed = Amount(text) {
                    amount = parsed
                } else {
                    let shown = String(
                        decoding: Array(node.value.string?.utf8 ?? "non-string".utf8).prefix(40), as: UTF8.self)
                    findings.note(.payloadBadAmount, "amount \(shown) is not a decimal string")
                }
            } else {
                findings.note(.payloadMalformed, "an allocation lacks amount")
            }
            if let participant, let asset, let amount {
                result.append(Allocation(participant: participant, asset: ExactString(asset), amount: amount))
            }
        }
        return result
    }

    mutating func definition(_ node: StrictJSON.Node) -> AppDefinition? {
        guard let fields = node.value.members else {
            findings.note(.payloadMalformed, "definition is not an object")
            return nil
        }
        expectOnly(
            fields, ["application", "protocol", "participants", "weights", "quorum", "challenge", "nonce"],
            in: "definition")
        var application: String?
        if let node = fields.member("application") { application = string(node, "application") }
        let protocolName = fields.member("protocol").flatMap { string($0, "protocol") }
        if fields.member("protocol") == nil { findings.note(.payloadMalformed, "definition lacks protocol") }
        var participants: [Address]?
        if let node = fields.member("participants") {
            if let elements = node.value.elements {
                let parsed = elements.compactMap { address($0, "participant") }
                if parsed.count == elements.count { participants = parsed }
            } else {
                findings.note(.payloadMalformed, "participants is not an array")
            }
        } else {
            findings.note(.payloadMalformed, "definition lacks participants")
        }
        var weights: [Int64]?
        if let node = fields.member("weights"), let elements = node.value.elements {
            let parsed = elements.compactMap { NitroRPCv0Reader.signed($0.value) }
            if parsed.count == elements.count {
                weights = parsed
            } else {
                findings.note(.payloadMalformed, "a weight is not an integer token")
            }
        } else {
            findings.note(.payloadMalformed, "weights is missing or not an array")
        }
        let quorum = integer(fields, "quorum")
        let challenge = integer(fields, "challenge")
        let nonce = integer(fields, "nonce")
        guard let protocolName, let participants, let weights, let quorum, let challenge, let nonce else { return nil }
        return AppDefinition(
            application: application, protocolName: protocolName, participants: participants, weights: weights,
            quorum: quorum, challenge: challenge, nonce: nonce)
    }

    mutating func integer(_ fields: [StrictJSON.Member], _ key: String) -> UInt64? {
        guard let node = fields.member(key) else {
            findings.note(.payloadMalformed, "definition lacks \(key)")
            return nil
        }
        guard let value = NitroRPCv0Reader.unsigned(node.value) else {
            findings.note(.payloadMalformed, "\(key) is not an integer from 0 to 2^53-1")
            return nil
        }
        return value
    }
}
