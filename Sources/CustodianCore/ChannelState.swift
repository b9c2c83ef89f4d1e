import BigInt

/// Nitrolite v1 home-channel states (PROTOCOL-v1-channels §1–2): the identifiers a state derives from its values and
/// the 640-byte message a channel signature covers. Pure functions of values: a signer builds each from its own copy
/// of the channel and the transition it checked, never from bytes handed to it.
public enum ChannelState {
    /// The ChannelHub version that replaces the first byte of a home channel id.
    public static let channelHubVersion: UInt8 = 0x01
    /// The channel signer's type byte (`user_sig` = `0x00` ‖ signature).
    public static let defaultSignerType = "00"

    /// A channel's ledger on one chain, as the contract holds it (PROTOCOL-v1-channels §2): amounts in token units.
    public struct Ledger: Sendable, Equatable {
        public var chainID: UInt64
        public var token: Address
        public var decimals: UInt8
        public var userAllocation: BigInt
        public var userNetFlow: BigInt
        public var nodeAllocation: BigInt
        public var nodeNetFlow: BigInt

        /// A ledger of decimal amounts (the wire's) in token units: each × 10^decimals, which must be integral and fit
        /// uint256 (allocations, not negative) or int256 (net flows); nil otherwise.
        public init?(
            chainID: UInt64, token: Address, decimals: UInt8, userBalance: Amount, userNetFlow: Amount,
            nodeBalance: Amount, nodeNetFlow: Amount
        ) {
            guard let userAllocation = Self.units(userBalance, decimals), userAllocation.signum() >= 0,
                let userFlow = Self.units(userNetFlow, decimals),
                let nodeAllocation = Self.units(nodeBalance, decimals), nodeAllocation.signum() >= 0,
                let nodeFlow = Self.units(nodeNetFlow, decimals),
                ABI.word(userAllocation) != nil, ABI.word(userFlow) != nil, ABI.word(nodeAllocation) != nil,
                ABI.word(nodeFlow) != nil
            else { return nil }
            self.chainID = chainID
            self.token = token
            self.decimals = decimals
            self.userAllocation = userAllocation
            self.userNetFlow = userFlow
            self.nodeAllocation = nodeAllocation
            self.nodeNetFlow = nodeFlow
        }

        /// The all-zero ledger (no escrow).
        public static let none = Ledger(zero: ())

        private init(zero: Void) {
            chainID = 0
            token = Address.zero
            decimals = 0
            userAllocation = 0
            userNetFlow = 0
            nodeAllocation = 0
            nodeNetFlow = 0
        }

        /// `amount` × 10^decimals if that is an integer.
        static func units(_ amount: Amount, _ decimals: UInt8) -> BigInt? {
            guard amount.scale <= Int(decimals) else { return nil }
            return amount.units * BigInt(10).power(Int(decimals) - amount.scale)
        }

        var abi: ABIValue {
            .tuple([
                .uint(chainID), .address(token), .uint(UInt64(decimals)), .uint256(userAllocation),
                .int256(userNetFlow), .uint256(nodeAllocation), .int256(nodeNetFlow),
            ])
        }
    }

    /// `GetHomeChannelID`: keccak256 of the ChannelDefinition tuple, with byte 0 set to the ChannelHub version.
    public static func homeChannelID(
        challengeSeconds: UInt32, user: Address, node: Address, nonce: UInt64, validators: BigInt, asset: String,
        hubVersion: UInt8 = channelHubVersion
    ) -> [UInt8] {
        var hash = Keccak256.hash(
            ABI.encode([
                .uint(UInt64(challengeSeconds)), .address(user), .address(node), .uint(nonce), .uint256(validators),
                .bytes32(assetTag(asset)),
            ]))
        hash[0] = hubVersion
        return hash
    }

