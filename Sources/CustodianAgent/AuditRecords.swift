import CustodianCore
import CustodianCrypto
import Foundation

extension Engine {
    func stageCheckpoint(now: UInt64) {
        let head = log.stagedPrev
        let text = AuditVerifier.checkpointText(seq: log.stagedSeq + 1, head: head)
        guard let signature = try? key.personalSign(Array(text.utf8)) else { return }
        log.stage(event: "checkpoint", timeMs: now) { writer in
            writer.field("policy_hash", policy.hash)
            writer.field("address", address.checksummed)
            writer.field("head", head)
            writer.field("signed_text", text)
            writer.field("signature", Hex.encode(signature, prefixed: true))
        }
    }
}

/// How much of a refused request's text its record keeps: a refusal costs the log a few KiB at most, whatever its
/// size (an allowance keeps its whole `req`: it is what was signed).
public enum RefusalText {
    /// Bytes of a refused `req` kept, with `req_bytes` giving the whole length (`request_hash` covers the whole).
    public static let reqLimit = 4096
    /// Bytes of a denial's `detail`, and of each of its figures, kept (they may quote what the client sent).
    public static let detailLimit = 512

    /// `text` as a refusal record keeps it: at most `detailLimit` bytes, then its whole length.
    public static func cut(_ text: String) -> String {
        let bytes = Array(text.utf8)
        guard bytes.count > detailLimit else { return text }
        return String(decoding: prefix(bytes, detailLimit), as: UTF8.self) + "… (\(bytes.count) bytes)"
    }

    /// The longest prefix of `bytes` of at most `limit` bytes that does not cut a UTF-8 sequence.
    public static func prefix(_ bytes: [UInt8], _ limit: Int) -> [UInt8] {
        guard bytes.count > limit else { return bytes }
        var cut = max(limit, 0)
        while cut > 0, bytes[cut] & 0xC0 == 0x80 { cut -= 1 }
        return Array(bytes[0..<cut])
    }
}

/// `reason`, `detail` and `figures` of a denial, as fields of the object being written (audit records, dry runs).
/// A long `detail` is cut (see ``RefusalText``).
public func writeDenial(_ denial: Denial, _ writer: inout JSONWriter) {
    writer.field("reason", denial.reason.rawValue)
    writer.field("detail", RefusalText.cut(denial.detail))
    if !denial.figures.isEmpty {
        writer.key("figures")
        writer.beginObject()
        for figure in denial.figures { writer.field(figure.name, RefusalText.cut(figure.value)) }
        writer.endObject()
    }
}

/// The `warnings` array of an allowance under warn mode (nothing when there are none).
public func writeWarnings(_ warnings: [Denial], _ writer: inout JSONWriter) {
    guard !warnings.isEmpty else { return }
    writer.key("warnings")
    writer.beginArray()
    for warning in warnings {
        writer.beginObject()
        writeDenial(warning, &writer)
        writer.endObject()
    }
    writer.endArray()
}

extension Peer {
    /// This process, as the peer of an operator command's record (the command runs as the operator).
    static var operatorProcess: Peer { Peer(pid: getpid(), uid: getuid(), gid: getgid()) }
}

func writePeer(_ peer: Peer?, _ writer: inout JSONWriter) {
    guard let peer else { return }
    writer.key("peer")
    writer.beginObject()
    writer.field("uid", peer.uid)
    writer.field("gid", peer.gid)
    writer.field("pid", peer.pid)
    writer.endObject()
}
