import CustodianCore
import CustodianCrypto

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Why the audit log cannot be used.
public enum AuditError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The records could not be written and synced; nothing staged was kept.
    case unavailable(String)
    /// The existing log does not verify: the first bad record's line number and why.
    case broken(line: Int, why: String)

    public var description: String {
        switch self {
        case .unavailable(let why): "the audit log is unavailable: \(why)"
        case .broken(let line, let why): "the audit log does not verify at line \(line): \(why)"
        }
    }
}

/// One verified record of a log, with the fields replay and verification need.
public struct AuditEntry: Sendable {
    public var line: Int
    public var seq: UInt64
    public var event: String
    public var members: [StrictJSON.Member]

    public func string(_ key: String) -> String? { members.member(key)?.value.string }

    public func integer(_ key: String) -> UInt64? {
        members.member(key)?.value.numberToken.flatMap { UInt64($0) }
    }
}

/// The verified content of a log file: its entries and where a torn last line begins, if any.
public struct AuditChain: Sendable {
    public static let genesis = String(repeating: "0", count: 64)

    public var entries: [AuditEntry] = []
    /// The hash of the last complete line (64 zeros for an empty log).
    public var head = AuditChain.genesis
    /// The byte length of the complete lines.
    public var validLength = 0
    /// Bytes after the last newline: a write torn by a crash (never acknowledged), or a truncation.
    public var tornTail = 0

    /// An empty chain.
    public init() {}

    /// Verifies the chain of `bytes`: consecutive `seq` from 1, each `prev` the SHA-256 of the line before.
    /// Checkpoint signatures are checked by ``verifyCheckpoints(address:)``.
    public static func read(_ bytes: [UInt8]) -> Result<AuditChain, AuditError> {
        var chain = AuditChain()
        var start = 0
        var lineNumber = 0
        while start < bytes.count {
            guard let newline = bytes[start...].firstIndex(of: 0x0A) else {
                chain.tornTail = bytes.count - start
                break
            }
            lineNumber += 1
            let line = Array(bytes[start..<newline])
            guard case .success(let root) = StrictJSON.parse(line), let members = root.value.members else {
                return .failure(.broken(line: lineNumber, why: "not a JSON object"))
            }
            let entry = AuditEntry(
                line: lineNumber, seq: members.member("seq")?.value.numberToken.flatMap { UInt64($0) } ?? 0,
                event: members.member("event")?.value.string ?? "", members: members)
            guard entry.seq == UInt64(lineNumber) else {
                return .failure(.broken(line: lineNumber, why: "seq \(entry.seq) where \(lineNumber) was expected"))
            }
            guard entry.string("prev") == chain.head else {
                // Say which line was edited where the edit can be shown: a decision whose req no longer hashes to
                // its request_hash.
                if let previous = chain.entries.last, previous.event == "sign", let req = previous.string("req"),
                    previous.string("request_hash") != Hex.encode(Keccak256.hash(Array(req.utf8)), prefixed: true)
                {
                    return .failure(
                        .broken(
                            line: previous.line, why: "request_hash is not the Keccak-256 of req: the record was edited"
                        ))
                }
                return .failure(
                    .broken(
                        line: lineNumber,
                        why:
                            "its prev is not the hash of line \(lineNumber - 1): line \(lineNumber - 1) was edited, or a "
                            + "line was deleted or moved here"))
            }
            chain.head = SHA256.hex(line)
            chain.entries.append(entry)
            start = newline + 1
            chain.validLength = start
        }
        return .success(chain)
    }

    /// Checks every record against itself: a decision's `request_hash` is Keccak-256 of its `req`, and an
    /// allowance's signature recovers to `address` over it. This locates an edited decision exactly, even the last
    /// line, which no later `prev` covers.
    public func verifyDecisions(address: Address) -> AuditError? {
        for entry in entries where entry.event == "sign" {
            guard let req = entry.string("req") else { continue }  // refused before a req was found
            let digest = Keccak256.hash(Array(req.utf8))
            guard entry.string("request_hash") == Hex.encode(digest, prefixed: true) else {
                return .broken(
                    line: entry.line, why: "request_hash is not the Keccak-256 of req: the record was edited")
            }
            guard entry.string("decision") == "allow" else { continue }
            guard let signatureText = entry.string("signature"), let signature = Hex.decode(signatureText),
                Recovery.address(digest: digest, signature: signature) == address
            else { return .broken(line: entry.line, why: "the signature does not recover to \(address) over req") }
        }
        return nil
    }