    /// `GetEscrowChannelID`: keccak256(abi.encode(bytes32 homeChannelId, uint64 version)).
    public static func escrowChannelID(homeChannelID: [UInt8], version: UInt64) -> [UInt8] {
        Keccak256.hash(ABI.encode([.bytes32(homeChannelID), .uint(version)]))
    }

    /// A channel definition's asset tag: the first 8 bytes of keccak256(symbol), then zeros.
    public static func assetTag(_ asset: String) -> [UInt8] {
        Array(Keccak256.hash(Array(asset.utf8)).prefix(8)) + [UInt8](repeating: 0, count: 24)
    }

    /// `GetStateID`: keccak256(abi.encode(address user, string asset, uint256 epoch, uint256 version)).
    public static func stateID(user: Address, asset: String, epoch: UInt64, version: UInt64) -> [UInt8] {
        Keccak256.hash(
            ABI.encode([.address(user), .string(Array(asset.utf8)), .uint256(BigInt(epoch)), .uint256(BigInt(version))])
        )
    }

    /// `GetSenderTransactionID`: keccak256(abi.encode(string accountID, bytes32 stateID)); the account id is hashed
    /// as the exact text, so its letter case matters.
    public static func transactionID(accountID: String, stateID: [UInt8]) -> [UInt8] {
        Keccak256.hash(ABI.encode([.string(Array(accountID.utf8)), .bytes32(stateID)]))
    }

    /// `GetStateTransitionHash`: keccak256(abi.encode((uint8 type, bytes32 txId, bytes32 accountId, string amount)))
    /// with `amount` in Go's plain form and the two ids read as go-ethereum reads them (``lenientBytes32(_:)``; an
    /// account id of exactly 40 hex digits, an address, left-padded).
    public static func transitionHash(type: UInt8, transactionID: String, accountID: String, amount: Amount)
        -> [UInt8]
    {
        let digits =
            accountID.hasPrefix("0x") || accountID.hasPrefix("0X") ? accountID.dropFirst(2) : Substring(accountID)
        let account: [UInt8]
        if digits.utf8.count == 40, let bytes = Hex.decode(digits) {
            account = [UInt8](repeating: 0, count: 12) + bytes
        } else {
            account = lenientBytes32(accountID)
        }
        return Keccak256.hash(
            ABI.encode([
                .tuple([
                    .uint(UInt64(type)), .bytes32(lenientBytes32(transactionID)), .bytes32(account),
                    .string(Array("\(amount)".utf8)),
                ])
            ]))
    }

    /// go-ethereum's `common.HexToHash`: drop `0x`, prepend `0` to an odd length, decode pairs up to the first one
    /// that is not hex, keep the last 32 bytes, left-pad with zeros.
    public static func lenientBytes32(_ text: String) -> [UInt8] {
        var digits = Array(text.utf8)
        if digits.count >= 2, digits[0] == UInt8(ascii: "0"), digits[1] | 0x20 == UInt8(ascii: "x") {
            digits.removeFirst(2)
        }
        if digits.count % 2 == 1 { digits.insert(UInt8(ascii: "0"), at: 0) }
        var bytes: [UInt8] = []
        var index = 0
        while index + 1 < digits.count, let high = Hex.nibble(digits[index]), let low = Hex.nibble(digits[index + 1]) {
            bytes.append(high << 4 | low)
            index += 2
        }
        let kept = bytes.suffix(32)
        return [UInt8](repeating: 0, count: 32 - kept.count) + kept
    }

    /// `PackState`: abi.encode(bytes32 channelId, bytes signingData), signingData = abi.encode(uint64 version, uint8
    /// intent, bytes32 transitionHash, Ledger home, Ledger nonHome): always 640 bytes.
    public static func message(
        channelID: [UInt8], version: UInt64, intent: UInt8, transitionHash: [UInt8], home: Ledger,
        nonHome: Ledger = .none
    ) -> [UInt8] {
        let data = signingData(version: version, intent: intent, transitionHash: transitionHash, home, nonHome)
        return ABI.encode([.bytes32(channelID), .string(data)])
    }

