import CustodianCore
import CustodianCrypto
import TOMLKit

#if canImport(Glibc)
    import Glibc
#endif

/// Why a policy file was refused.
public struct PolicyFileError: Error, Equatable, Sendable, CustomStringConvertible {
    public var message: String
    public var description: String { message }

    init(_ message: String) { self.message = message }
}

/// A policy as loaded from a file: the values, and the hash of the file's exact bytes (`status.policy_hash`).
public struct LoadedPolicy: Sendable {
    public var policy: Policy
    /// Lowercase hex SHA-256 of the file's bytes.
    public var hash: String
    public var path: String?
}

/// Reads policy files (TOML, version 1, CONTRACT §5). Deny by default: an unknown table or key, a wrong type, an
/// amount that is not a decimal string, all refuse the whole file rather than being ignored.
public enum PolicyFile {
    /// The version this build reads.
    public static let version = 1

    /// Loads and validates the policy at `path`: refused if others may write it, and read again if it changed while
    /// it was read (an editor rewriting it in place), so that only a file read whole is applied.
    public static func load(path: String) throws(PolicyFileError) -> LoadedPolicy {
        var bytes: [UInt8]?
        for attempt in 0..<5 {
            if attempt > 0 { usleep(50_000) }
            bytes = try readStable(path)
            if bytes != nil { break }
        }
        guard let bytes else {
            throw PolicyFileError("\(path) kept changing while it was read; try again once it is written")
        }
        var loaded = try parse(bytes)
        loaded.path = path
        return loaded
    }

