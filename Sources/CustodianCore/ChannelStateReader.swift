import BigInt

/// A v1 home-channel state as a client sends it (`StateV1`, PROTOCOL-v1-channels §1.1), read strictly: every reading
/// on which nitronode's Go decoder and a strict parser could differ (§8) is refused, and what is kept is the values,
/// never the text (the signer rebuilds the state from its own copy and compares values).
public struct ChannelStateWire: Sendable, Equatable {
    public struct Transition: Sendable, Equatable {
        public var type: UInt8
        /// `0x` + 64 lower-case hex digits.
        public var transactionID: String
        /// The exact text sent (it is hashed as text, so its spelling matters): `0x` + 40 or 64 lower-case hex.
        public var accountID: String
        public var amount: Amount

        public init(type: UInt8, transactionID: String, accountID: String, amount: Amount) {
            self.type = type
            self.transactionID = transactionID
            self.accountID = accountID
            self.amount = amount
        }
    }

    /// The home ledger, in decimal amounts of the asset (net flows may be negative).
    public struct HomeLedger: Sendable, Equatable {
        public var token: Address
        public var chainID: UInt64
        public var userBalance: Amount
        public var userNetFlow: Amount
        public var nodeBalance: Amount
        public var nodeNetFlow: Amount

        public init(
            token: Address, chainID: UInt64, userBalance: Amount, userNetFlow: Amount, nodeBalance: Amount,
            nodeNetFlow: Amount
        ) {
            self.token = token
            self.chainID = chainID
            self.userBalance = userBalance
            self.userNetFlow = userNetFlow
            self.nodeBalance = nodeBalance
            self.nodeNetFlow = nodeNetFlow
        }
    }

    /// `0x` + 64 lower-case hex digits.
    public var id: String
    public var transition: Transition
    public var asset: String
    public var userWallet: Address
    public var epoch: UInt64
    public var version: UInt64
    /// `0x` + 64 lower-case hex digits, when given.
    public var homeChannelID: String?
    public var homeLedger: HomeLedger
    /// `0x` + hex, when given (a signer fills in its own).
    public var userSig: String?
    public var nodeSig: String?

    public init(
        id: String, transition: Transition, asset: String, userWallet: Address, epoch: UInt64, version: UInt64,
        homeChannelID: String?, homeLedger: HomeLedger, userSig: String?, nodeSig: String?
    ) {
        self.id = id
        self.transition = transition
        self.asset = asset
        self.userWallet = userWallet
        self.epoch = epoch
        self.version = version
        self.homeChannelID = homeChannelID
        self.homeLedger = homeLedger
        self.userSig = userSig
        self.nodeSig = nodeSig
    }
}

/// A channel definition as `channels.v1.request_creation` sends it (§5).
public struct ChannelDefinitionWire: Sendable, Equatable {
    public var nonce: UInt64
    public var challengeSeconds: UInt32
    /// The validator bitmap as sent (`0x` + 2 to 64 even hex digits) and its value.
    public var validatorsText: String
    public var validators: BigInt

    public init(nonce: UInt64, challengeSeconds: UInt32, validatorsText: String, validators: BigInt) {
        self.nonce = nonce
        self.challengeSeconds = challengeSeconds
        self.validatorsText = validatorsText
        self.validators = validators
    }
}

/// A channel session-key state (§4.1), read strictly so that a malformed one is named as such; custodian never signs
/// one (a channel session key is the most powerful signature there is).
public struct ChannelSessionKeyWire: Sendable, Equatable {
    public var user: Address
    public var sessionKey: Address
    public var version: UInt64
    public var assets: [String]
    public var expiresAt: UInt64

    public init(user: Address, sessionKey: Address, version: UInt64, assets: [String], expiresAt: UInt64) {
        self.user = user
        self.sessionKey = sessionKey
        self.version = version
        self.assets = assets
        self.expiresAt = expiresAt
    }
}

