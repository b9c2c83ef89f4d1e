import CustodianAgent
import CustodianCore
import CustodianCrypto
import CustodianTestSupport
import Foundation
import Testing

/// The audit log's rollovers at the level of the one writer: a rollover that cannot complete undoes itself, and the
/// files a rollover leaves read as one chain, whether they are given whole, from a sealed segment on, or compressed.
@Suite("Audit log segments: the writer")
struct SegmentLogTests {
    static let agent = Address(eip55: "0xFdEc8F58fA4b3bf07DD11eAF4c562Ee674e2C638")

    static func stage(_ log: AuditLog, _ count: Int) {
        for index in 0..<count {
            log.stage(event: "note", timeMs: 1_733_000_000_000 + UInt64(index)) { writer in
                writer.field("index", UInt64(index))
            }
        }
    }

    static func verify(_ files: [Segments.File]) -> Result<AuditVerification, AuditError> {
        var source = LineSource.log(files)
        return AuditVerifier.verify(&source, address: nil)
    }

    static func size(_ path: String) -> Int {
        ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? Int) ?? -1
    }

    @Test("a rollover whose sealed name is taken fails whole: the active file cut back, no next file; then it works")
    func failedRolloverUndoes() throws {
        let directory = try TemporaryDirectory()
        let path = directory.path + "/audit.log"
        let agent = try #require(Self.agent)
        let log = try AuditLog(path: path, chain: AuditChain())
        Self.stage(log, 3)
        try log.commit()
        let durable = Self.size(path)
        // Another file holds the name the sealed segment would take.
        let taken = directory.path + "/" + Segments.sealedName(first: 1, last: 4)
        #expect(FileManager.default.createFile(atPath: taken, contents: Data("not ours\n".utf8)))
        Self.stage(log, 1)
        #expect(
            log.stageRollover(timeMs: 1, address: agent, reason: "operator") == Segments.sealedName(first: 1, last: 4))
        #expect(log.stageRollover(timeMs: 1, address: agent, reason: "operator") == nil, "one rollover at a time")
        Self.stage(log, 2)
        #expect(throws: AuditError.self) { try log.commit() }
        #expect(Self.size(path) == durable, "the records of the failed batch are cut from the active file")
        #expect(!FileManager.default.fileExists(atPath: path + ".next"))
        #expect(log.seq == 3 && log.stagedSeq == 3)
        #expect(try String(contentsOfFile: taken, encoding: .utf8) == "not ours\n", "another file is not replaced")
        // The name freed, the same rollover goes through.
        try FileManager.default.removeItem(atPath: taken)
        Self.stage(log, 1)
        let sealed = try #require(log.stageRollover(timeMs: 2, address: agent, reason: "operator"))
        Self.stage(log, 2)
        try log.commit()
        #expect(log.segmentFirstSeq == 5)
        let files = try Segments.list(directory: directory.path)
        #expect(files.map(\.name) == [sealed, "audit.log"])
        let verified = try Self.verify(files).get()
        #expect(verified.chain.count == 7)
        #expect(verified.address == agent)
        // Staging goes on in the new file.
        Self.stage(log, 1)
        try log.commit()
        #expect(try Self.verify(try Segments.list(directory: directory.path)).get().chain.count == 8)
    }

    @Test("the files read from any sealed segment on, and through gzip; an edited segment is named by the next")
    func readsFromAnySegment() throws {
        let directory = try TemporaryDirectory()
        let path = directory.path + "/audit.log"
        let agent = try #require(Self.agent)
        let log = try AuditLog(path: path, chain: AuditChain())
        var names: [String] = []
        for _ in 0..<4 {
            Self.stage(log, 5)
            names.append(try #require(log.stageRollover(timeMs: 3, address: agent, reason: "records")))
            try log.commit()
        }
        Self.stage(log, 2)
        try log.commit()
        let all = try Segments.list(directory: directory.path)
        #expect(all.count == 5)
        #expect(try Self.verify(all).get().chain.count == 4 * 6 + 2)
        // From the third file on: the count is the last seq; the first record read is a segment record.
        let tail = try Self.verify(Array(all[2...])).get()
        #expect(tail.chain.count == 26)
        #expect(tail.chain.files.first?.firstLine == 12)
        // Compressed by gzip, read through zlib.
        let gzip = try ProcessRunner.run("/bin/gzip", ["-n", all[1].path])
        #expect(gzip.status == 0)
        let compressed = try Segments.list(directory: directory.path)
        #expect(compressed[1].compressed && compressed[1].name == names[1] + ".gz")
        #expect(try Self.verify(compressed).get().chain.count == 26)
        // gzip at work on the next one (the archive timer): the original and a partial .gz side by side read as the
        // original; another file claiming the same first record is refused.
        let partial = Array(try FileIO.readAll(compressed[1].path).prefix(40))
        #expect(FileManager.default.createFile(atPath: all[2].path + ".gz", contents: Data(partial)))
        let both = try Segments.list(directory: directory.path)
        #expect(both.map(\.name) == compressed.map(\.name))
        #expect(try Self.verify(both).get().chain.count == 26)
        try FileManager.default.removeItem(atPath: all[2].path + ".gz")
        let stranger = directory.path + "/" + Segments.sealedName(first: 12, last: 99)
        #expect(FileManager.default.createFile(atPath: stranger, contents: Data()))
        #expect(throws: SystemError.self) { try Segments.list(directory: directory.path) }
        try FileManager.default.removeItem(atPath: stranger)
        // An edit in the last line of a sealed file: its hash no longer matches what the next file names.
        var text = try String(contentsOfFile: all[2].path, encoding: .utf8)
        text = text.replacingOccurrences(of: "\"index\":4", with: "\"index\":5")
        try text.write(toFile: all[2].path, atomically: false, encoding: .utf8)
        guard
            case .failure(.brokenIn(let file, let line, _)) = Self.verify(try Segments.list(directory: directory.path))
        else {
            Issue.record("an edited sealed segment verified")
            return
        }
        #expect(file == all[3].path && line == 1)
        // Truncated compressed data is an error, not a shorter log.
        let bytes = try FileIO.readAll(compressed[1].path)
        #expect(
            FileManager.default.createFile(atPath: compressed[1].path, contents: Data(bytes.prefix(bytes.count / 2))))
        guard case .failure = Self.verify(try Segments.list(directory: directory.path)) else {
            Issue.record("a cut gzip segment verified")
            return
        }
    }

    @Test("sealed names: parsed back, ordered by number, other names ignored")
    func names() {
        #expect(Segments.sealedName(first: 1, last: 1000) == "audit-000000000001-000000001000.log")
        #expect(Segments.sealedSeqs("audit-000000000001-000000001000.log.gz")?.last == 1000)
        #expect(Segments.sealedSeqs("audit-1234567890123-1234567890124.log")?.first == 1_234_567_890_123)
        for other in [
            "audit.log", "audit-5-4.log", "audit-0-4.log", "audit--4.log", "audit-1-2.txt", "audit-1-2-3.log",
        ] {
            #expect(Segments.sealedSeqs(other) == nil, "\(other)")
        }
    }
}
