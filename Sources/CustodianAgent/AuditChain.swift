import CustodianCore
import CustodianCrypto

#if canImport(Glibc)
    import Glibc
#endif

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

/// One record as read from the log: its place, the fields at fixed places, and its bytes (valid only during the
/// call that hands it over).
public struct RawRecord {
    /// The line number (1 for the first line).
    public var line: Int
    public var seq: UInt64
    public var event: String
    /// The line's bytes, without its newline.
    public var bytes: ArraySlice<UInt8>
    /// The byte offset of the line's first byte in the log.
    public var offset: Int

    /// The byte offset just after the line's newline: where the next record begins.
    public var end: Int { offset + bytes.count + 1 }

    /// The record parsed in full.
    public func parse() -> Result<AuditEntry, AuditError> {
        guard case .success(let root) = StrictJSON.parse(Array(bytes)), let members = root.value.members else {
            return .failure(.broken(line: line, why: "not a JSON object"))
        }
        return .success(AuditEntry(line: line, seq: seq, event: event, members: members))
    }
}

/// What reading a log established: its length, its head, where a torn last line begins, and its agent.
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
    /// The log's files as read (none for one file or bytes): each one's name and the line number, in the chain's
    /// numbering (the seq), of its first line.
    public var files: [(firstLine: Int, file: Segments.File)] = []
    /// How many files the source held (those read are in `files`).
    public var fileCount = 0
    /// The SHA-256 of the last file's complete lines, when it was read from its beginning: an appender goes on
    /// with it, to name the file's SHA-256 when it seals it.
    public var lastFileHash: SHA256.Stream?

    /// An empty chain.
    public init() {}

    /// Verifies the chain of `bytes` (consecutive `seq` from 1, each `prev` the SHA-256 of the line before) and
    /// hands every record for which `wants(seq, event, line)` holds to `visit`, parsed, in order. The first error of
    /// either stops the reading. Checks the chain only: ``AuditVerifier`` checks what the records say.
    public static func read(
        _ bytes: [UInt8], wants: (UInt64, String, ArraySlice<UInt8>) -> Bool = { _, _, _ in false },
        visit: (AuditEntry) -> AuditError? = { _ in nil }
    ) -> Result<AuditChain, AuditError> {
        var source = LineSource(bytes: bytes)
        return read(&source) { record in
            guard wants(record.seq, record.event, record.bytes) else { return nil }
            switch record.parse() {
            case .success(let entry): return visit(entry)
            case .failure(let error): return error
            }
        }
    }

    /// Verifies the chain of every complete line `source` yields and hands each record to `visit` in order; the
    /// first error stops the reading.
    public static func read(_ source: inout LineSource, visit: (RawRecord) -> AuditError?) -> Result<
        AuditChain, AuditError
    > {
        var reader = ChainReader(startingAfter: source.startsAfterSeq)
        let outcome: LineSource.Outcome
        do {
            outcome = try source.forEachLine { line, offset in
                switch reader.next(line, offset: offset) {
                case .failure(let error): return error
                case .success(let record): return visit(record)
                }
            }
        } catch {
            return .failure(.unavailable("\(error)"))
        }
        if let error = outcome.error { return .failure(error) }
        return .success(reader.finish(validLength: outcome.validLength, tornTail: outcome.tornTail))
    }
}

/// Checks a chain one line at a time: consecutive `seq` from 1, each `prev` the SHA-256 of the line before.
public struct ChainReader {
    private var chain = AuditChain()
    private let hasher = SHA256.Hasher()
    /// The SHA-256 of the last line read (32 zeros before the first).
    public private(set) var headBytes = [UInt8](repeating: 0, count: 32)

    /// Whether the next line's `prev` is checked (not for the first line of a chain continued mid-log).
    private var checksPrev = true

    public init() {}

    /// A chain continued after its line `count`: the first line read takes `prev` as it finds it, which whoever
    /// reads this way must check against the line before (``Replay``'s speculative tail: by the head the whole log's
    /// verification reaches).
    init(continuingAfter count: Int) {
        chain.count = count
        checksPrev = false
    }

    /// A chain read from its record `seq` + 1 on (0: from its first).
    public init(startingAfter seq: UInt64) {
        if seq > 0 && seq < UInt64(Int.max / 2) {
            self.init(continuingAfter: Int(seq))
        } else {
            self.init()
        }
    }

    /// The number of lines read so far.
    public var count: Int { chain.count }

