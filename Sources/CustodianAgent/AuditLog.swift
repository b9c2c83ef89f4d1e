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

/// One record of a log, parsed.
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

/// What reading a log established: its length, its head, where a torn last line begins, and its agent.
///
/// Reading streams: records are checked one by one and only those a caller asks for are parsed in full and
/// handed to it, so a log of millions of records is verified in one pass without being held in memory.
public struct AuditChain: Sendable {
    public static let genesis = String(repeating: "0", count: 64)

    /// The number of complete records.
    public var count = 0
    /// The hash of the last complete line (64 zeros for an empty log).
    public var head = AuditChain.genesis
    /// The byte length of the complete lines.
    public var validLength = 0
    /// Bytes after the last newline: a write torn by a crash (never acknowledged), or a truncation.
    public var tornTail = 0
    /// The agent named by the first start record.
    public var agent: Address?

    /// An empty chain.
    public init() {}

    /// Verifies the chain of `bytes` (consecutive `seq` from 1, each `prev` the SHA-256 of the line before) and
    /// hands every record for which `wants(event, line)` holds to `visit`, parsed, in order. The first error of
    /// either stops the reading.
    public static func read(
        _ bytes: [UInt8], wants: (UInt64, String, ArraySlice<UInt8>) -> Bool = { _, _, _ in false },
        visit: (AuditEntry) -> AuditError? = { _ in nil }
    ) -> Result<AuditChain, AuditError> {
        var chain = AuditChain()
        var start = 0
        var previous: (line: Int, bytes: ArraySlice<UInt8>)?
        let hasher = SHA256.Hasher()
        var head = [UInt8](repeating: 0, count: 32)
        while start < bytes.count {
            guard let newline = bytes[start...].firstIndex(of: 0x0A) else {
                chain.tornTail = bytes.count - start
                break
            }
            let number = chain.count + 1
            let line = bytes[start..<newline]
            guard let (seq, prev, event) = RecordShape.fields(line) else {
                return .failure(.broken(line: number, why: "not a record custodian writes (seq, event, prev)"))
            }
            guard seq == UInt64(number) else {
                return .failure(.broken(line: number, why: "seq \(seq) where \(number) was expected"))
            }
            guard RecordShape.hexEquals(prev, head) else {
                chain.head = Hex.encode(head)
                return .failure(locate(number, previous: previous))
            }
            let wanted = wants(seq, event, line)
            if event == "start" || wanted {
                guard case .success(let root) = StrictJSON.parse(Array(line)), let members = root.value.members else {
                    return .failure(.broken(line: number, why: "not a JSON object"))
                }
                let entry = AuditEntry(line: number, seq: seq, event: event, members: members)
                if event == "start", chain.agent == nil {
                    chain.agent = entry.string("address").flatMap(Address.init(eip55:))
                }
                if wanted, let error = visit(entry) { return .failure(error) }
            }
            hasher.hash(line, into: &head)
            chain.count = number
            previous = (number, line)
            start = newline + 1
            chain.validLength = start
        }
        chain.head = Hex.encode(head)
        return .success(chain)
    }

    /// Why line `number`'s prev does not match: the line before it provably edited, or else the general case.
    private static func locate(_ number: Int, previous: (line: Int, bytes: ArraySlice<UInt8>)?) -> AuditError {
        if let previous, case .success(let root) = StrictJSON.parse(Array(previous.bytes)),
            let members = root.value.members, members.member("event")?.value.string == "sign",
            let req = members.member("req")?.value.string,
            members.member("request_hash")?.value.string != Hex.encode(Keccak256.hash(Array(req.utf8)), prefixed: true)
        {
            return .broken(line: previous.line, why: "request_hash is not the Keccak-256 of req: the record was edited")
        }
        return .broken(
            line: number,
            why: "its prev is not the hash of line \(number - 1): line \(number - 1) was edited, or a line was deleted "
                + "or moved here")
    }

    /// A decision's `request_hash` must be Keccak-256 of its `req`, and an allowance's signature must recover to
    /// `address` over it. This locates an edited decision exactly, even the last line, which no later prev covers.
    public static func verifyDecision(_ entry: AuditEntry, address: Address) -> AuditError? {
        guard entry.event == "sign", let req = entry.string("req") else { return nil }
        let digest = Keccak256.hash(Array(req.utf8))
        guard entry.string("request_hash") == Hex.encode(digest, prefixed: true) else {
            return .broken(line: entry.line, why: "request_hash is not the Keccak-256 of req: the record was edited")
        }
        guard entry.string("decision") == "allow" else { return nil }
        guard let signatureText = entry.string("signature"), let signature = Hex.decode(signatureText),
            Recovery.address(digest: digest, signature: signature) == address
        else { return .broken(line: entry.line, why: "the signature does not recover to \(address) over req") }
        return nil
    }