/// What a channel frame asks.
public enum ChannelFrame: Sendable, Equatable {
    case submitState(ChannelStateWire)
    case requestCreation(ChannelStateWire, ChannelDefinitionWire)
    case submitSessionKeyState(ChannelSessionKeyWire)
}

/// Reads the frames of the channel methods (`[1, id, method, payload, ts]`): `channels.v1.submit_state`,
/// `channels.v1.request_creation`, `channels.v1.submit_session_key_state`; the reasons as for app sessions
/// (an unknown key anywhere is the reason, whatever else is wrong).
public struct ChannelStateReader: Sendable {
    public static let methods = [
        "channels.v1.submit_state", "channels.v1.request_creation", "channels.v1.submit_session_key_state",
    ]

    public init() {}

    /// A bare `StateV1` object (a deposit frame's `user_state`, a node's answer), read as strictly as in a frame.
    public func readState(_ json: [UInt8]) -> Result<ChannelStateWire, Denial> {
        let root: StrictJSON.Node
        switch StrictJSON.parse(json) {
        case .success(let value): root = value
        case .failure(let failure): return .failure(RequestReader.denial(failure))
        }
        var fields = FieldReader(members: [], findings: Findings())
        let state = fields.channelState(root)
        if let folded = fields.findings.folded { return .failure(folded) }
        if let denial = fields.findings.denial { return .failure(denial) }
        guard let state else { return .failure(Denial(.payloadMalformed, "incomplete state")) }
        return .success(state)
    }

    public func read(_ message: [UInt8]) -> Result<(requestID: UInt64, timestamp: UInt64, frame: ChannelFrame), Denial>
    {
        let root: StrictJSON.Node
        switch StrictJSON.parse(message) {
        case .success(let value): root = value
        case .failure(let failure): return .failure(RequestReader.denial(failure))
        }
        guard let frame = root.value.elements, frame.count == 5 else {
            return .failure(Denial(.payloadMalformed, "a v1 frame is an array of 5 elements"))
        }
        var findings = Findings()
        let (requestID, timestamp) = NitroliteV1Reader.header(frame, &findings)
        guard let method = frame[2].value.string, let payload = frame[3].value.members else {
            return .failure(Denial(.payloadMalformed, "the method is not a string, or the payload not an object"))
        }
        guard Self.methods.contains(where: { $0.hasSameBytes(as: method) }) else {
            return .failure(Denial(.payloadMethodNotAllowed, "\(method) is not a channel method custodian reads"))
        }
        var fields = FieldReader(members: payload, findings: findings)
        var read: ChannelFrame?
        switch method {
        case "channels.v1.submit_state":
            fields.expectOnly(payload, ["state"], in: "the payload")
            if let state = fields.required("state", in: "the payload").flatMap({ fields.channelState($0) }) {
                read = .submitState(state)
            }
        case "channels.v1.request_creation":
            fields.expectOnly(payload, ["state", "channel_definition"], in: "the payload")
            let state = fields.required("state", in: "the payload").flatMap { fields.channelState($0) }
            let definition = fields.required("channel_definition", in: "the payload").flatMap {
                fields.channelDefinition($0)
            }
            if let state, let definition { read = .requestCreation(state, definition) }
        default:
            fields.expectOnly(payload, ["state"], in: "the payload")
            if let key = fields.required("state", in: "the payload").flatMap({ fields.sessionKeyState($0) }) {
                read = .submitSessionKeyState(key)
            }
        }
        findings = fields.findings
        // A key Go folds into a known one changes what the rest means: it is the reason, whatever else is wrong.
        // Other findings in contract order (go_decode: a null home_channel_id beside an unrelated unknown key is
        // malformed).
        if let folded = findings.folded { return .failure(folded) }
        if let denial = findings.denial { return .failure(denial) }
        guard let read, let requestID, let timestamp else { return .failure(Denial(.payloadMalformed, "incomplete")) }
        return .success((requestID, timestamp, read))
    }
}

