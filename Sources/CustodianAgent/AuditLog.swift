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
    /// The same, in one file of a log kept in segments: the file's name and the line in it (0: the file as a whole).
    case brokenIn(file: String, line: Int, why: String)

    public var description: String {
        switch self {
        case .unavailable(let why): "the audit log is unavailable: \(why)"
        case .broken(let line, let why): "the audit log does not verify at line \(line): \(why)"
        case .brokenIn(let file, let line, let why):
            "the audit log does not verify at \(file)\(line > 0 ? " line \(line)" : ""): \(why)"
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
    /// A rollover inside the batch: the bytes from `split.at` on begin the next segment.
    let split: AuditLog.Rollover?
    /// The SHA-256 of the active segment once the batch is durable (continued by later batches).
    let hashAfter: SHA256.Stream
}

/// The append-only, hash-chained audit log (CONTRACT §6): the only code that writes `audit.log`, its sealed segments
/// and `audit.anchor`.
///
/// Records are staged, then written together with one write and one fdatasync (group commit). Staging and
/// writing can overlap: ``takeStaged()`` hands the staged records to one writer while later records are staged
/// behind them.
///
/// The log is kept in segments (``Segments``): ``stageRollover(timeMs:address:reason:)`` ends the active segment (after a
/// checkpoint the caller stages) and begins the next with a `segment` record naming the sealed file, its last head
/// and its SHA-256; the write that carries it seals the file under its `audit-<first>-<last>.log` name (a hard link,
/// then the new `audit.log` renamed over the old name), so that at every instant `audit.log` is a whole segment.
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
    private let directory: String
    private let anchorPath: String
    private var fd: Int32
    /// The device and inode of the open file: the path must still name it.
    private var identity: (dev: UInt64, ino: UInt64)
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

    /// A segment ended inside the staged records: where the next one begins, and the sealed file's name.
    public struct Rollover: Sendable {
        var at: Int
        public var sealedName: String
        /// The seq of the next segment's first record.
        var nextFirstSeq: UInt64
        /// The active file does not exist yet (a start that found the newest segment sealed): nothing to seal.
        var alreadySealed = false
    }

    private var stagedRollover: Rollover?
    /// The ledger database transaction the records staged now belong to (`ledger_txn`, written before `prev`).
    public var ledgerTxn: Int64?
    /// The seq of the active segment's first record, and of the first staged in the segment being staged into.
    public private(set) var segmentFirstSeq: UInt64
    private var stagedSegmentFirstSeq: UInt64
    /// The SHA-256 of the active segment's durable bytes, and of those and the staged ones of the segment staged into.
    private var committedHash: SHA256.Stream
    private var stagedHash: SHA256.Stream
    /// The bytes of the segment being staged into (durable, being written and staged).
    public private(set) var stagedSegmentBytes = 0
    /// The file a rollover's write put in place, adopted when the batch is settled.
    private var rolledTo: (fd: Int32, dev: UInt64, ino: UInt64)?
    /// Set when a rollover failed where it cannot be undone: nothing more is written until a restart reads the files.
    private var wedged: String?

    /// Opens the log at `path` (mode 0600, created if missing) after `chain` was read from it.
    /// A torn last line is cut off: it was never acknowledged to anyone.
    ///
    /// With a chain read from a log's segments whose last file is a sealed one (a start after a rollover cut short,
    /// or before the first record of the next segment was written), the next segment is begun: its `segment` record
    /// is written at once, naming `address` (the agent) and `timeMs`.
    public init(path: String, chain: AuditChain, address: Address? = nil, timeMs: UInt64 = 0) throws(AuditError) {
        self.path = path
        self.directory =
            path.contains("/") ? String(path[..<(path.lastIndex(of: "/") ?? path.endIndex)]) : "."
        self.anchorPath = AuditAnchor.path(besideLog: path)
        self.seq = UInt64(chain.count)
        self.head = chain.head
        self.stagedSeq = seq
        self.stagedHead = head
        var continuing: (file: Segments.File, firstSeq: UInt64)?
        var length = chain.validLength
        var hash = chain.lastFileHash
        if let last = chain.files.last {
            if last.file.path == path && chain.files.count > 1 && Segments.split(chain.validLength).local == 0 {
                // An empty active file after sealed ones: the next segment is begun in its place.
                continuing = (
                    chain.files[chain.files.count - 2].file, UInt64(chain.files[chain.files.count - 2].firstLine)
                )
                segmentFirstSeq = seq + 1
            } else if last.file.path == path {
                length = Segments.split(chain.validLength).local
                segmentFirstSeq = UInt64(last.firstLine)
            } else {
                continuing = (last.file, UInt64(last.firstLine))
                segmentFirstSeq = seq + 1
            }
        } else {
            segmentFirstSeq = 1
        }
        if continuing != nil {
            // The active file is begun by the rollover's write (renamed into place): none is open until then.
            fd = -1
            identity = (0, 0)
            length = 0
            hash = SHA256.Stream()
        } else {
            // Never through a symbolic link: the log stays in the state directory.
            let opened = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
            guard opened >= 0 else { throw .unavailable("cannot open \(path): \(String(cString: strerror(errno)))") }
            var info = stat()
            guard fstat(opened, &info) == 0, info.st_mode & S_IFMT == S_IFREG else {
                close(opened)
                throw .unavailable("\(path) is not a regular file")
            }
            identity = (UInt64(info.st_dev), UInt64(info.st_ino))
            if chain.tornTail > 0 {
                guard ftruncate(opened, off_t(length)) == 0 else {
                    close(opened)
                    throw .unavailable("cannot cut the torn last line of \(path)")
                }
            }
            fd = opened
            if hash == nil { hash = Self.hash(Segments.File(path: path, compressed: false), length: length) }
        }
        committedLength = length
        let committed = hash ?? SHA256.Stream()
        committedHash = committed
        stagedHash = committed.copy()
        stagedSegmentFirstSeq = segmentFirstSeq
        stagedSegmentBytes = length
        if let continuing {
            guard let address = address ?? chain.agent else {
                throw .unavailable("the newest segment is sealed, and no agent is named to begin the next")
            }
            // The sealed file's hash: from the verification that read it, or read again.
            guard
                let sealedHash = (continuing.file == chain.files.last?.file ? chain.lastFileHash : nil)
                    ?? Self.hash(continuing.file)
            else { throw .unavailable("cannot read \(continuing.file.path) to name its SHA-256") }
            stagedRollover = Rollover(
                at: 0, sealedName: continuing.file.name, nextFirstSeq: seq + 1, alreadySealed: true)
            stageSegmentRecord(
                timeMs: timeMs, address: address, sealed: continuing.file.name, firstSeq: continuing.firstSeq,
                sha256: sealedHash.finish(), reason: "start")
            // Written at once, so that the log always has its active file from here on.
            try commit()
        }
    }

    deinit {
        if fd >= 0 { close(fd) }
        if let rolledTo { close(rolledTo.fd) }
    }

    /// The SHA-256 of a log file's complete lines (its uncompressed bytes), up to `length` bytes when given; nil if
    /// it cannot be read.
    private static func hash(_ file: Segments.File, length: Int? = nil) -> SHA256.Stream? {
        var source = LineSource(segments: [file])
        source.upTo = length
        let hasher = SHA256.Stream()
        guard
            (try? source.forEachLine({ line, _ in
                hasher.update(line)
                hasher.update(LineSource.newlineByte)
                return nil
            })) != nil
        else { return nil }
        return hasher
    }

    /// The number of records staged or being written, not yet durable.
    public var stagedCount: UInt64 { stagedSeq - seq }

    /// The hash the next staged record will name as `prev`.
    public var stagedPrev: String { stagedHead }

    /// The number of records in the segment being staged into (durable, being written and staged).
    public var stagedSegmentRecords: UInt64 { stagedSeq + 1 - stagedSegmentFirstSeq }

    /// The sealed name of a rollover staged and not yet taken for a write (another would end a segment of one
    /// record).
    public var stagedRolloverName: String? { stagedRollover?.sealedName }

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
        if let ledgerTxn { writer.field("ledger_txn", ledgerTxn) }
        writer.field("prev", stagedHead)
        writer.endObject()
        stagedHead = SHA256.hex(writer.bytes)
        stagedSeq = next
        if event == "checkpoint" { stagedAnchor = AuditAnchor(seq: next, head: stagedHead) }
        staged.append(contentsOf: writer.bytes)
        staged.append(0x0A)
        stagedHash.update(writer.bytes)
        stagedHash.update(LineSource.newlineByte)
        stagedSegmentBytes += writer.bytes.count + 1
        return next
    }

    /// Ends the segment being staged into after the last staged record (a checkpoint, which the caller stages
    /// first, so that the sealed file ends signed) and begins the next with its `segment` record. Returns the name
    /// the sealed file will have, or nil when a rollover is already staged (that one is about to happen).
    @discardableResult
    public func stageRollover(timeMs: UInt64, address: Address, reason: String) -> String? {
        guard stagedRollover == nil else { return nil }
        let sealed = Segments.sealedName(first: stagedSegmentFirstSeq, last: stagedSeq)
        let firstSeq = stagedSegmentFirstSeq
        let sha256 = stagedHash.current()
        stagedRollover = Rollover(at: staged.count, sealedName: sealed, nextFirstSeq: stagedSeq + 1)
        stageSegmentRecord(
            timeMs: timeMs, address: address, sealed: sealed, firstSeq: firstSeq, sha256: sha256, reason: reason)
        return sealed
    }

    /// Begins a segment: a fresh hash, and its first record.
    private func stageSegmentRecord(
        timeMs: UInt64, address: Address, sealed: String, firstSeq: UInt64, sha256: String, reason: String
    ) {
        let previousHead = stagedHead
        let lastSeq = stagedSeq
        stagedHash = SHA256.Stream()
        stagedSegmentBytes = 0
        stagedSegmentFirstSeq = stagedSeq + 1
        stage(event: "segment", timeMs: timeMs) { writer in
            writer.field("address", address.checksummed)
            writer.field("previous_segment", sealed)
            writer.field("previous_first_seq", firstSeq)
            writer.field("previous_last_seq", lastSeq)
            writer.field("previous_head", previousHead)
            writer.field("previous_sha256", sha256)
            writer.field("reason", reason)
        }
    }

    /// Takes every staged record for one write (nil when none is staged); later records stage behind them.
    /// Stages records exactly as the ledger database holds them (a batch it committed that a failed write or a crash
    /// kept out of this log): each must be the next record of the chain. Returns false, staging nothing, otherwise.
    func stageRecovered(_ bytes: [UInt8]) -> Bool {
        var seq = stagedSeq
        var head = stagedHead
        var lines: [(ArraySlice<UInt8>, String, String)] = []
        var start = 0
        while start < bytes.count {
            guard let end = bytes[start...].firstIndex(of: 0x0A) else { return false }
            let line = bytes[start..<end]
            guard let (lineSeq, prev, event) = RecordShape.fields(line), lineSeq == seq + 1,
                prev.elementsEqual(head.utf8), event != "segment"
            else { return false }
            seq = lineSeq
            head = SHA256.hex(Array(line))
            lines.append((line, head, event))
            start = end + 1
        }
        for (line, lineHead, event) in lines {
            stagedSeq += 1
            stagedHead = lineHead
            if event == "checkpoint" { stagedAnchor = AuditAnchor(seq: stagedSeq, head: lineHead) }
            staged.append(contentsOf: line)
            staged.append(0x0A)
            stagedHash.update(Array(line))
            stagedHash.update(LineSource.newlineByte)
            stagedSegmentBytes += line.count + 1
        }
        return true
    }

    public func takeStaged() -> AuditBatch? {
        guard !staged.isEmpty else { return nil }
        var records = 0
        for byte in staged where byte == 0x0A { records += 1 }
        let batch = AuditBatch(
            bytes: staged, count: records, lastSeq: stagedSeq, lastHead: stagedHead, anchor: stagedAnchor,
            split: stagedRollover, hashAfter: stagedHash.copy())
        stagedAnchor = nil
        stagedRollover = nil
        staged = spare
        spare = []
        return batch
    }

    /// Writes and syncs one batch at the end of the durable log, then replaces the anchor if the batch holds a
    /// checkpoint. A batch with a rollover writes the active file's part, names it as the sealed segment, writes the
    /// rest into a new file and renames that over `audit.log`. Touches nothing that staging does.
    public func write(_ batch: AuditBatch) throws(AuditError) {
        let alone = !writing.exchange(true, ordering: .acquiringAndReleasing)
        assert(alone, "two writers of \(path)")
        defer { writing.store(false, ordering: .releasing) }
        if let wedged { throw .unavailable(wedged) }
        let cut = batch.split?.at ?? batch.bytes.count
        if fd >= 0 {
            // The path must still name the open file: a log moved away (rotated), replaced or unlinked would swallow
            // records no auditor will read. One lstat, in place of an fstat: the same file, so its size is ours too.
            var info = stat()
            guard lstat(path, &info) == 0 else {
                throw .unavailable("\(path) is gone (moved or removed); put the log back to sign again")
            }
            guard UInt64(info.st_dev) == identity.dev, UInt64(info.st_ino) == identity.ino else {
                throw .unavailable(
                    "\(path) no longer names the open log (moved or replaced); put it back to sign again")
            }
            if Int(info.st_size) != committedLength {
                // Only a failed write that could not be cut back leaves bytes here (this is the only writer).
                guard ftruncate(fd, off_t(committedLength)) == 0 else {
                    throw .unavailable("cannot restore the log's length")
                }
            }
            if cut > 0 {
                try Self.writeAll(fd, batch.bytes[0..<cut], at: committedLength)
                guard fdatasync(fd) == 0 else {
                    throw .unavailable("fdatasync failed: \(String(cString: strerror(errno)))")
                }
            }
        }
        if let split = batch.split { try roll(split, rest: batch.bytes[cut...]) }
        if let anchor = batch.anchor {
            // The log is durable either way; an anchor that could not be replaced only lags behind it.
            do { try anchor.write(to: anchorPath) } catch {
                FileHandle.standardError.write(Data("custodian: warning: cannot write \(anchorPath): \(error)\n".utf8))
            }
        }
    }

    private static func writeAll(_ fd: Int32, _ bytes: ArraySlice<UInt8>, at offset: Int) throws(AuditError) {
        var written = 0
        let total = bytes.count
        while written < total {
            let count = bytes.withUnsafeBytes { buffer -> Int in
                guard let base = buffer.baseAddress else { return 0 }
                return pwrite(fd, base + written, total - written, off_t(offset + written))
            }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { throw .unavailable("write failed: \(String(cString: strerror(errno)))") }
            written += count
        }
    }

    /// Seals the active file under its segment name and puts a new `audit.log` holding `rest` in its place. Until
    /// the rename, a failure undoes it all (the caller cuts the active file back); after it, the files are whole but
    /// this process no longer knows them: it is wedged until a restart reads them.
    private func roll(_ split: Rollover, rest: ArraySlice<UInt8>) throws(AuditError) {
        let sealedPath = directory + "/" + split.sealedName
        let nextPath = path + ".next"
        var linked = false
        func undo() {
            unlink(nextPath)
            if linked { unlink(sealedPath) }
        }
        var sealedInfo = stat()
        if lstat(sealedPath, &sealedInfo) == 0 {
            // Named before a rollover cut short (the start saw it), or left by someone else: only the first is ours.
            var activeInfo = stat()
            let isActive =
                lstat(path, &activeInfo) == 0 && activeInfo.st_dev == sealedInfo.st_dev
                && activeInfo.st_ino == sealedInfo.st_ino
            guard split.alreadySealed || isActive else {
                throw .unavailable("\(sealedPath) exists and is not the log's active segment: not overwritten")
            }
        } else {
            guard !split.alreadySealed else { throw .unavailable("\(sealedPath), the sealed segment, is gone") }
            guard link(path, sealedPath) == 0 else {
                throw .unavailable("cannot name the sealed segment \(sealedPath): \(String(cString: strerror(errno)))")
            }
            linked = true
        }
        let next = open(nextPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard next >= 0 else {
            undo()
            throw .unavailable("cannot create \(nextPath): \(String(cString: strerror(errno)))")
        }
        var info = stat()
        do throws(AuditError) {
            try Self.writeAll(next, rest, at: 0)
            guard fdatasync(next) == 0, fstat(next, &info) == 0 else {
                throw .unavailable("fdatasync failed: \(String(cString: strerror(errno)))")
            }
        } catch {
            close(next)
            undo()
            throw error
        }
        guard rename(nextPath, path) == 0 else {
            close(next)
            undo()
            throw .unavailable("cannot put the new segment in place: \(String(cString: strerror(errno)))")
        }
        rolledTo = (next, UInt64(info.st_dev), UInt64(info.st_ino))
        let directoryFD = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        let synced = directoryFD >= 0 && fsync(directoryFD) == 0
        if directoryFD >= 0 { close(directoryFD) }
        guard synced else {
            let why =
                "the new segment is in place but \(directory) could not be synced "
                + "(\(String(cString: strerror(errno)))); restart the agent to go on"
            wedged = why
            throw .unavailable(why)
        }
    }

    /// Settles a written batch: durable, it becomes the log's end; failed, the file is cut back to the last durable
    /// record and everything staged after it is dropped too (it chains on the failed records).
    public func finish(_ batch: consuming AuditBatch, durable: Bool) {
        if durable {
            if let split = batch.split, let rolled = rolledTo {
                if fd >= 0 { close(fd) }
                fd = rolled.fd
                identity = (rolled.dev, rolled.ino)
                rolledTo = nil
                committedLength = batch.bytes.count - split.at
                segmentFirstSeq = split.nextFirstSeq
            } else {
                committedLength += batch.bytes.count
            }
            committedHash = batch.hashAfter
            seq = batch.lastSeq
            head = batch.lastHead
        } else {
            if wedged == nil, fd >= 0 { _ = ftruncate(fd, off_t(committedLength)) }
            if let rolled = rolledTo {
                close(rolled.fd)
                rolledTo = nil
            }
            staged.removeAll(keepingCapacity: true)
            stagedAnchor = nil
            stagedRollover = nil
            stagedSeq = seq
            stagedHead = head
            stagedHash = committedHash.copy()
            stagedSegmentFirstSeq = segmentFirstSeq
            stagedSegmentBytes = committedLength
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