    /// Checks the next complete line (without its newline) and returns its record.
    public mutating func next(_ line: ArraySlice<UInt8>, offset: Int) -> Result<RawRecord, AuditError> {
        let number = chain.count + 1
        guard let (seq, prev, event) = RecordShape.fields(line) else {
            return .failure(.broken(line: number, why: "not a record custodian writes (seq, event, prev)"))
        }
        guard seq == UInt64(number) else {
            return .failure(.broken(line: number, why: "seq \(seq) where \(number) was expected"))
        }
        guard !checksPrev || RecordShape.hexEquals(prev, headBytes) else {
            return .failure(
                .broken(
                    line: number,
                    why: "its prev is not the hash of the line before it: that line was edited, or a line was deleted "
                        + "or moved here"))
        }
        let record = RawRecord(line: number, seq: seq, event: event, bytes: line, offset: offset)
        if event == "start", chain.agent == nil, case .success(let entry) = record.parse() {
            chain.agent = entry.string("address").flatMap(Address.init(eip55:))
        }
        hasher.hash(line, into: &headBytes)
        checksPrev = true
        chain.count = number
        return .success(record)
    }

    /// The chain read, once the source is exhausted.
    public func finish(validLength: Int, tornTail: Int) -> AuditChain {
        var done = chain
        done.head = Hex.encode(headBytes)
        done.validLength = validLength
        done.tornTail = tornTail
        return done
    }
}

/// The complete lines of a log, from memory or streamed from a file through a bounded buffer, so that a log of any
/// size is read in one pass without being held in memory.
public struct LineSource: Sendable {
    private enum Origin: Sendable {
        case bytes([UInt8])
        case file(String)
        /// A log's files in chain order (offsets: ``Segments/offset(part:local:)``).
        case segments([Segments.File])
    }

    private let origin: Origin
    /// Where reading begins (a record's first byte) and where it stops (nil: the end of the log).
    public var from = 0
    public var upTo: Int?
    /// The seq of the record before the first line (0: the log's beginning). A log whose older segments are elsewhere
    /// begins after it, with a `segment` record.
    public var startsAfterSeq: UInt64 = 0

    /// The files of a segmented source (one for a file, none for bytes).
    public var files: [Segments.File] {
        switch origin {
        case .bytes: []
        case .file(let path): [Segments.File(path: path, compressed: false)]
        case .segments(let files): files
        }
    }

    /// Where reading enters a file of a segmented source: its index and file, and the SHA-256 of the whole previous
    /// file when this reading read all of it (the hex digest of its uncompressed bytes).
    public struct FileEntry {
        public var index: Int
        public var file: Segments.File
        public var previousSHA256: String?
    }

    /// How reading ended.
    public struct Outcome {
        /// The offset just after the last complete line read.
        public var validLength: Int
        /// Bytes after the last newline (when the end was reached).
        public var tornTail: Int
        /// The error the body returned, which stopped the reading.
        public var error: AuditError?
        /// For a segmented source read to its end: the SHA-256 of the last file's complete lines so far, to be
        /// continued by whoever appends to it.
        public var lastFileHash: SHA256.Stream?
    }

    public init(bytes: [UInt8]) { origin = .bytes(bytes) }

    /// The log file at `path`, opened without following a symbolic link.
    public init(path: String) { origin = .file(path) }

    /// A log's files read in this order as one log, from the record the first one begins with (one that is not the
    /// log's first begins with a `segment` record).
    public static func log(_ files: [Segments.File]) -> LineSource {
        let first = files.first.flatMap(Segments.firstSeq(of:)) ?? 1
        return LineSource(segments: files, startsAfterSeq: first > 0 ? first - 1 : 0)
    }

    /// A log's files, read in this order as one log; `startsAfterSeq` when the first file is not the log's first.
    public init(segments: [Segments.File], startsAfterSeq: UInt64 = 0) {
        origin = .segments(segments)
        self.startsAfterSeq = startsAfterSeq
    }

    static let chunk = 4 << 20
    /// The longest line read from a file (the agent writes lines of a few hundred KiB at most).
    static let longestLine = 64 << 20

    /// Hands each complete line and its offset to `body`, in order, until `body` returns an error.
    public mutating func forEachLine(_ body: (ArraySlice<UInt8>, Int) -> AuditError?) throws(SystemError) -> Outcome {
        try forEachLine(entering: { _ in nil }, body)
    }