extension FieldReader {
    /// `StateV1` (§1.1), strictly: ids and hex in lower case, numbers as the Go types take them and no other way,
    /// amounts in their plain form, no escrow fields (custodian refuses escrow and migration).
    mutating func channelState(_ node: StrictJSON.Node) -> ChannelStateWire? {
        object(
            node, "state",
            keys: [
                "id", "transition", "asset", "user_wallet", "epoch", "version", "home_channel_id", "home_ledger",
                "user_sig", "node_sig",
            ]
        ) { reader, fields in
            let id = reader.required("id", in: "state").flatMap { reader.lowerHex($0, "id", digits: 64) }
            let transition = reader.required("transition", in: "state").flatMap { reader.channelTransition($0) }
            var asset: String?
            if let node = reader.required("asset", in: "state"), let text = reader.string(node, "asset") {
                // A lone surrogate reads as U+FFFD in Go (and the parser already refuses unpaired escapes); an empty
                // symbol, or one with control characters, is no asset.
                if text.isEmpty || text.utf8.count > 32 || text.utf8.contains(where: { $0 < 0x21 || $0 == 0x7F }) {
                    reader.findings.note(.payloadMalformed, "asset is not a symbol (1 to 32 printable bytes)")
                } else {
                    asset = text
                }
            }
            var wallet: Address?
            if let node = reader.required("user_wallet", in: "state"), let text = reader.string(node, "user_wallet") {
                // Lower case (as nitronode stores it) or EIP-55: both read as the same address in Go and here.
                wallet =
                    Hex.isLowerCase(text.utf8.dropFirst(2)) && text.hasPrefix("0x") && text.utf8.count == 42
                    ? Address(anyCase: text) : Address(eip55: text)
                if wallet == nil {
                    reader.findings.note(.payloadMalformed, "user_wallet is not 0x + 40 hex (lower or EIP-55)")
                }
            }
            let epoch = reader.required("epoch", in: "state").flatMap { reader.decimalString($0, "epoch") }
            let version = reader.required("version", in: "state").flatMap { reader.decimalString($0, "version") }
            var homeChannelID: String?
            if let node = fields.member("home_channel_id") {
                homeChannelID = reader.lowerHex(node, "home_channel_id", digits: 64)
            }
            let ledger = reader.required("home_ledger", in: "state").flatMap { reader.homeLedger($0) }
            var userSig: String?
            var nodeSig: String?
            for (key, keep) in [("user_sig", true), ("node_sig", false)] {
                guard let node = fields.member(key) else { continue }
                guard let text = node.value.string, text.hasPrefix("0x"), text.utf8.count > 2, text.utf8.count % 2 == 0,
                    Hex.decode(text.dropFirst(2)) != nil
                else {
                    reader.findings.note(.payloadMalformed, "\(key) is not 0x + hex")
                    continue
                }
                if keep { userSig = text.lowercased() } else { nodeSig = text.lowercased() }
            }
            guard let id, let transition, let asset, let wallet, let epoch, let version, let ledger else { return nil }
            if fields.member("home_channel_id") != nil && homeChannelID == nil { return nil }
            return ChannelStateWire(
                id: id, transition: transition, asset: asset, userWallet: wallet, epoch: epoch, version: version,
                homeChannelID: homeChannelID, homeLedger: ledger, userSig: userSig, nodeSig: nodeSig)
        }
    }