    /// `toSigningData`: abi.encode(uint64 version, uint8 intent, bytes32 transitionHash, Ledger home, Ledger nonHome),
    /// all static: 544 bytes.
    static func signingData(
        version: UInt64, intent: UInt8, transitionHash: [UInt8], _ home: Ledger, _ nonHome: Ledger
    ) -> [UInt8] {
        ABI.encode([.uint(version), .uint(UInt64(intent)), .bytes32(transitionHash), home.abi, nonHome.abi])
    }

    /// `PackChallengeState`: abi.encode(bytes32 channelId, bytes (signingData ‖ "challenge")), 672 bytes: the
    /// challenger's signature over a co-signed state (PROTOCOL-v1-channels §4).
    public static func challengeMessage(
        channelID: [UInt8], version: UInt64, intent: UInt8, transitionHash: [UInt8], home: Ledger,
        nonHome: Ledger = .none
    ) -> [UInt8] {
        let data = signingData(version: version, intent: intent, transitionHash: transitionHash, home, nonHome)
        return ABI.encode([.bytes32(channelID), .string(data + Array("challenge".utf8))])
    }

    /// EIP-191 `personal_sign` digest of a whole message: keccak256("\x19Ethereum Signed Message:\n" + length + it).
    public static func eip191Digest(_ message: [UInt8]) -> [UInt8] {
        Keccak256.hash(Array("\u{19}Ethereum Signed Message:\n\(message.count)".utf8) + message)
    }
}

extension Address {
    /// 0x000…000.
    public static let zero: Address = {
        guard let zero = Address(bytes: [UInt8](repeating: 0, count: 20)) else { preconditionFailure("20 bytes") }
        return zero
    }()
}

/// Channel session keys (PROTOCOL-v1-channels §4.1): what a wallet signs to delegate its channel signatures to a key,
/// and the `0x01` signature a key then gives. custodian refuses channel session keys by default; these are here so
/// that what it refuses is exactly what it would otherwise sign.
public enum ChannelSessionKey {
    /// keccak256("Nitrolite.SessionKey(address sessionKey,bytes32 metadataHash)").
    public static let typeHash = Keccak256.hash(
        Array("Nitrolite.SessionKey(address sessionKey,bytes32 metadataHash)".utf8))
    /// The validator id of the session-key signer (`SessionKeyValidator`).
    public static let signerType: UInt8 = 0x01

    /// keccak256(abi.encode(address user, uint64 version, string[] assets, uint64 expiresAt)).
    public static func metadataHash(user: Address, version: UInt64, assets: [String], expiresAt: UInt64) -> [UInt8] {
        Keccak256.hash(
            ABI.encode([
                .address(user), .uint(version), .array(assets.map { .string(Array($0.utf8)) }), .uint(expiresAt),
            ]))
    }

    /// The 96-byte authorization both the wallet and the key sign (EIP-191 over the whole of it):
    /// abi.encode(bytes32 typeHash, address sessionKey, bytes32 metadataHash).
    public static func authorization(sessionKey: Address, metadataHash: [UInt8]) -> [UInt8] {
        ABI.encode([.bytes32(typeHash), .address(sessionKey), .bytes32(metadataHash)])
    }

    /// A state signature by a session key: `0x01` ‖ abi.encode((address sessionKey, bytes32 metadataHash, bytes
    /// authSignature), bytes keySignature), 417 bytes with 65-byte signatures.
    public static func stateSignature(
        sessionKey: Address, metadataHash: [UInt8], authorizationSignature: [UInt8], keySignature: [UInt8]
    ) -> [UInt8] {
        [signerType]
            + ABI.encode([
                .tuple([.address(sessionKey), .bytes32(metadataHash), .string(authorizationSignature)]),
                .string(keySignature),
            ])
    }
}
