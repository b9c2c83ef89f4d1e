import CustodianCore
import CustodianCrypto
import Foundation
import Synchronization

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

/// Records taken from the log's stage for one write: the bytes, and the seq and head the log has once they are
/// durable.
public struct AuditBatch: Sendable {
    public fileprivate(set) var bytes: [UInt8]
    /// How many records it holds.
    public let count: Int
    public let lastSeq: UInt64
    public let lastHead: String
    /// The anchor the batch's last checkpoint makes, written once the batch is durable.
    let anchor: AuditAnchor?
}

/// The append-only, hash-chained audit log (CONTRACT §6): the only code that writes `audit.log` and `audit.anchor`.
///
/// Records are staged, then written together with one write and one fdatasync (group commit). Staging and
/// writing can overlap: ``takeStaged()`` hands the staged records to one writer while later records are staged
/// behind them.
///
/// Invariants (asserted in debug builds):
/// - One writer: at most one ``write(_:)`` runs at a time, and each batch is written at the end of the durable log,
///   in the order the batches were taken. The owner (the agent's ``Engine``, or an operator command holding the
///   state directory's lock while no agent runs) serializes staging, ``takeStaged()`` and ``finish(_:durable:)``.
/// - A record is staged with the seq after the last staged one and the hash of the line before it as `prev`.
/// - A failed write cuts the file back to the last durable record and drops every record staged after it (they
///   chain on the failed ones), so the log never holds a record whose decision was not delivered as recorded.
/// - The anchor is replaced only after the batch holding its checkpoint is durable: it never names a record the log
///   may lose.
/// - A log whose path no longer names the open file (moved, replaced, unlinked) is not written: records would go
///   where no auditor looks.
public final class AuditLog {
    public let path: String
    private let anchorPath: String
    private let fd: Int32
    /// The device and inode of the open file: the path must still name it.
    private let identity: (dev: UInt64, ino: UInt64)
    private let writing = Atomic<Bool>(false)
    /// The anchor a checkpoint staged since the last take makes.
    private var stagedAnchor: AuditAnchor?
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
        self.anchorPath = AuditAnchor.path(besideLog: path)
        // Never through a symbolic link: the log stays in the state directory.
        let fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard fd >= 0 else { throw .unavailable("cannot open \(path): \(String(cString: strerror(errno)))") }
        var info = stat()
        guard fstat(fd, &info) == 0, info.st_mode & S_IFMT == S_IFREG else {
            close(fd)
            throw .unavailable("\(path) is not a regular file")
        }
        self.identity = (UInt64(info.st_dev), UInt64(info.st_ino))
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
        if event == "checkpoint" { stagedAnchor = AuditAnchor(seq: next, head: stagedHead) }
        staged.append(contentsOf: writer.bytes)
        staged.append(0x0A)
        return next
    }

    /// Takes every staged record for one write (nil when none is staged); later records stage behind them.
    public func takeStaged() -> AuditBatch? {
        guard !staged.isEmpty else { return nil }
        var records = 0
        for byte in staged where byte == 0x0A { records += 1 }
        let batch = AuditBatch(
            bytes: staged, count: records, lastSeq: stagedSeq, lastHead: stagedHead, anchor: stagedAnchor)
        stagedAnchor = nil
        staged = spare
        spare = []
        return batch
    }

    /// Writes and syncs one batch at the end of the durable log, then replaces the anchor if the batch holds a
    /// checkpoint. Touches nothing that staging does.
    public func write(_ batch: AuditBatch) throws(AuditError) {
        let alone = !writing.exchange(true, ordering: .acquiringAndReleasing)
        assert(alone, "two writers of \(path)")
        defer { writing.store(false, ordering: .releasing) }
        // The path must still name the open file: a log moved away (rotated), replaced or unlinked would swallow
        // records no auditor will read. One lstat, in place of an fstat: the same file, so its size is ours too.
        var info = stat()
        guard lstat(path, &info) == 0 else {
            throw .unavailable("\(path) is gone (moved or removed); put the log back to sign again")
        }
        guard UInt64(info.st_dev) == identity.dev, UInt64(info.st_ino) == identity.ino else {
            throw .unavailable("\(path) no longer names the open log (moved or replaced); put it back to sign again")
        }
        if Int(info.st_size) != committedLength {
            // Only a failed write that could not be cut back leaves bytes here (this is the only writer).
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
        if let anchor = batch.anchor {
            // The log is durable either way; an anchor that could not be replaced only lags behind it.
            do { try anchor.write(to: anchorPath) } catch {
                FileHandle.standardError.write(Data("custodian: warning: cannot write \(anchorPath): \(error)\n".utf8))
            }
        }
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
            stagedAnchor = nil
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