    /// `transition`: `type` a JSON integer 0–255 (a name, a string, `30.0`, `3e1` or 286 are refused, as Go refuses
    /// them; a missing or null type, which Go reads as 0, too), `tx_id` and `account_id` in lower-case hex, `amount`
    /// in its plain form (Go hashes the trimmed text: `25.00`, `2.5e1`, `+25`, `025`, `.5` would sign "25").
    mutating func channelTransition(_ node: StrictJSON.Node) -> ChannelStateWire.Transition? {
        object(node, "transition", keys: ["type", "tx_id", "account_id", "amount"]) { reader, fields in
            var type: UInt8?
            if let node = reader.required("type", in: "transition") {
                type = NitroliteV1Reader.unsigned(node.value).flatMap { $0 <= 255 ? UInt8($0) : nil }
                if type == nil {
                    reader.findings.note(.payloadMalformed, "transition type is not an integer from 0 to 255")
                }
            }
            let txID = reader.required("tx_id", in: "transition").flatMap { reader.lowerHex($0, "tx_id", digits: 64) }
            var accountID: String?
            if let node = reader.required("account_id", in: "transition"), let text = reader.string(node, "account_id")
            {
                let digits = text.utf8.count - 2
                if text.hasPrefix("0x"), digits == 40 || digits == 64, Hex.isLowerCase(text.utf8.dropFirst(2)) {
                    accountID = text
                } else {
                    reader.findings.note(.payloadMalformed, "account_id is not 0x + 40 or 64 lower-case hex digits")
                }
            }
            let amount = reader.required("amount", in: "transition").flatMap {
                reader.plainAmount($0, "amount", signed: false)
            }
            guard let type, let txID, let accountID, let amount else { return nil }
            return ChannelStateWire.Transition(type: type, transactionID: txID, accountID: accountID, amount: amount)
        }
    }

    /// `home_ledger`: the token in lower case, the chain id a decimal string, four amounts in their plain form.
    mutating func homeLedger(_ node: StrictJSON.Node) -> ChannelStateWire.HomeLedger? {
        object(
            node, "home_ledger",
            keys: ["token_address", "blockchain_id", "user_balance", "user_net_flow", "node_balance", "node_net_flow"]
        ) { reader, fields in
            var token: Address?
            if let node = reader.required("token_address", in: "home_ledger") {
                token = reader.lowerHex(node, "token_address", digits: 40).flatMap(Address.init(anyCase:))
            }
            let chain = reader.required("blockchain_id", in: "home_ledger").flatMap {
                reader.decimalString($0, "blockchain_id")
            }
            var amounts: [Amount] = []
            for key in ["user_balance", "user_net_flow", "node_balance", "node_net_flow"] {
                guard let node = reader.required(key, in: "home_ledger"),
                    let amount = reader.plainAmount(node, key, signed: key.hasSuffix("net_flow"))
                else { continue }
                amounts.append(amount)
            }
            guard let token, let chain, amounts.count == 4 else { return nil }
            return ChannelStateWire.HomeLedger(
                token: token, chainID: chain, userBalance: amounts[0], userNetFlow: amounts[1], nodeBalance: amounts[2],
                nodeNetFlow: amounts[3])
        }
    }

    /// `channel_definition`: `nonce` a decimal string (not zero), `challenge` a JSON integer (uint32 seconds),
    /// `approved_sig_validators` `0x` + 2 to 64 even hex digits.
    mutating func channelDefinition(_ node: StrictJSON.Node) -> ChannelDefinitionWire? {
        object(node, "channel_definition", keys: ["nonce", "challenge", "approved_sig_validators"]) { reader, fields in
            var nonce = reader.required("nonce", in: "channel_definition").flatMap { reader.decimalString($0, "nonce") }
            if nonce == 0 {
                reader.findings.note(.payloadMalformed, "nonce is 0")
                nonce = nil
            }
            var challenge: UInt32?
            if let node = reader.required("challenge", in: "channel_definition") {
                challenge = NitroliteV1Reader.unsigned(node.value).flatMap { UInt32(exactly: $0) }
                if challenge == nil {
                    reader.findings.note(.payloadMalformed, "challenge is not an integer of seconds")
                }
            }
            var bitmap: (String, BigInt)?
            if let node = reader.required("approved_sig_validators", in: "channel_definition"),
                let text = reader.string(node, "approved_sig_validators")
            {
                let digits = text.utf8.count - 2
                if text.hasPrefix("0x"), digits >= 2, digits <= 64, digits % 2 == 0,
                    Hex.decode(text.dropFirst(2)) != nil, let value = BigInt(String(text.dropFirst(2)), radix: 16)
                {
                    bitmap = (text, value)
                } else {
                    reader.findings.note(.payloadMalformed, "approved_sig_validators is not 0x + 1 to 32 bytes of hex")
                }
            }
            guard let nonce, let challenge, let bitmap else { return nil }
            return ChannelDefinitionWire(
                nonce: nonce, challengeSeconds: challenge, validatorsText: bitmap.0, validators: bitmap.1)
        }
    }