    /// The file's bytes if it did not change while they were read (the same file at the path, with the same size
    /// and modification time before and after), nil if it did.
    private static func readStable(_ path: String) throws(PolicyFileError) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw PolicyFileError("cannot read \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var before = stat()
        guard fstat(fd, &before) == 0 else {
            throw PolicyFileError("cannot stat \(path): \(String(cString: strerror(errno)))")
        }
        guard before.st_mode & S_IFMT == S_IFREG else { throw PolicyFileError("\(path) is not a regular file") }
        guard before.st_mode & 0o002 == 0 else {
            throw PolicyFileError(
                "\(path) is writable by others (mode 0\(String(before.st_mode & 0o777, radix: 8))): anyone could "
                    + "loosen the policy; chmod o-w \(path)")
        }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                throw PolicyFileError("cannot read \(path): \(String(cString: strerror(errno)))")
            }
            if count == 0 { break }
            bytes.append(contentsOf: chunk[0..<count])
            guard bytes.count <= 1 << 20 else { throw PolicyFileError("\(path) is larger than 1 MiB") }
        }
        var after = stat()
        var named = stat()
        guard fstat(fd, &after) == 0, stat(path, &named) == 0 else { return nil }
        func same(_ one: stat, _ other: stat) -> Bool {
            one.st_dev == other.st_dev && one.st_ino == other.st_ino && one.st_size == other.st_size
                && one.st_mtim.tv_sec == other.st_mtim.tv_sec && one.st_mtim.tv_nsec == other.st_mtim.tv_nsec
        }
        guard same(before, after), same(after, named), Int(after.st_size) == bytes.count else { return nil }
        return bytes
    }

    /// The tables a policy file must have, so that a file cut off while it was written is refused rather than
    /// read as a looser policy (each can still switch itself off explicitly: `allow = []`, `max_own_loss = {}`).
    static let requiredTables = ["requests", "sessions", "assets", "counterparties", "velocity"]

    /// Parses policy text.
    public static func parse(_ bytes: [UInt8]) throws(PolicyFileError) -> LoadedPolicy {
        guard let text = String(validating: bytes, as: UTF8.self) else { throw PolicyFileError("not UTF-8") }
        // A file cut off in the middle of a line ("window_s = 864" of 86400) can still be valid TOML.
        guard bytes.last == 0x0A else {
            throw PolicyFileError("the file does not end with a newline: cut off while it was written?")
        }
        let table: TOMLTable
        do { table = try TOMLTable(string: text) } catch let error as TOMLParseError {
            throw PolicyFileError("TOML error at line \(error.source.begin.line): \(error.description)")
        } catch { throw PolicyFileError("TOML error: \(error)") }
        let policy = try build(table)
        return LoadedPolicy(policy: policy, hash: SHA256.hex(bytes), path: nil)
    }

    private static func build(_ root: TOMLTable) throws(PolicyFileError) -> Policy {
        try allowOnly(
            root,
            ["version", "requests", "sessions", "assets", "counterparties", "velocity", "enforcement", "channels"],
            in: "the file")
        guard let version = root["version"]?.int else { throw PolicyFileError("missing version = 1") }
        guard version == Self.version else { throw PolicyFileError("policy version \(version); this build reads 1") }
        var policy = Policy()

        guard let requests = try table(root, "requests") else { throw PolicyFileError("missing [requests]") }
        try allowOnly(requests, ["methods", "max_age_ms", "max_future_ms"], in: "[requests]")
        guard let methodNames = try strings(requests, "methods", in: "[requests]") else {
            throw PolicyFileError("[requests] methods is required")
        }
        var methods = Set<RequestMethod>()
        for name in methodNames {
            guard let method = RequestMethod(rawValue: name) else {
                throw PolicyFileError("[requests] methods: unknown method \"\(name)\"")
            }
            methods.insert(method)
        }
        policy.methods = methods
        if let value = try integer(requests, "max_age_ms", in: "[requests]") { policy.maxAgeMs = value }
        if let value = try integer(requests, "max_future_ms", in: "[requests]") { policy.maxFutureMs = value }

        if let sessions = try table(root, "sessions") {
            try allowOnly(
                sessions, ["applications", "protocols", "max_participants", "allow_quorum_without_us"], in: "[sessions]"
            )
            if let applications = try strings(sessions, "applications", in: "[sessions]") {
                policy.applications = applications.map { ExactString($0) }
            }
            if let protocols = try strings(sessions, "protocols", in: "[sessions]") {
                for name in protocols where name != "NitroRPC/0.2" && name != "NitroRPC/0.4" {
                    throw PolicyFileError("[sessions] protocols: unknown protocol \"\(name)\"")
                }
                policy.protocols = protocols.map { ExactString($0) }
            }
            if let value = try integer(sessions, "max_participants", in: "[sessions]") {
                guard value >= 2, value <= 1024 else { throw PolicyFileError("[sessions] max_participants: 2 to 1024") }
                policy.maxParticipants = Int(value)
            }
            if let value = sessions["allow_quorum_without_us"] {
                guard let flag = value.bool else {
                    throw PolicyFileError("[sessions] allow_quorum_without_us: a boolean")
                }
                policy.allowQuorumWithoutUs = flag
            }
        }

        guard let assets = try table(root, "assets"), !assets.keys.isEmpty else {
            throw PolicyFileError("no [assets.<symbol>] table: every asset is refused")
        }
        for symbol in assets.keys {
            guard let asset = assets[symbol]?.table else { throw PolicyFileError("[assets] \(symbol) is not a table") }
            let place = "[assets.\(symbol)]"
            try allowOnly(
                asset,
                [
                    "decimals", "max_session_total", "max_own_funding", "max_allocation", "max_own_loss",
                    "max_open_funding",
                ], in: place)
            guard let decimals = try integer(asset, "decimals", in: place), decimals <= 78 else {
                throw PolicyFileError("\(place) decimals (0 to 78) is required")
            }
            policy.assets[ExactString(symbol)] = Policy.AssetRule(
                decimals: Int(decimals),
                maxSessionTotal: try amount(asset, "max_session_total", in: place),
                maxOwnFunding: try amount(asset, "max_own_funding", in: place),
                maxAllocation: try amount(asset, "max_allocation", in: place),
                maxOwnLoss: try amount(asset, "max_own_loss", in: place),
                maxOpenFunding: try amount(asset, "max_open_funding", in: place))
        }

        if let counterparties = try table(root, "counterparties") {
            try allowOnly(counterparties, ["allow"], in: "[counterparties]")
            guard let allowed = try strings(counterparties, "allow", in: "[counterparties]") else {
                throw PolicyFileError("[counterparties] allow is required (allow = [] for any counterparty)")
            }
            for text in allowed {
                guard let address = Address(eip55: text) else {
                    throw PolicyFileError("[counterparties] allow: \(text) is not an EIP-55 address")
                }
                policy.counterparties.insert(address)
            }
        }

        if let velocity = try table(root, "velocity") {
            try allowOnly(velocity, ["window_s", "max_own_loss"], in: "[velocity]")
            guard let window = try integer(velocity, "window_s", in: "[velocity]"), window > 0 else {
                throw PolicyFileError("[velocity] window_s (seconds, > 0) is required")
            }
            var caps: [ExactString: Amount] = [:]
            guard let losses = try table(velocity, "max_own_loss") else {
                throw PolicyFileError("[velocity] max_own_loss is required (max_own_loss = {} for no daily cap)")
            }
            for symbol in losses.keys {
                guard policy.assets[ExactString(symbol)] != nil else {
                    throw PolicyFileError("[velocity] max_own_loss names \(symbol), which [assets] does not list")
                }
                caps[ExactString(symbol)] = try amount(losses, symbol, in: "[velocity] max_own_loss")
            }
            policy.velocity = Policy.Velocity(windowSeconds: window, maxOwnLoss: caps)
        }

        if let enforcement = try table(root, "enforcement") {
            try allowOnly(enforcement, ["mode", "warn"], in: "[enforcement]")
            if let value = enforcement["mode"] {
                switch value.string {
                case "enforce": break
                case "warn": policy.warn = ReasonCode.warnable
                default: throw PolicyFileError("[enforcement] mode must be \"enforce\" or \"warn\"")
                }
            }
            for name in try strings(enforcement, "warn", in: "[enforcement]") ?? [] {
                guard let reason = ReasonCode(rawValue: name) else {
                    throw PolicyFileError("[enforcement] warn: unknown reason code \"\(name)\"")
                }
                guard ReasonCode.warnable.contains(reason) else {
                    throw PolicyFileError(
                        "[enforcement] warn: \(name) always refuses (it guards the payload or the ledger)")
                }
                policy.warn.insert(reason)
            }
        }
        if let channels = try table(root, "channels") { policy.channels = try channelPolicy(channels, assets: policy) }
        // Last, so that an error in what is there is reported first.
        for name in requiredTables where root[name] == nil {
            throw PolicyFileError(
                "missing [\(name)]: every table of the format is required, so that a file cut off while it was "
                    + "written is not read as a looser policy (README: \"Policy files are applied only when read "
                    + "whole\")")
        }
        return policy
    }

    /// `[channels]` (CONTRACT §5): the node, `min_challenge_s`, `[channels.assets.<symbol>]` (an asset `[assets]`
    /// lists, whose decimals the channel's token has) and `[channels.transfers]`.
    private static func channelPolicy(_ channels: TOMLTable, assets policy: Policy) throws(PolicyFileError)
        -> ChannelPolicy
    {
        try allowOnly(channels, ["node", "min_challenge_s", "assets", "transfers"], in: "[channels]")
        guard let nodeText = channels["node"]?.string, let node = Address(eip55: nodeText) else {
            throw PolicyFileError("[channels] node (the nitronode signing address, EIP-55) is required")
        }
        var minimum: UInt32 = 86_400
        if let value = try integer(channels, "min_challenge_s", in: "[channels]") {
            guard value >= 3_600, let seconds = UInt32(exactly: value) else {
                throw PolicyFileError("[channels] min_challenge_s: at least 3600 seconds (nitronode takes 86400 up)")
            }
            minimum = seconds
        }
        var assets: [String: ChannelPolicy.Asset] = [:]
        guard let tables = try table(channels, "assets"), !tables.keys.isEmpty else {
            throw PolicyFileError("[channels] needs a [channels.assets.<symbol>] table: where the home channel lives")
        }
        for symbol in tables.keys {
            let place = "[channels.assets.\(symbol)]"
            guard let asset = tables[symbol]?.table else { throw PolicyFileError("\(place) is not a table") }
            try allowOnly(asset, ["blockchain_id", "token", "max_transfer", "max_outflow"], in: place)
            guard let rule = policy.assets[ExactString(symbol)], let decimals = UInt8(exactly: rule.decimals) else {
                throw PolicyFileError("\(place): [assets] does not list \(symbol) (its decimals are the token's)")
            }
            guard let chain = try integer(asset, "blockchain_id", in: place), chain > 0 else {
                throw PolicyFileError("\(place) blockchain_id (the chain id, > 0) is required")
            }
            guard let tokenText = asset["token"]?.string, let token = Address(eip55: tokenText) else {
                throw PolicyFileError("\(place) token (the token contract, EIP-55) is required")
            }
            assets[symbol] = ChannelPolicy.Asset(
                chainID: chain, token: token, decimals: decimals,
                maxTransfer: try amount(asset, "max_transfer", in: place),
                maxOutflow: try amount(asset, "max_outflow", in: place))
        }
        var recipients: [Address] = []
        if let transfers = try table(channels, "transfers") {
            try allowOnly(transfers, ["allow"], in: "[channels.transfers]")
            for text in try strings(transfers, "allow", in: "[channels.transfers]") ?? [] {
                guard let address = Address(eip55: text) else {
                    throw PolicyFileError("[channels.transfers] allow: \(text) is not an EIP-55 address")
                }
                recipients.append(address)
            }
        }
        return ChannelPolicy(
            node: node, minChallengeSeconds: minimum, assets: assets, transferRecipients: recipients)
    }

    private static func allowOnly(_ table: TOMLTable, _ keys: [String], in place: String) throws(PolicyFileError) {
        for key in table.keys where !keys.contains(key) {
            throw PolicyFileError("\(place): unknown key \"\(key)\" (known: \(keys.joined(separator: ", ")))")
        }
    }

    private static func table(_ parent: TOMLTable, _ key: String) throws(PolicyFileError) -> TOMLTable? {
        guard let value = parent[key] else { return nil }
        guard let table = value.table else { throw PolicyFileError("\(key) must be a table") }
        return table
    }

    private static func integer(_ table: TOMLTable, _ key: String, in place: String) throws(PolicyFileError) -> UInt64?
    {
        guard let value = table[key] else { return nil }
        guard value.type == .int, let int = value.int, int >= 0 else {
            throw PolicyFileError("\(place) \(key) must be a non-negative integer")
        }
        return UInt64(int)
    }

    private static func strings(_ table: TOMLTable, _ key: String, in place: String) throws(PolicyFileError)
        -> [String]?
    {
        guard let value = table[key] else { return nil }
        guard let array = value.array else { throw PolicyFileError("\(place) \(key) must be an array of strings") }
        var result: [String] = []
        for element in array {
            guard let text = element.string else {
                throw PolicyFileError("\(place) \(key) must be an array of strings")
            }
            result.append(text)
        }
        return result
    }

    private static func amount(_ table: TOMLTable, _ key: String, in place: String) throws(PolicyFileError) -> Amount? {
        guard let value = table[key] else { return nil }
        guard let text = value.string, let amount = Amount(text) else {
            throw PolicyFileError("\(place) \(key) must be a decimal string such as \"1000\" or \"0.5\"")
        }
        return amount
    }
}
