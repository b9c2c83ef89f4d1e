import CustodianAgent
import CustodianCore
import CustodianCrypto
import CustodianTestSupport
import Foundation
import Testing

/// Domain separation (PROTOCOL-v1 §8, CONTRACT §6): checkpoints sign a labelled text, never 32 raw bytes that a v1
/// quorum signature could be; logs written before, whose checkpoints signed the head's bytes, still verify; an
/// unlabelled checkpoint after a labelled one does not.
@Suite("Checkpoint signature forms")
struct CheckpointFormTests {
    static let keyA = "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01ac362b318"

    static func key() throws -> SigningKey {
        try SigningKey(secret: try SecureBytes(copying: try VectorFiles.bytes(hex: keyA)))
    }

    /// A log of a start record and checkpoints in the given forms (true: labelled), each after a decision.
    static func log(_ forms: [Bool], in directory: TemporaryDirectory) throws -> String {
        let key = try key()
        let path = directory.path + "/audit.log"
        let log = try AuditLog(path: path, chain: AuditChain())
        log.stage(event: "start", timeMs: 1) { $0.field("address", key.address.checksummed) }
        for (index, labelled) in forms.enumerated() {
            log.stage(event: "policy_loaded", timeMs: 2 + UInt64(index)) { $0.field("policy_hash", "x") }
            let head = log.stagedPrev
            let text = AuditVerifier.checkpointText(seq: log.stagedSeq + 1, head: head)
            let message = labelled ? Array(text.utf8) : try VectorFiles.bytes(hex: head)
            let signature = Hex.encode(try key.personalSign(message), prefixed: true)
            log.stage(event: "checkpoint", timeMs: 3 + UInt64(index)) { writer in
                writer.field("address", key.address.checksummed)
                writer.field("head", head)
                if labelled { writer.field("signed_text", text) }
                writer.field("signature", signature)
            }
        }
        try log.commit()
        return path
    }

    static func verify(_ path: String) throws -> Result<AuditVerification, AuditError> {
        var source = LineSource(path: path)
        return AuditVerifier.verify(&source, address: try key().address)
    }

    @Test("an older log (head-bytes checkpoints) verifies, and so does one that moves to labelled checkpoints")
    func olderForm() throws {
        let directory = try TemporaryDirectory()
        let old = try Self.verify(try Self.log([false, false], in: directory))
        #expect((try? old.get())?.checkpoints == 2)
        let other = try TemporaryDirectory()
        let mixed = try Self.verify(try Self.log([false, true, true], in: other))
        #expect((try? mixed.get())?.checkpoints == 3)
    }

    @Test("an unlabelled checkpoint after a labelled one is refused")
    func downgrade() throws {
        let directory = try TemporaryDirectory()
        guard case .failure(let error) = try Self.verify(try Self.log([true, false], in: directory)) else {
            Issue.record("a downgraded checkpoint verified")
            return
        }
        #expect("\(error)".contains("unlabelled checkpoint after labelled ones"), "\(error)")
    }

    @Test("a labelled checkpoint's text must name its own seq and head")
    func wrongLabel() throws {
        let directory = try TemporaryDirectory()
        let path = try Self.log([true], in: directory)
        var text = try String(contentsOfFile: path, encoding: .utf8)
        text = text.replacingOccurrences(of: "checkpoint seq=3 ", with: "checkpoint seq=4 ")
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        guard case .failure(let error) = try Self.verify(path) else {
            Issue.record("an edited label verified")
            return
        }
        #expect("\(error)".contains("not the label of its seq and head"), "\(error)")
    }
}