    /// A checkpoint's `head` must equal its `prev`, and its EIP-191 signature must recover to `address`.
    public static func verifyCheckpoint(_ entry: AuditEntry, address: Address) -> AuditError? {
        guard entry.event == "checkpoint" else { return nil }
        guard let head = entry.string("head"), head == entry.string("prev"), let headBytes = Hex.decode(head),
            headBytes.count == 32
        else { return .broken(line: entry.line, why: "checkpoint head differs from its prev") }
        guard let signatureText = entry.string("signature"), let signature = Hex.decode(signatureText),
            Recovery.address(digest: SigningKey.personalDigest(headBytes), signature: signature) == address
        else { return .broken(line: entry.line, why: "checkpoint signature does not recover to \(address)") }
        return nil
    }
}

/// The fields every record has at fixed places, as custodian writes them: `{"seq":N,…,"event":"E",…,"prev":"H"}`.
/// Read without parsing the whole line, so that verifying a long log costs little more than hashing it.
public enum RecordShape {
    static let seqPrefix = Array(#"{"seq":"#.utf8)
    static let prevKey = Array(#","prev":""#.utf8)
    static let eventKey = Array(#""event":""#.utf8)

    static func fields(_ line: ArraySlice<UInt8>) -> (UInt64, ArraySlice<UInt8>, String)? {
        let base = line.startIndex
        guard line.count > seqPrefix.count + prevKey.count + 66, line.starts(with: seqPrefix) else { return nil }
        var seq: UInt64 = 0
        var index = base + seqPrefix.count
        while index < line.endIndex, line[index] >= 0x30, line[index] <= 0x39 {
            let (times, overflow) = seq.multipliedReportingOverflow(by: 10)
            guard !overflow else { return nil }
            seq = times + UInt64(line[index] - 0x30)
            index += 1
        }
        guard index < line.endIndex, line[index] == UInt8(ascii: ",") else { return nil }
        // prev is the last member: ,"prev":"<64 hex>"}
        let prevStart = line.endIndex - 2 - 64
        guard line[line.endIndex - 1] == UInt8(ascii: "}"), line[line.endIndex - 2] == UInt8(ascii: "\""),
            line[(prevStart - prevKey.count)..<prevStart].elementsEqual(prevKey)
        else { return nil }
        let prevBytes = line[prevStart..<(line.endIndex - 2)]
        guard prevBytes.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }) else { return nil }
        // event is among the first members (after seq, time, time_ms).
        let window = line[index..<min(line.endIndex, index + 160)]
        guard let eventAt = firstIndex(of: eventKey, in: window) else { return nil }
        let valueStart = eventAt + eventKey.count
        guard let valueEnd = line[valueStart...].firstIndex(of: UInt8(ascii: "\"")) else { return nil }
        return (seq, prevBytes, String(decoding: line[valueStart..<valueEnd], as: UTF8.self))
    }

    /// Whether 64 lower-case hex digits spell these 32 bytes.
    static func hexEquals(_ hex: ArraySlice<UInt8>, _ bytes: [UInt8]) -> Bool {
        guard hex.count == 64, bytes.count == 32 else { return false }
        var index = hex.startIndex
        for byte in bytes {
            guard hexValue(hex[index]) == byte >> 4, hexValue(hex[index + 1]) == byte & 0x0F else { return false }
            index += 2
        }
        return true
    }

    @inline(__always)
    private static func hexValue(_ char: UInt8) -> UInt8 {
        char <= 0x39 ? char &- 0x30 : char &- 0x61 &+ 10
    }

    /// Whether `needle` occurs in `line` (raw bytes: inside a JSON string a quote is always escaped, so a key with
    /// its quotes cannot be faked by a string's content).
    public static func contains(_ needle: [UInt8], in line: ArraySlice<UInt8>) -> Bool {
        firstIndex(of: needle, in: line) != nil
    }

    static func firstIndex(of needle: [UInt8], in haystack: ArraySlice<UInt8>) -> Int? {
        guard let first = needle.first, haystack.count >= needle.count else { return nil }
        var index = haystack.startIndex
        let last = haystack.endIndex - needle.count
        while index <= last {
            if haystack[index] == first, haystack[index..<(index + needle.count)].elementsEqual(needle) { return index }
            index += 1
        }
        return nil
    }
}

/// Records taken from the log's stage for one write: the bytes, and the seq and head the log has once they are
/// durable.
public struct AuditBatch: Sendable {
    public fileprivate(set) var bytes: [UInt8]
    public let lastSeq: UInt64
    public let lastHead: String
}

/// The append-only, hash-chained audit log (CONTRACT §6).
///
/// Records are staged, then written together with one write and one fdatasync (group commit). Staging and
/// writing can overlap: ``takeStaged()`` hands the staged records to one writer while later records are staged
/// behind them. A failed write cuts the file back and forgets every record after the last durable one, so the
/// log never holds a record whose decision was not delivered as recorded.
///
/// Not thread-safe: the owner serializes staging, ``takeStaged()`` and ``finish(_:durable:)``; ``write(_:)`` may
/// run beside staging, one batch at a time.
public final class AuditLog {
    public let path: String
    private let fd: Int32
    /// The seq of the last durable record.
    public private(set) var seq: UInt64
    /// The hash of the last durable line.
    public private(set) var head: String
    private var committedLength: Int
    private var staged: [UInt8] = []
    /// The buffer of the last finished batch, reused for the next stage.
    private var spare: [UInt8] = []
    private var writer = JSONWriter(capacity: 2048)
    /// The seq of the last staged record (durable, being written, or staged).
    public private(set) var stagedSeq: UInt64
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
        self.seq = UInt64(chain.count)
        self.head = chain.head
        self.committedLength = chain.validLength
        self.stagedSeq = seq
        self.stagedHead = head
    }

