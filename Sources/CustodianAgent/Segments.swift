import CZlib
import CustodianCore
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// The audit log's files: sealed segments `audit-<first seq>-<last seq>.log` (`.log.gz` once an operator compressed
/// one with gzip), then the active `audit.log`. One chain runs through them: seqs go on from file to file, and every
/// file after the first begins with a `segment` record whose `prev` is the hash of the previous file's last line and
/// whose `previous_sha256` is the SHA-256 of that whole file (uncompressed), so that a reader of the files in order
/// checks one chain, and a file deleted, edited or put out of order is found at a file and line.
public enum Segments {
    /// The active segment, the one the agent appends to.
    public static let active = "audit.log"

    /// One file of a log.
    public struct File: Sendable, Equatable {
        public var path: String
        /// The file's name without its directory.
        public var name: String { (path as NSString).lastPathComponent }
        /// gzip-compressed (read through zlib).
        public var compressed: Bool
        /// The seqs its name gives (sealed segments only); the chain, not the name, is what is trusted.
        public var first: UInt64?
        public var last: UInt64?

        public init(path: String, compressed: Bool? = nil) {
            self.path = path
            self.compressed = compressed ?? path.hasSuffix(".gz")
            let name = (path as NSString).lastPathComponent
            if let seqs = Segments.sealedSeqs(name) {
                first = seqs.first
                last = seqs.last
            }
        }
    }

    /// `audit-000000000001-000000001000.log`: the seqs of its first and last records, twelve digits or more.
    public static func sealedName(first: UInt64, last: UInt64) -> String {
        "audit-\(padded(first))-\(padded(last)).log"
    }

    private static func padded(_ value: UInt64) -> String {
        let digits = String(value)
        return String(repeating: "0", count: max(0, 12 - digits.count)) + digits
    }

    /// The first and last seq a sealed segment's name gives (with or without `.gz`), nil for any other name.
    public static func sealedSeqs(_ name: String) -> (first: UInt64, last: UInt64)? {
        var stem = Substring(name)
        if stem.hasSuffix(".gz") { stem = stem.dropLast(3) }
        guard stem.hasPrefix("audit-"), stem.hasSuffix(".log") else { return nil }
        let parts = stem.dropFirst(6).dropLast(4).split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 2, parts.allSatisfy({ !$0.isEmpty && $0.allSatisfy(\.isASCIIDigit) }),
            let first = UInt64(parts[0]), let last = UInt64(parts[1]), first >= 1, first <= last
        else { return nil }
        return (first, last)
    }

    /// The log files in `directory` in chain order: the sealed segments by the first seq their names give, then
    /// `audit.log` if present. An `audit.log` that is the same file as the newest sealed segment (a rotation cut
    /// short between naming the sealed file and putting the new segment in place) is left out: its records are
    /// the sealed segment's. A segment beside its own `.gz` is read uncompressed; any other two files naming the same
    /// first seq are an error (one of them is not custodian's).
    public static func list(directory: String) throws(SystemError) -> [File] {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else {
            throw SystemError("list", directory, errno == 0 ? ENOENT : errno)
        }
        var sealed: [(first: UInt64, file: File)] = []
        for name in names {
            guard let seqs = sealedSeqs(name) else { continue }
            sealed.append((seqs.first, File(path: directory + "/" + name)))
        }
        // A sealed segment and its gzip copy (gzip at work, which removes the original when it is done): the
        // original, whole, is read. Any other two files naming one first record are an error.
        sealed.sort { ($0.first, $0.file.compressed ? 1 : 0) < ($1.first, $1.file.compressed ? 1 : 0) }
        var kept: [(first: UInt64, file: Segments.File)] = []
        for entry in sealed {
            guard let previous = kept.last, previous.first == entry.first else {
                kept.append(entry)
                continue
            }
            guard !previous.file.compressed, entry.file.compressed, entry.file.name == previous.file.name + ".gz" else {
                throw SystemError(
                    "list (\(previous.file.name) and \(entry.file.name) name the same first record)", directory, EEXIST)
            }
        }
        var files = kept.map(\.file)
        let activePath = directory + "/" + active
        var info = stat()
        if lstat(activePath, &info) == 0 {
            if let newest = files.last, !newest.compressed, sameFile(newest.path, info) {
                return files
            }
            files.append(File(path: activePath, compressed: false))
        }
        return files
    }

