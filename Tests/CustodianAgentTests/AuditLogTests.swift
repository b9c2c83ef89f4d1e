import CustodianAgent
import CustodianCore
import CustodianCrypto
import CustodianTestSupport
import Foundation
import Testing

/// A private temporary directory, removed at the end of the test.
final class TemporaryDirectory {
    let path: String

    init() throws {
        var template = Array((NSTemporaryDirectory() + "custodian-test-XXXXXX").utf8CString)
        guard let created = mkdtemp(&template) else { throw VectorError("mkdtemp failed") }
        path = String(cString: created)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }
}

@Suite("The audit log")
struct AuditLogTests {
    static func makeLog(_ directory: TemporaryDirectory, records: Int) throws -> String {
        let path = directory.path + "/audit.log"
        let log = try AuditLog(path: path, chain: AuditChain())
        for index in 0..<records {
            log.stage(event: "sign", timeMs: 1_733_000_000_000 + UInt64(index)) { writer in
                writer.field("decision", "deny")
                writer.field("amount", "\(index)")
            }
        }
        try log.commit()
        return path
    }

    @Test("an untouched log verifies; seq runs from 1; each prev is the SHA-256 of the line before")
    func verifies() throws {
        let directory = try TemporaryDirectory()
        let path = try Self.makeLog(directory, records: 5)
        let bytes = try FileIO.readAll(path)
        var entries: [AuditEntry] = []
        let chain = try AuditChain.read(
            bytes, wants: { _, _, _ in true },
            visit: {
                entries.append($0); return nil
            }
        ).get()
        #expect(chain.count == 5)
        #expect(entries.count == 5)
        let lines = bytes.split(separator: 0x0A)
        #expect(entries[1].string("prev") == SHA256.hex(lines[0]))
        #expect(entries[0].string("prev") == AuditChain.genesis)
        #expect(chain.head == SHA256.hex(lines[4]))
    }

    @Test("an edited, deleted or swapped line is found and located")
    func tampering() throws {
        let directory = try TemporaryDirectory()
        let path = try Self.makeLog(directory, records: 5)
        let lines = try FileIO.readAll(path).split(separator: 0x0A).map(Array.init)
        func read(_ lines: [[UInt8]]) -> AuditError? {
            let bytes: [UInt8] = lines.reduce(into: []) { $0 += $1 + [0x0A] }
            if case .failure(let error) = AuditChain.read(bytes) { return error }
            return nil
        }
        var edited = lines
        edited[2] = Array(
            String(decoding: edited[2], as: UTF8.self).replacingOccurrences(of: "\"2\"", with: "\"9\"").utf8)
        guard case .broken(line: 4, let why) = read(edited), why.contains("the line before it") else {
            Issue.record("edit not located: \(String(describing: read(edited)))")
            return
        }
        var deleted = lines
        deleted.remove(at: 1)
        guard case .broken(line: 2, _) = read(deleted) else {
            Issue.record("deletion not located")
            return
        }
        var swapped = lines
        swapped.swapAt(1, 2)
        guard case .broken(line: 2, _) = read(swapped) else {
            Issue.record("swap not located")
            return
        }
    }

    @Test("a torn last line is reported, and cut when the log is reopened for writing")
    func tornTail() throws {
        let directory = try TemporaryDirectory()
        let path = try Self.makeLog(directory, records: 3)
        let handle = try #require(FileHandle(forWritingAtPath: path))
        handle.seekToEndOfFile()
        handle.write(Data("{\"seq\":4,\"ti".utf8))
        handle.closeFile()
        let chain = try AuditChain.read(try FileIO.readAll(path)).get()
        #expect(chain.tornTail == 12)
        #expect(chain.count == 3)
        let log = try AuditLog(path: path, chain: chain)
        log.stage(event: "start", timeMs: 1) { _ in }
        try log.commit()
        let again = try AuditChain.read(try FileIO.readAll(path)).get()
        #expect(again.count == 4)
        #expect(again.tornTail == 0)
    }
}
