import CustodianCore
import CustodianCrypto
import Foundation

/// How far the audit log is known to have reached: the seq of its last durable checkpoint and the SHA-256 of that
/// line. Kept in `audit.anchor` beside the log, replaced atomically after each checkpoint is durable, so that a start
/// can tell a log that was moved away, emptied, cut or replaced from one that never grew further.
public struct AuditAnchor: Sendable, Equatable {
    public var seq: UInt64
    /// The SHA-256 of line `seq` (lower-case hex).
    public var head: String

    public init(seq: UInt64, head: String) {
        self.seq = seq
        self.head = head
    }

    public static let fileName = "audit.anchor"

    /// The anchor file beside a log.
    public static func path(besideLog logPath: String) -> String {
        let directory =
            logPath.contains("/") ? String(logPath[..<(logPath.lastIndex(of: "/") ?? logPath.endIndex)]) : "."
        return directory + "/" + fileName
    }

    /// `{"version":1,"seq":N,"head":"…"}` and a newline.
    public var bytes: [UInt8] {
        var writer = JSONWriter()
        writer.beginObject()
        writer.field("version", 1)
        writer.field("seq", seq)
        writer.field("head", head)
        writer.endObject()
        return writer.bytes + [0x0A]
    }

    /// The anchor at `path`, nil if there is none; an anchor that does not read is an error (never "no anchor").
    public static func read(_ path: String) throws(SystemError) -> AuditAnchor? {
        guard FileIO.exists(path) else { return nil }
        let bytes = try FileIO.readAll(path, limit: 4096, followLinks: false)
        let text = bytes.last == 0x0A ? Array(bytes.dropLast()) : bytes
        guard case .success(let root) = StrictJSON.parse(text), let members = root.value.members,
            members.member("version")?.value.numberToken == "1",
            let seq = members.member("seq")?.value.numberToken.flatMap({ UInt64($0) }),
            let head = members.member("head")?.value.string, head.utf8.count == 64, Hex.decode(head) != nil
        else { throw SystemError("read (not an anchor custodian writes)", path, EINVAL) }
        return AuditAnchor(seq: seq, head: head)
    }

    /// Replaces the anchor at `path` atomically (synced).
    public func write(to path: String) throws {
        try SecretFile.writeAtomically(bytes, to: path, replace: true)
    }
}

/// What a state directory shows of its log's history before the log itself is read: the anchor, and the seqs of
/// the snapshots beside it. A start that finds less log than this refuses.
public struct StateEvidence: Sendable {
    public var anchor: AuditAnchor?
    /// The snapshot files present and the seq each was taken at.
    public var snapshots: [(path: String, seq: UInt64)] = []

    /// No evidence.
    public init() {}

    /// The longest history this evidence proves: the anchor's seq, or a snapshot's seq less one (a stop writes its
    /// snapshot just before the stop record that carries its hash).
    public var provenSeq: UInt64 {
        max(anchor?.seq ?? 0, snapshots.map { $0.seq > 0 ? $0.seq - 1 : 0 }.max() ?? 0)
    }

    public var isEmpty: Bool { anchor == nil && snapshots.isEmpty }

    /// What proves it, in words.
    public var summary: String {
        var parts: [String] = []
        if let anchor { parts.append("\(AuditAnchor.fileName) names record \(anchor.seq)") }
        for snapshot in snapshots {
            parts.append("\((snapshot.path as NSString).lastPathComponent) was taken at record \(snapshot.seq)")
        }
        return parts.joined(separator: "; ")
    }
}

extension StateEvidence {
    /// The anchor and the snapshots of the state directory `directory`.
    public static func read(stateDirectory directory: String) throws(SystemError) -> StateEvidence {
        var evidence = StateEvidence()
        evidence.anchor = try AuditAnchor.read(directory + "/" + AuditAnchor.fileName)
        for name in ["ledger.snapshot", "ledger.snapshot.prev"] {
            let path = directory + "/" + name
            guard FileIO.exists(path) else { continue }
            // Only the header is needed for the seq; a snapshot that does not read proves nothing.
            if let seq = LedgerState.snapshotSeq(
                try FileIO.readAll(path, limit: 64, prefixOnly: true, followLinks: false))
            {
                evidence.snapshots.append((path, seq))
            }
        }
        return evidence
    }

    /// Why a log that verified as `verification` is shorter, or other, than this evidence proves (nil: it is not).
    public func shortfall(of verification: AuditVerification) -> String? {
        let count = UInt64(verification.chain.count)
        if count == 0 && !isEmpty {
            return "the audit log is missing or empty, but \(summary): the sessions signed before would be forgotten"
        }
        if provenSeq > count {
            return "the audit log ends at record \(count), but \(summary): records were cut from it"
        }
        if let anchor, let head = verification.headAtSeq, Hex.encode(head) != anchor.head {
            return "record \(anchor.seq) of the audit log is not the one \(AuditAnchor.fileName) names: the log was "
                + "replaced or rewritten"
        }
        return nil
    }
}