    /// Whether `path` (not followed if a link) is the file `info` describes.
    static func sameFile(_ path: String, _ info: stat) -> Bool {
        var other = stat()
        return lstat(path, &other) == 0 && other.st_dev == info.st_dev && other.st_ino == info.st_ino
    }

    /// Offsets across a log's files: the file's index in the high bits, the offset in that file (its uncompressed
    /// bytes) in the low 44 (16 TiB a file). A single file's offsets are its own.
    static let localBits = 44
    static let localMask = (1 << localBits) - 1

    static func offset(part: Int, local: Int) -> Int { part << localBits | local }

    static func split(_ offset: Int) -> (part: Int, local: Int) { (offset >> localBits, offset & localMask) }

    /// The seq of the first record of `file` (its first line read, through zlib if compressed); nil if it has none.
    public static func firstSeq(of file: File) -> UInt64? {
        var source = LineSource(segments: [file])
        var found: UInt64?
        _ = try? source.forEachLine { line, _ in
            found = RecordShape.fields(line)?.0
            return .unavailable("only the first line")
        }
        return found
    }
}

/// A gzip file's uncompressed bytes, read in order (zlib's inflate; concatenated gzip members are read on).
final class GzipReader {
    private var stream = z_stream()
    private let fd: Int32
    private let path: String
    private static let inputSize = 1 << 16
    private let input = UnsafeMutablePointer<Bytef>.allocate(capacity: GzipReader.inputSize)
    private var inputEnded = false
    private var memberEnded = false
    private var initialized = false
    /// The uncompressed bytes produced so far.
    private(set) var position = 0

    init(path: String) throws(SystemError) {
        self.path = path
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else {
            input.deallocate()
            throw SystemError("open", path)
        }
        // 15 + 32: a window of 32 KiB, a gzip (or zlib) header detected.
        guard inflateInit2_(&stream, 15 + 32, zlibVersion(), Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            close(fd)
            input.deallocate()
            throw SystemError("inflateInit", path, ENOMEM)
        }
        initialized = true
    }

    deinit {
        if initialized { inflateEnd(&stream) }
        close(fd)
        input.deallocate()
    }

    /// Up to `count` uncompressed bytes at `offset` (never before `position`: reading goes forward) into `into`;
    /// 0 at the end of the data.
    func read(into pointer: UnsafeMutableRawPointer, count: Int, at offset: Int) throws(SystemError) -> Int {
        if position < offset {
            let size = min(offset - position, 1 << 16)
            let skip = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 8)
            defer { skip.deallocate() }
            while position < offset {
                if try produce(into: skip, count: min(offset - position, size)) == 0 { return 0 }
            }
        }
        return try produce(into: pointer, count: count)
    }

    private func produce(into pointer: UnsafeMutableRawPointer, count: Int) throws(SystemError) -> Int {
        guard count > 0 else { return 0 }
        stream.next_out = pointer.assumingMemoryBound(to: Bytef.self)
        stream.avail_out = uInt(min(count, Int(Int32.max)))
        let wanted = stream.avail_out
        while stream.avail_out == wanted {
            if stream.avail_in == 0 {
                if inputEnded {
                    guard memberEnded else {
                        throw SystemError("read (the gzip data ends early: a cut or damaged file)", path, EIO)
                    }
                    return 0
                }
                var got: Int
                repeat { got = Glibc.read(fd, input, Self.inputSize) } while got < 0 && errno == EINTR
                guard got >= 0 else { throw SystemError("read", path) }
                if got == 0 {
                    inputEnded = true
                    continue
                }
                if memberEnded {
                    // Another gzip member follows the one that ended.
                    guard inflateReset(&stream) == Z_OK else { throw SystemError("inflateReset", path, EIO) }
                    memberEnded = false
                }
                stream.next_in = input
                stream.avail_in = uInt(got)
            } else if memberEnded {
                guard inflateReset(&stream) == Z_OK else { throw SystemError("inflateReset", path, EIO) }
                memberEnded = false
            }
            let status = inflate(&stream, Z_NO_FLUSH)
            switch status {
            case Z_OK, Z_BUF_ERROR: break
            case Z_STREAM_END: memberEnded = true
            default: throw SystemError("read (not gzip data zlib can read)", path, EIO)
            }
        }
        let produced = Int(wanted - stream.avail_out)
        position += produced
        return produced
    }
}

extension Character {
    fileprivate var isASCIIDigit: Bool { isASCII && isNumber }
}
