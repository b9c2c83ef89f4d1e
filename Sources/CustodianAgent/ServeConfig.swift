import TOMLKit

/// `custodian serve --config C`: the serve flags as TOML keys (`-` written `_`).
public struct ServeConfig: Sendable, Equatable {
    public var socket: String?
    public var keyFile: String?
    public var policy: String?
    public var stateDir: String?
    public var passphraseFile: String?
    public var allowUID: [UInt32] = []
    public var allowGID: [UInt32] = []
    public var checkpointEvery: UInt64?
    public var snapshotEvery: UInt64?
    public var segmentMaxBytes: Int?
    public var segmentMaxRecords: UInt64?
    public var maxConnections: Int?
    public var idleTimeoutS: Int64?
    public var rateLimit: Int?
    public var ledgerURL: String?
    public var ledgerTimeoutMs: Int?

    /// No settings.
    public init() {}

    static let keys = [
        "socket", "key_file", "policy", "state_dir", "passphrase_file", "allow_uid", "allow_gid", "checkpoint_every",
        "snapshot_every", "segment_max_bytes", "segment_max_records",
        "max_connections", "idle_timeout_s", "rate_limit", "ledger_url", "ledger_timeout_ms",
    ]

    /// Reads a config file; an unknown key or a wrong type refuses the file.
    public static func load(path: String) throws(PolicyFileError) -> ServeConfig {
        let bytes: [UInt8]
        do { bytes = try FileIO.readAll(path) } catch { throw PolicyFileError("cannot read \(path): \(error)") }
        guard let text = String(validating: bytes, as: UTF8.self) else { throw PolicyFileError("\(path): not UTF-8") }
        let table: TOMLTable
        do { table = try TOMLTable(string: text) } catch { throw PolicyFileError("\(path): \(error)") }
        var config = ServeConfig()
        for key in table.keys where !keys.contains(key) {
            throw PolicyFileError("\(path): unknown key \"\(key)\" (known: \(keys.joined(separator: ", ")))")
        }
        func string(_ key: String) throws(PolicyFileError) -> String? {
            guard let value = table[key] else { return nil }
            guard let text = value.string else { throw PolicyFileError("\(path): \(key) must be a string") }
            return text
        }
        func integer(_ key: String) throws(PolicyFileError) -> Int? {
            guard let value = table[key] else { return nil }
            guard value.type == .int, let int = value.int, int >= 0 else {
                throw PolicyFileError("\(path): \(key) must be a non-negative integer")
            }
            return int
        }
        func ids(_ key: String) throws(PolicyFileError) -> [UInt32] {
            guard let value = table[key] else { return [] }
            if value.type == .int, let int = value.int, let id = UInt32(exactly: int) { return [id] }
            guard let array = value.array else { throw PolicyFileError("\(path): \(key) must be ids") }
            var result: [UInt32] = []
            for element in array {
                guard let int = element.int, let id = UInt32(exactly: int) else {
                    throw PolicyFileError("\(path): \(key) must be ids")
                }
                result.append(id)
            }
            return result
        }
        config.socket = try string("socket")
        config.keyFile = try string("key_file")
        config.policy = try string("policy")
        config.stateDir = try string("state_dir")
        config.passphraseFile = try string("passphrase_file")
        config.allowUID = try ids("allow_uid")
        config.allowGID = try ids("allow_gid")
        config.checkpointEvery = try integer("checkpoint_every").map { UInt64($0) }
        config.snapshotEvery = try integer("snapshot_every").map { UInt64($0) }
        config.segmentMaxBytes = try integer("segment_max_bytes")
        config.segmentMaxRecords = try integer("segment_max_records").map { UInt64($0) }
        config.maxConnections = try integer("max_connections")
        config.idleTimeoutS = try integer("idle_timeout_s").map { Int64($0) }
        config.rateLimit = try integer("rate_limit")
        config.ledgerURL = try string("ledger_url")
        config.ledgerTimeoutMs = try integer("ledger_timeout_ms")
        return config
    }
}