    /// A session-key state (§4.1): addresses in lower case, `version` and `expires_at` decimal strings (no sign),
    /// `assets` an array of strings, both signatures hex.
    mutating func sessionKeyState(_ node: StrictJSON.Node) -> ChannelSessionKeyWire? {
        object(
            node, "state",
            keys: ["user_address", "session_key", "version", "assets", "expires_at", "user_sig", "session_key_sig"]
        ) { reader, fields in
            let user = reader.required("user_address", in: "state").flatMap {
                reader.lowerHex($0, "user_address", digits: 40).flatMap(Address.init(anyCase:))
            }
            let key = reader.required("session_key", in: "state").flatMap {
                reader.lowerHex($0, "session_key", digits: 40).flatMap(Address.init(anyCase:))
            }
            let version = reader.required("version", in: "state").flatMap { reader.decimalString($0, "version") }
            let expires = reader.required("expires_at", in: "state").flatMap { reader.decimalString($0, "expires_at") }
            var assets: [String]?
            if let node = reader.required("assets", in: "state") {
                if let elements = node.value.elements, elements.allSatisfy({ $0.value.string != nil }) {
                    assets = elements.compactMap { $0.value.string }
                } else {
                    reader.findings.note(.payloadMalformed, "assets is not an array of strings")
                }
            }
            for name in ["user_sig", "session_key_sig"] {
                if let node = reader.required(name, in: "state") { _ = reader.lowerHex(node, name, digits: nil) }
            }
            guard let user, let key, let version, let expires, let assets else { return nil }
            return ChannelSessionKeyWire(
                user: user, sessionKey: key, version: version, assets: assets, expiresAt: expires)
        }
    }

    /// Reads the object `node` (named `name` in messages) with a reader of its own: any key but `keys` is noted as
    /// unknown, and what the reader finds is noted here.
    mutating func object<T>(
        _ node: StrictJSON.Node, _ name: String, keys: [String],
        _ read: (inout FieldReader, [StrictJSON.Member]) -> T?
    ) -> T? {
        guard let fields = node.value.members else {
            findings.note(.payloadMalformed, "\(name) is not an object")
            return nil
        }
        expectOnly(fields, keys, in: name)
        var reader = FieldReader(members: fields, findings: findings)
        defer { findings = reader.findings }
        return read(&reader, fields)
    }

    /// `0x` + lower-case hex (`digits` of them, or any even number when nil).
    mutating func lowerHex(_ node: StrictJSON.Node, _ name: String, digits: Int?) -> String? {
        guard let text = string(node, name) else { return nil }
        let count = text.utf8.count - 2
        guard text.hasPrefix("0x"), count > 0, digits.map({ count == $0 }) ?? (count % 2 == 0),
            Hex.isLowerCase(text.utf8.dropFirst(2))
        else {
            findings.note(
                .payloadMalformed, "\(name) is not 0x + \(digits.map { "\($0) " } ?? "")lower-case hex digits")
            return nil
        }
        return text
    }

    /// A uint64 as a decimal string: digits only, no sign, no leading zero (Go's ParseUint takes `"02"`).
    mutating func decimalString(_ node: StrictJSON.Node, _ name: String) -> UInt64? {
        guard let value = node.value.string.flatMap(NitroliteV1Reader.decimal) else {
            findings.note(.payloadMalformed, "\(name) is not a decimal string of a uint64 (digits, no leading zero)")
            return nil
        }
        return value
    }

    /// An amount in its plain form: the wire grammar, trimmed (no trailing fractional zero), with a `-` only where
    /// `signed`.
    mutating func plainAmount(_ node: StrictJSON.Node, _ name: String, signed: Bool) -> Amount? {
        guard let text = node.value.string, let amount = signed ? Amount(signed: text) : Amount(text),
            amount.description == text
        else {
            let shown = String(decoding: Array(node.value.string?.utf8 ?? "non-string".utf8).prefix(40), as: UTF8.self)
            findings.note(.payloadBadAmount, "\(name) \(shown) is not a decimal string in its plain form")
            return nil
        }
        return amount
    }
}