    deinit { close(fd) }

    /// The number of records staged or being written, not yet durable.
    public var stagedCount: UInt64 { stagedSeq - seq }

    /// The hash the next staged record will name as `prev`.
    public var stagedPrev: String { stagedHead }

    /// Stages one record: writes `seq`, `time`, `event`, then the caller's fields, then `prev`. Returns its seq.
    @discardableResult
    public func stage(event: String, timeMs: UInt64, _ fields: (inout JSONWriter) -> Void) -> UInt64 {
        let next = stagedSeq + 1
        writer.reset()
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

    /// Takes every staged record for one write (nil when none is staged); later records stage behind them.
    public func takeStaged() -> AuditBatch? {
        guard !staged.isEmpty else { return nil }
        let batch = AuditBatch(bytes: staged, lastSeq: stagedSeq, lastHead: stagedHead)
        staged = spare
        spare = []
        return batch
    }

    /// Writes and syncs one batch at the end of the durable log. Touches nothing that staging does.
    public func write(_ batch: AuditBatch) throws(AuditError) {
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw .unavailable("fstat failed") }
        // A log unlinked or replaced under us would swallow records no auditor will ever read.
        guard info.st_nlink > 0 else { throw .unavailable("\(path) was removed") }
        if Int(info.st_size) != committedLength {
            guard ftruncate(fd, off_t(committedLength)) == 0 else {
                throw .unavailable("cannot restore the log's length")
            }
        }
        let total = batch.bytes.count
        var written = 0
        while written < total {
            let count = batch.bytes.withUnsafeBytes { buffer -> Int in
                guard let base = buffer.baseAddress else { return 0 }
                return pwrite(fd, base + written, total - written, off_t(committedLength + written))
            }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { throw .unavailable("write failed: \(String(cString: strerror(errno)))") }
            written += count
        }
        guard fdatasync(fd) == 0 else { throw .unavailable("fdatasync failed: \(String(cString: strerror(errno)))") }
    }

    /// Settles a written batch: durable, it becomes the log's end; failed, the file is cut back to the last durable
    /// record and everything staged after it is dropped too (it chains on the failed records).
    public func finish(_ batch: consuming AuditBatch, durable: Bool) {
        if durable {
            committedLength += batch.bytes.count
            seq = batch.lastSeq
            head = batch.lastHead
        } else {
            _ = ftruncate(fd, off_t(committedLength))
            staged.removeAll(keepingCapacity: true)
            stagedSeq = seq
            stagedHead = head
        }
        batch.bytes.removeAll(keepingCapacity: true)
        spare = batch.bytes
    }

    /// Writes and syncs everything staged (take, write, finish). On failure the file is cut back and the staged
    /// records are dropped.
    public func commit() throws(AuditError) {
        guard let batch = takeStaged() else { return }
        do {
            try write(batch)
        } catch {
            finish(batch, durable: false)
            throw error
        }
        finish(batch, durable: true)
    }
}
