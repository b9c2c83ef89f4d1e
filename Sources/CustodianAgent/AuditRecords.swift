import CustodianCore
import CustodianCrypto
import Foundation

extension Engine {
    func stageCheckpoint(now: UInt64) {
        let head = log.stagedPrev
        guard let headBytes = Hex.decode(head), let signature = try? key.personalSign(headBytes) else { return }
        log.stage(event: "checkpoint", timeMs: now) { writer in
            writer.field("policy_hash", policy.hash)
            writer.field("address", address.checksummed)
            writer.field("head", head)
            writer.field("signature", Hex.encode(signature, prefixed: true))
        }
    }
}

/// `reason`, `detail` and `figures` of a denial, as fields of the object being written (audit records, dry runs).
public func writeDenial(_ denial: Denial, _ writer: inout JSONWriter) {
    writer.field("reason", denial.reason.rawValue)
    writer.field("detail", denial.detail)
    if !denial.figures.isEmpty {
        writer.key("figures")
        writer.beginObject()
        for figure in denial.figures { writer.field(figure.name, figure.value) }
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

func writePeer(_ peer: Peer?, _ writer: inout JSONWriter) {
    guard let peer else { return }
    writer.key("peer")
    writer.beginObject()
    writer.field("uid", peer.uid)
    writer.field("gid", peer.gid)
    writer.field("pid", peer.pid)
    writer.endObject()
}