extension ChannelStateReader {
    /// Whether `message` is a channel frame (`[…, "channels.v1.<method>", …]`, five elements): those go to
    /// ``read(_:)``, every other message to ``RequestReader``. A byte search first, so that other messages pay no
    /// second parse.
    public static func isChannelFrame(_ message: [UInt8]) -> Bool {
        guard RecordSearch.contains(Array(#""channels.v1."#.utf8), in: message[...]),
            case .success(let root) = StrictJSON.parse(message), let frame = root.value.elements, frame.count == 5,
            let method = frame[2].value.string
        else { return false }
        return method.utf8.starts(with: "channels.v1.".utf8)
    }

    /// `frame` (a v1 frame already read) with `user_sig` of the state under payload key `key` (`state`, or a deposit's
    /// `user_state`) set to `userSig`: the value replaced where one is given, else the member added at the end of the
    /// state object; every other byte as received. Nil when the frame does not read as one.
    public static func filling(_ frame: [UInt8], key: String, userSig: String) -> [UInt8]? {
        guard case .success(let root) = StrictJSON.parse(frame), let elements = root.value.elements,
            elements.count == 5, let state = elements[3].value.members.flatMap({ $0.member(key) }),
            let members = state.value.members
        else { return nil }
        let quoted = Array("\"\(userSig)\"".utf8)
        if let given = members.member("user_sig") {
            return Array(frame[..<given.span.lowerBound]) + quoted + Array(frame[given.span.upperBound...])
        }
        let close = state.span.upperBound - 1
        guard close > state.span.lowerBound, frame[close] == UInt8(ascii: "}") else { return nil }
        let member = (members.isEmpty ? [] : [UInt8(ascii: ",")]) + Array(#""user_sig":"#.utf8) + quoted
        return Array(frame[..<close]) + member + Array(frame[close...])
    }

    /// The hashes a recorded channel-bearing request names, rebuilt from its text and the token decimals its record
    /// names: for a channel frame, the Keccak-256 of the state's 640-byte message and that message's EIP-191 digest
    /// (the state was compared with custodian's own before it was signed, so its message is the one custodian
    /// built); for a deposit frame, the app update's request hash and digest too. Nil: the text does not read so.
    public static func recordedHashes(_ req: [UInt8], decimals: UInt8) -> (
        channel: (hash: [UInt8], digest: [UInt8]), app: (hash: [UInt8], digest: [UInt8])?
    )? {
        if isChannelFrame(req) {
            guard case .success(let read) = ChannelStateReader().read(req) else { return nil }
            let state: ChannelStateWire
            switch read.frame {
            case .submitState(let sent), .requestCreation(let sent, _): state = sent
            case .submitSessionKeyState: return nil
            }
            guard let message = ChannelState.message(of: state, decimals: decimals) else { return nil }
            return ((Keccak256.hash(message), ChannelState.eip191Digest(message)), nil)
        }
        guard case .success(let request) = NitroliteV1Reader().read(req), let state = request.userState,
            let message = ChannelState.message(of: state, decimals: decimals)
        else { return nil }
        return ((Keccak256.hash(message), ChannelState.eip191Digest(message)), (request.requestHash, request.digest))
    }
}

/// A byte-string search (the audit fast paths' and the channel router's).
public enum RecordSearch {
    public static func contains(_ needle: [UInt8], in haystack: ArraySlice<UInt8>) -> Bool {
        guard let first = needle.first, needle.count <= haystack.count else { return false }
        var index = haystack.startIndex
        let last = haystack.endIndex - needle.count
        while index <= last {
            if haystack[index] == first, haystack[index..<(index + needle.count)].elementsEqual(needle) { return true }
            index += 1
        }
        return false
    }
}