    /// Like ``forEachLine(_:)``, and tells `entering` before the lines of each file of a segmented source (which may
    /// stop the reading with an error). Every file but the last must end with a complete line.
    public mutating func forEachLine(
        entering: (FileEntry) -> AuditError?, _ body: (ArraySlice<UInt8>, Int) -> AuditError?
    ) throws(SystemError) -> Outcome {
        switch origin {
        case .segments(let files):
            return try Self.stream(files, from: from, upTo: upTo, entering: entering, body)
        case .bytes(let bytes):
            let end = min(upTo ?? bytes.count, bytes.count)
            var start = from
            while start < end {
                guard let newline = Self.newline(in: bytes, from: start, to: end) else {
                    return Outcome(validLength: start, tornTail: end - start)
                }
                if let error = body(bytes[start..<newline], start) {
                    return Outcome(validLength: start, tornTail: 0, error: error)
                }
                start = newline + 1
            }
            return Outcome(validLength: start, tornTail: 0)
        case .file(let path):
            return try Self.stream(path, from: from, upTo: upTo, body)
        }
    }

    /// Streams the files in order from the global offset `from`: their lines, with global offsets; the SHA-256 of
    /// each file read whole, handed to `entering` with the next.
    private static func stream(
        _ files: [Segments.File], from: Int, upTo: Int?, entering: (FileEntry) -> AuditError?,
        _ body: (ArraySlice<UInt8>, Int) -> AuditError?
    ) throws(SystemError) -> Outcome {
        let (firstPart, firstLocal) = Segments.split(from)
        let end = upTo.map(Segments.split)
        var outcome = Outcome(validLength: from, tornTail: 0)
        var previousSHA256: String?
        var index = firstPart
        while index < files.count {
            if let end, end.part < index { break }
            let file = files[index]
            if let error = entering(FileEntry(index: index, file: file, previousSHA256: previousSHA256)) {
                return Outcome(validLength: Segments.offset(part: index, local: 0), tornTail: 0, error: error)
            }
            let local = index == firstPart ? firstLocal : 0
            // Only a file read from its beginning is hashed whole.
            let hasher = local == 0 ? SHA256.Stream() : nil
            let localEnd = end.flatMap { $0.part == index ? $0.local : nil }
            let reader: ChunkReader
            if file.compressed {
                reader = .gzip(try GzipReader(path: file.path))
            } else {
                let fd = open(file.path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
                guard fd >= 0 else { throw SystemError("open", file.path) }
                reader = .file(fd)
            }
            defer { if case .file(let fd) = reader { close(fd) } }
            let part = index
            let read = try stream(reader, path: file.path, from: local, upTo: localEnd) { line, offset in
                if let hasher {
                    hasher.update(line)
                    hasher.update(newlineByte)
                }
                return body(line, Segments.offset(part: part, local: offset))
            }
            outcome = Outcome(
                validLength: Segments.offset(part: index, local: read.validLength), tornTail: read.tornTail,
                error: read.error)
            if read.error != nil { return outcome }
            if read.tornTail > 0 && index + 1 < files.count && localEnd == nil {
                outcome.error = .brokenIn(
                    file: file.path, line: 0,
                    why: "the file ends in a partial line of \(read.tornTail) bytes, but another segment follows it: "
                        + "a sealed segment is always whole (cut, or not a sealed segment)")
                return outcome
            }
            if localEnd != nil { break }
            if index + 1 == files.count {
                outcome.lastFileHash = hasher
            } else {
                previousSHA256 = hasher?.finish()
            }
            index += 1
        }
        return outcome
    }

    static let newlineByte: [UInt8] = [0x0A]

    /// Where a file's bytes come from: a descriptor read at offsets, or zlib reading forward.
    private enum ChunkReader {
        case file(Int32)
        case gzip(GzipReader)

        func read(into pointer: UnsafeMutableRawPointer, count: Int, at offset: Int, path: String)
            throws(SystemError) -> Int
        {
            switch self {
            case .file(let fd):
                while true {
                    let got = pread(fd, pointer, count, off_t(offset))
                    if got < 0 && errno == EINTR { continue }
                    guard got >= 0 else { throw SystemError("read", path) }
                    return got
                }
            case .gzip(let reader):
                return try reader.read(into: pointer, count: count, at: offset)
            }
        }
    }

    /// The offset of the line after record `seq` (the end of the complete lines if that record is the last), found
    /// by a binary search on the seqs at line starts and a short walk; nil if there is no such complete record.
    /// Records are in seq order in a log that verifies; in one that does not, what this finds is wrong and whoever
    /// uses it must check it against the verification (``Replay``'s speculative tail does).
    public func offset(afterSeq seq: UInt64) -> Int? {
        var fd: Int32 = -1
        defer { if fd >= 0 { close(fd) } }
        let size: Int
        let read: (Int, Int) -> [UInt8]
        switch origin {
        case .segments(let files):
            // The newest file whose first record is at most `seq` holds it (a compressed one is not searched).
            for (index, file) in files.enumerated().reversed() {
                guard let first = Segments.firstSeq(of: file), first <= seq else { continue }
                guard !file.compressed, let local = LineSource(path: file.path).offset(afterSeq: seq) else {
                    return nil
                }
                return Segments.offset(part: index, local: local)
            }
            return nil
        case .bytes(let bytes):
            size = bytes.count
            read = { offset, count in Array(bytes[min(offset, size)..<min(offset + count, size)]) }
        case .file(let path):
            fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
            var info = stat()
            guard fd >= 0, fstat(fd, &info) == 0 else { return nil }
            size = Int(info.st_size)
            let descriptor = fd
            read = { offset, count in
                var bytes = [UInt8](repeating: 0, count: max(0, min(count, size - offset)))
                let got = bytes.withUnsafeMutableBytes { raw -> Int in
                    guard let pointer = raw.baseAddress else { return 0 }
                    return pread(descriptor, pointer, raw.count, off_t(offset))
                }
                bytes.removeLast(bytes.count - max(got, 0))
                return bytes
            }
        }
        // The first line start at or after `position`; nil when no line starts there (only a torn end).
        func lineStart(atOrAfter position: Int) -> Int? {
            if position == 0 { return size > 0 ? 0 : nil }
            var at = position - 1
            while at < size {
                let window = read(at, 1 << 16)
                if window.isEmpty { return nil }
                if let newline = window.firstIndex(of: 0x0A) {
                    let next = at + newline + 1
                    return next < size ? next : nil
                }
                at += window.count
            }
            return nil
        }
        func seqAt(_ start: Int) -> UInt64? {
            let head = read(start, 32)
            guard head.starts(with: RecordShape.seqPrefix) else { return nil }
            var value: UInt64 = 0
            for byte in head.dropFirst(RecordShape.seqPrefix.count) {
                if byte == UInt8(ascii: ",") { return value }
                guard byte >= 0x30, byte <= 0x39, value < UInt64.max / 10 - 9 else { return nil }
                value = value * 10 + UInt64(byte - 0x30)
            }
            return nil
        }
        guard let first = seqAt(0), first <= seq else { return nil }
        var low = 0  // a line start whose seq is at most `seq`
        var high = size  // no line starting at or after it has a seq at most `seq`
        while high - low > 1 << 16 {
            let middle = low + (high - low) / 2
            if let start = lineStart(atOrAfter: middle), start < high, let found = seqAt(start), found <= seq {
                low = start
            } else {
                high = middle
            }
        }
        var start = low
        while let found = seqAt(start), found <= seq {
            // The line must be complete: its newline read.
            var at = start
            var next: Int?
            while at < size, next == nil {
                let window = read(at, 1 << 16)
                if window.isEmpty { break }
                if let newline = window.firstIndex(of: 0x0A) { next = at + newline + 1 }
                at += window.count
            }
            guard let next else { return nil }
            if found == seq { return next }
            start = next
        }
        return nil
    }

    /// The index of the first newline in `buffer[from..<to]` (memchr).
    @inline(__always)
    static func newline(in buffer: [UInt8], from: Int, to: Int) -> Int? {
        buffer.withUnsafeBytes { raw -> Int? in
            guard let base = raw.baseAddress, let found = memchr(base + from, 0x0A, to - from) else { return nil }
            return base.distance(to: UnsafeRawPointer(found))
        }
    }

    private static func stream(
        _ path: String, from: Int, upTo: Int?, _ body: (ArraySlice<UInt8>, Int) -> AuditError?
    ) throws(SystemError) -> Outcome {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else { throw SystemError("open", path) }
        defer { close(fd) }
        return try stream(.file(fd), path: path, from: from, upTo: upTo, body)
    }

    private static func stream(
        _ reader: ChunkReader, path: String, from: Int, upTo: Int?, _ body: (ArraySlice<UInt8>, Int) -> AuditError?
    ) throws(SystemError) -> Outcome {
        var buffer = [UInt8](repeating: 0, count: chunk)
        // buffer[0..<filled] holds the file's bytes from `base`; lines before `start` were handed over.
        var base = from
        var filled = 0
        var start = 0
        var atEnd = false
        while true {
            let scanEnd = upTo.map { min(filled, $0 - base) } ?? filled
            while start < scanEnd {
                guard let newline = Self.newline(in: buffer, from: start, to: scanEnd) else { break }
                if let error = body(buffer[start..<newline], base + start) {
                    return Outcome(validLength: base + start, tornTail: 0, error: error)
                }
                start = newline + 1
            }
            if atEnd || (upTo.map { base + filled >= $0 } ?? false) {
                return Outcome(validLength: base + start, tornTail: max(0, scanEnd - start))
            }
            // Keep the unfinished line: move it to the front, or grow the buffer if it fills it.
            if start > 0 {
                let rest = filled - start
                buffer.withUnsafeMutableBytes { raw in
                    guard let pointer = raw.baseAddress else { return }
                    memmove(pointer, pointer + start, rest)
                }
                base += start
                filled = rest
                start = 0
            } else if filled == buffer.count {
                guard buffer.count < longestLine else { throw SystemError("read (a line too long)", path, EFBIG) }
                buffer.append(contentsOf: repeatElement(0, count: buffer.count))
            }
            var failure: SystemError?
            let count = buffer.withUnsafeMutableBytes { raw -> Int in
                guard let pointer = raw.baseAddress else { return 0 }
                do throws(SystemError) {
                    return try reader.read(
                        into: pointer + filled, count: raw.count - filled, at: base + filled, path: path)
                } catch {
                    failure = error
                    return 0
                }
            }
            if let failure { throw failure }
            if count == 0 { atEnd = true }
            filled += count
        }
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
        return hex.withUnsafeBufferPointer { digits in
            bytes.withUnsafeBufferPointer { expected in
                lowerNibbles.withUnsafeBufferPointer { table in
                    // Branch-free: any digit that is not lower-case hex sets 0x80, any differing byte sets bits of `difference`.
                    var difference: UInt8 = 0
                    for position in 0..<32 {
                        let high = table[Int(digits[2 * position])]
                        let low = table[Int(digits[2 * position + 1])]
                        difference |= (high | low) & 0x80
                        difference |= (high << 4 | (low & 0x0F)) ^ expected[position]
                    }
                    return difference == 0
                }
            }
        }
    }

    /// Whether `needle` occurs in `line` (raw bytes: inside a JSON string a quote is always escaped, so a key with
    /// its quotes cannot be faked by a string's content).
    public static func contains(_ needle: [UInt8], in line: ArraySlice<UInt8>) -> Bool {
        firstIndex(of: needle, in: line) != nil
    }

    static func firstIndex(of needle: [UInt8], in haystack: ArraySlice<UInt8>) -> Int? {
        guard let first = needle.first, haystack.count >= needle.count else { return nil }
        return haystack.withUnsafeBufferPointer { hay -> Int? in
            needle.withUnsafeBufferPointer { pattern -> Int? in
                guard let base = hay.baseAddress, let target = pattern.baseAddress else { return nil }
                var index = 0
                let last = hay.count - pattern.count
                while index <= last {
                    // memchr finds the candidates; memcmp checks each.
                    guard let found = memchr(base + index, Int32(first), last - index + 1) else { return nil }
                    let at = base.distance(to: found.assumingMemoryBound(to: UInt8.self))
                    if memcmp(base + at, target, pattern.count) == 0 { return haystack.startIndex + at }
                    index = at + 1
                }
                return nil
            }
        }
    }

    /// Unescapes the JSON string body that starts at `from` into `out` (only the escapes custodian's writer makes);
    /// returns the index of its closing quote, or nil.
    static func unescape(_ line: ArraySlice<UInt8>, from: Int, into out: inout [UInt8]) -> Int? {
        // The unescaped text is never longer than the escaped one: `out` is sized to the rest of the line, written
        // through a pointer, then cut to what was written.
        let available = max(line.endIndex - from, 0)
        if out.count < available { out.append(contentsOf: repeatElement(0, count: available - out.count)) }
        var written = 0
        let closing = line.withUnsafeBufferPointer { buffer -> Int? in
            out.withUnsafeMutableBufferPointer { target -> Int? in
                guard let base = buffer.baseAddress, let sink = target.baseAddress else { return nil }
                let offset = line.startIndex
                var index = from - offset
                let count = buffer.count
                while index < count {
                    // Eight bytes at a time while neither a quote nor a backslash is among them (SWAR: a byte equal
                    // to c makes (w ^ c·0x01…01) have a zero byte; the lowest flagged byte is exact). The sink has
                    // room: `written` never passes `index − from`.
                    while count - index >= 8 {
                        let word = UnsafeRawPointer(base + index).loadUnaligned(as: UInt64.self)
                        let quotes = word ^ 0x2222_2222_2222_2222
                        let slashes = word ^ 0x5C5C_5C5C_5C5C_5C5C
                        let flagged =
                            ((quotes &- 0x0101_0101_0101_0101) & ~quotes | (slashes &- 0x0101_0101_0101_0101)
                                & ~slashes)
                            & 0x8080_8080_8080_8080
                        UnsafeMutableRawPointer(sink + written).storeBytes(of: word, as: UInt64.self)
                        let plain = flagged == 0 ? 8 : flagged.trailingZeroBitCount / 8
                        written += plain
                        index += plain
                        if plain < 8 { break }
                    }
                    guard index < count else { break }
                    let byte = base[index]
                    if byte != 0x22, byte != 0x5C {
                        sink[written] = byte
                        written += 1
                        index += 1
                        continue
                    }
                    if byte == 0x22 { return index + offset }
                    guard index + 1 < count else { return nil }
                    switch base[index + 1] {
                    case 0x22, 0x5C: sink[written] = base[index + 1]
                    case UInt8(ascii: "n"): sink[written] = 0x0A
                    case UInt8(ascii: "r"): sink[written] = 0x0D
                    case UInt8(ascii: "t"): sink[written] = 0x09
                    case UInt8(ascii: "u"):
                        guard index + 5 < count, base[index + 2] == 0x30, base[index + 3] == 0x30,
                            let high = Hex.nibble(base[index + 4]), let low = Hex.nibble(base[index + 5]), high < 2
                        else { return nil }
                        sink[written] = high << 4 | low
                        index += 4
                    default: return nil
                    }
                    written += 1
                    index += 2
                }
                return nil
            }
        }
        out.removeSubrange(written...)
        return closing
    }

    /// Decodes hex digits into `out` (its count bytes); false if a digit is not hex.
    static func decodeHex(_ hex: ArraySlice<UInt8>, into out: inout [UInt8]) -> Bool {
        guard hex.count == out.count * 2 else { return false }
        return hex.withUnsafeBufferPointer { digits in
            out.withUnsafeMutableBufferPointer { bytes in
                var valid: UInt8 = 0
                for position in 0..<bytes.count {
                    let high = nibbles[Int(digits[2 * position])]
                    let low = nibbles[Int(digits[2 * position + 1])]
                    valid |= high | low
                    bytes[position] = high << 4 | (low & 0x0F)
                }
                return valid & 0x80 == 0
            }
        }
    }

    /// Each byte's value as a lower- or upper-case hex digit, 0x80 for any other byte.
    static let nibbles: [UInt8] = (0...255).map { Hex.nibble(UInt8($0)) ?? 0x80 }
    /// Each byte's value as a lower-case hex digit (the only form custodian writes), 0x80 for any other byte.
    static let lowerNibbles: [UInt8] = (0...255).map { UInt8($0) >= 0x41 && UInt8($0) <= 0x46 ? 0x80 : nibbles[$0] }

    static let timeKey = Array(#","time_ms":"#.utf8)
    static let reqKey = Array(#"","req":""#.utf8)
    static let allowedAfterReq = Array(#","decision":"allow","#.utf8)

    /// An allowance's `time_ms` and unescaped `req`, read where custodian writes them (`time_ms` third, `req` after
    /// `request_hash`, `decision` right after `req`); nil for any other shape, which the strict parser then reads.
    static func allowance(_ line: ArraySlice<UInt8>, req: inout [UInt8]) -> UInt64? {
        guard let timeAt = firstIndex(of: timeKey, in: line.prefix(96)) else { return nil }
        var index = timeAt + timeKey.count
        var time: UInt64 = 0
        var digits = 0
        while index < line.endIndex, line[index] >= 0x30, line[index] <= 0x39, digits < 18 {
            time = time * 10 + UInt64(line[index] - 0x30)
            index += 1
            digits += 1
        }
        guard digits > 0, index < line.endIndex, line[index] == UInt8(ascii: ",") else { return nil }
        guard let reqAt = firstIndex(of: reqKey, in: line.prefix(768)),
            let end = unescape(line, from: reqAt + reqKey.count, into: &req),
            line[(end + 1)...].starts(with: allowedAfterReq)
        else { return nil }
        return time
    }
}