    /// Checks every checkpoint: `head` equals its `prev`, and its EIP-191 signature recovers to `address`.
    public func verifyCheckpoints(address: Address) -> AuditError? {
        for entry in entries where entry.event == "checkpoint" {
            guard let head = entry.string("head"), head == entry.string("prev"), let headBytes = Hex.decode(head),
                headBytes.count == 32
            else { return .broken(line: entry.line, why: "checkpoint head differs from its prev") }
            guard let signatureText = entry.string("signature"), let signature = Hex.decode(signatureText),
                Recovery.address(digest: SigningKey.personalDigest(headBytes), signature: signature) == address
            else { return .broken(line: entry.line, why: "checkpoint signature does not recover to \(address)") }
        }
        return nil
    }
}

/// The append-only, hash-chained audit log (CONTRACT §6).
///
/// Records are staged, then committed together with one write and one fdatasync (group commit); a failed commit
/// truncates the file back and forgets the staged records, so the log never holds a record whose decision was
/// not delivered as recorded.
public final class AuditLog {
    public let path: String
    private var fd: Int32
    /// The seq of the last committed record.
    public private(set) var seq: UInt64
    /// The hash of the last committed line.
    public private(set) var head: String
    private var committedLength: Int
    private var staged: [UInt8] = []
    private var stagedSeq: UInt64
    private var stagedHead: String

    /// Opens the log at `path` (mode 0600, created if missing) after `chain` was read from it.
    /// A torn last line is cut off: it was never acknowledged to anyone.
    public init(path: String, chain: AuditChain) throws(AuditError) {
        self.path = path
        let fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw .unavailable("cannot open \(path): \(String(cString: strerror(errno)))") }
        if chain.tornTail > 0 {
            guard ftruncate(fd, off_t(chain.validLength)) == 0 else {
                close(fd)
                throw .unavailable("cannot cut the torn last line of \(path)")
            }
        }
        self.fd = fd
        self.seq = UInt64(chain.entries.count)
        self.head = chain.head
        self.committedLength = chain.validLength
        self.stagedSeq = seq
        self.stagedHead = head
    }

    deinit { close(fd) }

    /// The number of staged, uncommitted records.
    public var stagedCount: UInt64 { stagedSeq - seq }

    /// The hash the next staged record will name as `prev`.
    public var stagedPrev: String { stagedHead }

    /// Stages one record: writes `seq`, `time`, `event`, then the caller's fields, then `prev`. Returns its seq.
    @discardableResult
    public func stage(event: String, timeMs: UInt64, _ fields: (inout JSONWriter) -> Void) -> UInt64 {
        let next = stagedSeq + 1
        var writer = JSONWriter(capacity: 512)
        writer.beginObject()
        writer.field("seq", next)
        writer.field("time", RFC3339.format(ms: timeMs))
        writer.field("time_ms", timeMs)
        writer.field("event", event)
        fields(&writer)
        writer.field("prev", stagedHead)
        writer.endObject()
        stagedHead = SHA256.hex(writer.bytes)
        stagedSeq = next
        staged.append(contentsOf: writer.bytes)
        staged.append(0x0A)
        return next
    }

    /// Writes and syncs everything staged. On failure the file is cut back and the staged records are dropped.
    public func commit() throws(AuditError) {
        guard !staged.isEmpty else { return }
        defer { staged.removeAll(keepingCapacity: true) }
        do {
            try writeAndSync()
        } catch {
            _ = ftruncate(fd, off_t(committedLength))
            stagedSeq = seq
            stagedHead = head
            throw error
        }
        committedLength += staged.count
        seq = stagedSeq
        head = stagedHead
    }

    private func writeAndSync() throws(AuditError) {
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw .unavailable("fstat failed") }
        // A log unlinked or replaced under us would swallow records no auditor will ever read.
        guard info.st_nlink > 0 else { throw .unavailable("\(path) was removed") }
        if Int(info.st_size) != committedLength {
            guard ftruncate(fd, off_t(committedLength)) == 0 else {
                throw .unavailable("cannot restore the log's length")
            }
        }
        var written = 0
        while written < staged.count {
            let count = staged.withUnsafeBytes { buffer -> Int in
                guard let base = buffer.baseAddress else { return 0 }
                return pwrite(fd, base + written, staged.count - written, off_t(committedLength + written))
            }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { throw .unavailable("write failed: \(String(cString: strerror(errno)))") }
            written += count
        }
        guard fdatasync(fd) == 0 else { throw .unavailable("fdatasync failed: \(String(cString: strerror(errno)))") }
    }
}
