import CustodianCore
import CustodianCrypto
import Foundation

/// What verifying a log established.
public struct AuditVerification: Sendable {
    public var chain: AuditChain
    /// The agent whose log it is (given, or named by the first start record).
    public var address: Address?
    public var decisions = 0
    public var checkpoints = 0
    /// The seq and head of the last checkpoint (nil: none).
    public var lastCheckpoint: (seq: UInt64, head: String)?
    /// The SHA-256 of line `headAt` (when asked for and the log reaches it).
    public var headAtSeq: [UInt8]?

    /// The verification of an empty log.
    public init(chain: AuditChain) { self.chain = chain }

    /// An error at a line of the chain, named by file and line in it when the log is in segments.
    public func locate(_ error: AuditError) -> AuditError {
        // A log in one file from its first record keeps its plain line numbers.
        guard case .broken(let line, let why) = error, chain.fileCount > 1 || (chain.files.first?.firstLine ?? 1) > 1,
            let start = chain.files.last(where: { $0.firstLine <= line })
        else { return error }
        return .brokenIn(file: start.file.path, line: line - start.firstLine + 1, why: why)
    }
}

/// The one verifier of an audit log, used by `audit verify` and by every start, so that the two cannot disagree.
///
/// It checks, in one streaming pass: the chain (consecutive seqs, each `prev` the hash of the line before); that
/// every start record names the same agent; every checkpoint's signature; that every decision's `request_hash` is
/// the Keccak-256 of its `req`; and that every allowance after the last checkpoint recovers to the agent over it
/// (allowances before it are covered by the checkpoint's signature over the chain). Errors name the first bad line.
///
/// The Keccak and signature checks run on a second thread, fed in batches, while this one hashes the chain.
public enum AuditVerifier {
    /// Verifies the log `source` yields and hands every record to `visit` (which may stop the reading with an
    /// error). `address`: the agent (nil: the one the first start record names). `headAt`: a seq whose line hash to
    /// report (an anchor's).
    public static func verify(
        _ source: inout LineSource, address: Address?, headAt: UInt64? = nil,
        visit: (RawRecord) -> AuditError? = { _ in nil }
    ) -> Result<AuditVerification, AuditError> {
        let checker = DecisionChecker()
        checker.start()
        var expected = address
        var verification = AuditVerification(chain: AuditChain())
        let startsAfter = source.startsAfterSeq
        guard startsAfter < UInt64(Int.max / 2) else { return .failure(.unavailable("a seq out of range")) }
        var reader = ChainReader(startingAfter: startsAfter)
        // Once a checkpoint signs the labelled text, a later one in the older form would be a downgrade.
        var labelled = false
        // A log in segments: where each file begins, and what the first record of the one entered must show.
        var files: [(firstLine: Int, file: Segments.File)] = []
        var entered: LineSource.FileEntry?
        var previousHash: String?
        let outcome: LineSource.Outcome
        do {
            outcome = try source.forEachLine(
                entering: { entry in
                    files.append((reader.count + 1, entry.file))
                    entered = entry
                    previousHash = entry.previousSHA256
                    return nil
                }
            ) { line, offset in
                if let entry = entered {
                    entered = nil
                    if let error = checkFileStart(
                        line, entry: entry, continuing: entry.index > 0 || startsAfter > 0, expected: reader.count + 1,
                        previous: entry.index > 0 ? files[files.count - 2].file.name : nil)
                    {
                        return error
                    }
                }
                let record: RawRecord
                switch reader.next(line, offset: offset) {
                case .failure(let error): return error
                case .success(let value): record = value
                }
                if record.seq == headAt { verification.headAtSeq = reader.headBytes }
                switch record.event {
                case "segment":
                    // Only as the first record of a file that continues a log (checked on entering it).
                    guard files.last?.firstLine == record.line, record.line > 1 else {
                        return .broken(
                            line: record.line,
                            why: "a segment record that does not begin its file: segments are separate files")
                    }
                    guard case .success(let entry) = record.parse() else {
                        return .broken(line: record.line, why: "not a JSON object")
                    }
                    let named = entry.string("address")
                    if expected == nil {
                        expected = named.flatMap(Address.init(eip55:))
                        if let agent = expected { checker.setAddress(agent) }
                    }
                    guard let agent = expected, named == agent.checksummed else {
                        return .broken(
                            line: record.line, why: "a segment of an agent of \(named ?? "nobody"), not this log's")
                    }
                    guard entry.integer("previous_last_seq") == record.seq - 1,
                        let hash = entry.string("previous_sha256"), hash.utf8.count == 64
                    else {
                        return .broken(
                            line: record.line, why: "a segment record without the previous segment's seq and hash")
                    }
                    if let previous = files.count > 1 ? files[files.count - 2].file : nil, let read = previousHash,
                        read != hash
                    {
                        return .broken(
                            line: record.line,
                            why:
                                "the SHA-256 of \(previous.name) is \(read), not the \(hash) this segment record names: "
                                + "\(previous.name) was edited after it was sealed")
                    }
                    // Every checkpoint since segments exist signs the labelled text.
                    labelled = true
                case "sign":
                    verification.decisions += 1
                    checker.add(record)
                case "checkpoint":
                    verification.checkpoints += 1
                    checker.checkpoint()
                    guard case .success(let entry) = record.parse() else {
                        return .broken(line: record.line, why: "not a JSON object")
                    }
                    guard let agent = expected else {
                        return .broken(line: record.line, why: "a checkpoint, but no address to check it against")
                    }
                    if let error = verifyCheckpoint(entry, address: agent, afterLabelled: labelled) { return error }
                    labelled = labelled || entry.string("signed_text") != nil
                    verification.lastCheckpoint = (record.seq, entry.string("head") ?? "")
                case "start":
                    guard case .success(let entry) = record.parse() else {
                        return .broken(line: record.line, why: "not a JSON object")
                    }
                    let named = entry.string("address")
                    if expected == nil { expected = named.flatMap(Address.init(eip55:)) }
                    guard let agent = expected else {
                        return .broken(line: record.line, why: "a start record without an EIP-55 address")
                    }
                    if named != agent.checksummed {
                        return .broken(line: record.line, why: "starts an agent of \(named ?? "nobody"), not \(agent)")
                    }
                    checker.setAddress(agent)
                case "operator":
                    // A ledger import names the agent whose ledger it adds to, as a start record does.
                    guard RecordShape.contains(Self.ledgerImport, in: record.bytes) else { break }
                    guard case .success(let entry) = record.parse() else {
                        return .broken(line: record.line, why: "not a JSON object")
                    }
                    guard entry.string("action") == "ledger_import" else { break }
                    let named = entry.string("agent")
                    if expected == nil {
                        expected = named.flatMap(Address.init(eip55:))
                        if let agent = expected { checker.setAddress(agent) }
                    }
                    guard let agent = expected, named == agent.checksummed else {
                        return .broken(
                            line: record.line,
                            why:
                                "imports the ledger of \(named ?? "nobody"), not \(expected?.checksummed ?? "an agent")"
                        )
                    }
                default: break
                }
                return visit(record)
            }
        } catch {
            _ = checker.finish(verifyPending: false)
            return .failure(.unavailable("\(error)"))
        }
        // The checker has seen every line before the one that stopped the reading: its error, if any, is earlier.
        let checked = checker.finish(verifyPending: outcome.error == nil)
        verification.chain.files = files
        verification.chain.fileCount = source.files.count
        if let error = checked ?? outcome.error { return .failure(verification.locate(error)) }
        verification.chain = reader.finish(validLength: outcome.validLength, tornTail: outcome.tornTail)
        verification.chain.files = files
        verification.chain.fileCount = source.files.count
        verification.chain.lastFileHash = outcome.lastFileHash
        verification.address = expected
        return .success(verification)
    }

    /// The first line of a file entered: one that continues a log must begin with a `segment` record at the seq
    /// after the previous file's last; a gap or a step back is named for what it is.
    private static func checkFileStart(
        _ line: ArraySlice<UInt8>, entry: LineSource.FileEntry, continuing: Bool, expected: Int, previous: String?
    ) -> AuditError? {
        guard let (seq, _, event) = RecordShape.fields(line) else { return nil }  // the chain reader says why
        let after = previous.map { " after \($0)" } ?? ""
        if seq > UInt64(expected), previous != nil {
            return .broken(
                line: expected,
                why:
                    "it begins at record \(seq), but record \(expected) was expected\(after): records \(expected)…\(seq - 1) "
                    + "are missing (a segment deleted or moved away)")
        }
        if seq < UInt64(expected), previous != nil {
            return .broken(
                line: expected,
                why:
                    "it begins at record \(seq), but record \(expected) was expected\(after): the files are out of order"
            )
        }
        if continuing && event != "segment" {
            return .broken(
                line: expected,
                why: "a file that continues the log must begin with a segment record, not \(event)"
                    + (entry.index == 0 ? " (give the log's files from its first, or from a sealed segment on)" : ""))
        }
        return nil
    }

    static let ledgerImport = Array(#""action":"ledger_import""#.utf8)

    /// A checkpoint's `head` must equal its `prev`, and its EIP-191 signature must recover to `address`: over the
    /// labelled text its `signed_text` holds (which must be exactly ``checkpointText(seq:head:)``), or, in logs
    /// written before checkpoints were labelled, over the 32 bytes of `head` (refused after a labelled one).
    public static func verifyCheckpoint(_ entry: AuditEntry, address: Address, afterLabelled: Bool = false)
        -> AuditError?
    {
        guard let head = entry.string("head"), head == entry.string("prev"), let headBytes = Hex.decode(head),
            headBytes.count == 32
        else { return .broken(line: entry.line, why: "checkpoint head differs from its prev") }
        let message: [UInt8]
        if let text = entry.string("signed_text") {
            guard let seq = entry.integer("seq"), text == checkpointText(seq: seq, head: head) else {
                return .broken(line: entry.line, why: "checkpoint signed_text is not the label of its seq and head")
            }
            message = Array(text.utf8)
        } else {
            guard !afterLabelled else {
                return .broken(line: entry.line, why: "an unlabelled checkpoint after labelled ones")
            }
            message = headBytes
        }
        guard let signatureText = entry.string("signature"), let signature = Hex.decode(signatureText),
            Recovery.address(digest: SigningKey.personalDigest(message), signature: signature) == address
        else { return .broken(line: entry.line, why: "checkpoint signature does not recover to \(address)") }
        return nil
    }

    /// The text a checkpoint signs (CONTRACT §6): labelled, so that no checkpoint signature is ever an EIP-191
    /// signature over 32 raw bytes, which a v1 quorum signature is (PROTOCOL-v1 §8).
    public static func checkpointText(seq: UInt64, head: String) -> String {
        "custodian audit checkpoint seq=\(seq) head=\(head)"
    }
}

/// Checks decisions on its own thread: `request_hash` against the Keccak-256 of `req` for each, and the signatures
/// of the allowances since the last checkpoint at the end.
private final class DecisionChecker: @unchecked Sendable {
    private enum Item {
        /// A decision record: its line number and where its bytes are in the batch.
        case line(Int, Range<Int>)
        case checkpoint
        case address(Address)
    }

    /// Lines handed over together, their bytes in one buffer.
    private struct Batch {
        var bytes: [UInt8] = []
        var items: [Item] = []
    }

    private let condition = NSCondition()
    private var queue: [Batch] = []
    private var batch = Batch()
    /// Batches the checker is done with, reused for the next lines.
    private var spares: [Batch] = []
    private var closed = false
    private var done = false
    private var verifyPending = true
    private var error: AuditError?
    /// Allowances since the last checkpoint: line, digest, signature.
    private var pending: [(Int, [UInt8], [UInt8])] = []
    private var address: Address?
    /// The unescaped `req` of the line being checked.
    private var scratch: [UInt8] = []

    static let hashKey = Array(#""request_hash":"0x"#.utf8)
    /// A v1 decision's protocol, written before `request_hash` (inside `req` a quote is always escaped).
    static let v1Protocol = Array(#""protocol":"nitrolite/v1""#.utf8)
    static let reqKey = Array(#"","req":""#.utf8)
    static let decisionKey = Array(#","decision":""#.utf8)
    static let allow = Array(#"allow","signature":"0x"#.utf8)
    static let allowed = Array(#","decision":"allow","#.utf8)
    static let deny = Array(#"deny""#.utf8)

    init() { batch.bytes.reserveCapacity(1 << 20 + 1 << 16) }

    func start() {
        let thread = Thread { [self] in run() }
        thread.name = "custodian-verify"
        thread.start()
    }

    func add(_ record: RawRecord) {
        let start = batch.bytes.count
        batch.bytes.append(contentsOf: record.bytes)
        batch.items.append(.line(record.line, start..<batch.bytes.count))
        if batch.bytes.count >= 1 << 20 { flush() }
    }

    func checkpoint() { batch.items.append(.checkpoint) }

    func setAddress(_ address: Address) { batch.items.append(.address(address)) }

    private func flush() {
        guard !batch.items.isEmpty else { return }
        condition.lock()
        // At most a few batches in flight: memory stays bounded however far the checker falls behind.
        while queue.count >= 4 && error == nil { condition.wait() }
        queue.append(batch)
        batch = spares.popLast() ?? Batch()
        condition.broadcast()
        condition.unlock()
    }

    /// Waits for every line handed over and returns the first error among them.
    func finish(verifyPending: Bool) -> AuditError? {
        flush()
        condition.lock()
        defer { condition.unlock() }
        self.verifyPending = verifyPending
        closed = true
        condition.broadcast()
        while !done { condition.wait() }
        return error
    }

    private func run() {
        condition.lock()
        while true {
            while queue.isEmpty && !closed { condition.wait() }
            if queue.isEmpty { break }
            var items = queue.removeFirst()
            condition.broadcast()
            let failed = error != nil
            condition.unlock()
            let found = failed ? nil : check(items)
            items.bytes.removeAll(keepingCapacity: true)
            items.items.removeAll(keepingCapacity: true)
            condition.lock()
            if spares.count < 2 { spares.append(items) }
            if let found {
                error = found
                condition.broadcast()
            }
        }
        if error == nil, verifyPending, let address {
            for (line, digest, signature) in pending
            where Recovery.address(digest: digest, signature: signature) != address {
                error = .broken(line: line, why: "the signature does not recover to \(address) over req")
                break
            }
        }
        done = true
        condition.broadcast()
        condition.unlock()
    }

    private func check(_ batch: Batch) -> AuditError? {
        for item in batch.items {
            switch item {
            case .checkpoint: pending.removeAll(keepingCapacity: true)
            case .address(let value): address = value
            case .line(let line, let range):
                if let error = check(line: line, batch.bytes[range]) { return error }
            }
        }
        return nil
    }

    /// One decision record: its `request_hash` and `req` (custodian writes them side by side, then `decision`), and
    /// for an allowance its signature. A record in another shape is read by the strict parser instead.
    private func check(line: Int, _ bytes: ArraySlice<UInt8>) -> AuditError? {
        var hash = [UInt8](repeating: 0, count: 32)
        var signature: [UInt8]?
        let isAllowance: Bool
        // A local buffer (taken from the property and put back): appends to a class's property pay an exclusivity
        // check each.
        var req = scratch
        scratch = []
        defer { scratch = req }
        if let allowance = Self.fastFields(bytes, hash: &hash, req: &req, signature: &signature) {
            isAllowance = allowance
        } else {
            isAllowance = RecordShape.contains(Self.allowed, in: bytes)
            guard case .success(let root) = StrictJSON.parse(Array(bytes)), let members = root.value.members else {
                return .broken(line: line, why: "not a JSON object")
            }
            if members.member("channel_id") != nil {
                return checkChannel(line: line, members, isAllowance: isAllowance)
            }
            guard let text = members.member("req")?.value.string else {
                // A request that could not be read is recorded by its SHA-256 alone; an allowance always has req.
                return isAllowance ? .broken(line: line, why: "an allowance without req") : nil
            }
            guard let decoded = members.member("request_hash")?.value.string.flatMap(Hex.decode), decoded.count == 32
            else {
                return .broken(line: line, why: "a decision without a request_hash")
            }
            if let total = members.member("req_bytes") {
                // A refusal that keeps only the start of its request: request_hash covers the whole, which is not
                // here to hash. An allowance always keeps its whole req.
                guard !isAllowance, let token = total.value.numberToken, let length = Int(token),
                    length > text.utf8.count
                else {
                    return .broken(line: line, why: "req_bytes on an allowance, or not longer than the req it keeps")
                }
                return nil
            }
            hash = decoded
            signature = members.member("signature")?.value.string.flatMap(Hex.decode)
            req = Array(text.utf8)
        }
        // The record's protocol (records before v1 name none: v0) computes the hashes again from its text.
        let wire: WireProtocol =
            RecordShape.contains(Self.v1Protocol, in: bytes.prefix(640)) ? .nitroliteV1 : .nitroRPCv0
        guard let hashes = wire.hashes(ofRecorded: req), hashes.requestHash == hash else {
            return .broken(
                line: line,
                why: "request_hash is not the hash of the \(wire.rawValue) request in req: the record was edited")
        }
        let digest = hashes.digest
        if isAllowance {
            guard let signature, signature.count == 65 else {
                return .broken(line: line, why: "an allowance without a signature")
            }
            pending.append((line, digest, signature))
        }
        return nil
    }

    /// A decision that carries a channel state (a channel frame, an app deposit with its commit): the
    /// state's message rebuilt from `req` at the record's `decimals` must hash to `request_hash` (a deposit's:
    /// `channel_request_hash`, its update's to `request_hash`), and an allowance's signatures recover over their
    /// digests. A record without `decimals` (the token was not known) is a refusal and names no hash.
    private func checkChannel(line: Int, _ members: [StrictJSON.Member], isAllowance: Bool) -> AuditError? {
        guard let text = members.member("req")?.value.string else {
            return isAllowance ? .broken(line: line, why: "an allowance without req") : nil
        }
        if members.member("req_bytes") != nil {
            return isAllowance ? .broken(line: line, why: "req_bytes on an allowance") : nil
        }
        let recorded = members.member("request_hash")?.value.string.flatMap(Hex.decode)
        guard let token = members.member("decimals")?.value.numberToken, let decimals = UInt8(token) else {
            guard !isAllowance, recorded == nil else {
                return .broken(line: line, why: "a channel record with a request_hash or a signature but no decimals")
            }
            return nil
        }
        guard let hashes = ChannelStateReader.recordedHashes(Array(text.utf8), decimals: decimals) else {
            return .broken(line: line, why: "a channel record whose req does not read as a channel state")
        }
        let channelHash =
            hashes.app == nil ? recorded : members.member("channel_request_hash")?.value.string.flatMap(Hex.decode)
        if let app = hashes.app {
            guard recorded == app.hash else {
                return .broken(
                    line: line, why: "request_hash is not the hash of the deposit in req: the record was edited")
            }
        }
        // A refused deposit names its update's hash only.
        if hashes.app == nil || isAllowance {
            guard channelHash == hashes.channel.hash else {
                return .broken(
                    line: line, why: "the channel state's hash is not that of the state in req: the record was edited")
            }
        }
        guard isAllowance else { return nil }
        let signature = members.member("signature")?.value.string.flatMap(Hex.decode)
        if let app = hashes.app {
            let channelSignature = members.member("channel_signature")?.value.string.flatMap(Hex.decode)
            guard let signature, signature.count == 65, let channelSignature, channelSignature.count == 65 else {
                return .broken(line: line, why: "a deposit allowance without both its signatures")
            }
            pending.append((line, app.digest, signature))
            pending.append((line, hashes.channel.digest, channelSignature))
        } else {
            guard let signature, signature.count == 65 else {
                return .broken(line: line, why: "an allowance without a signature")
            }
            pending.append((line, hashes.channel.digest, signature))
        }
        return nil
    }

    /// Reads `request_hash` into `hash`, the unescaped `req` into `req`, and for an allowance its signature,
    /// where custodian writes them; returns whether it is an allowance, or nil for anything else (an escape this
    /// writer does not produce included), which the strict parser then reads.
    private static func fastFields(
        _ line: ArraySlice<UInt8>, hash: inout [UInt8], req scratch: inout [UInt8], signature: inout [UInt8]?
    ) -> Bool? {
        // request_hash stands among the first members (after seq, time, event, peer, policy_hash, method, id).
        guard let hashAt = RecordShape.firstIndex(of: hashKey, in: line.prefix(640)) else { return nil }
        let hashStart = hashAt + hashKey.count
        guard hashStart + 64 + reqKey.count <= line.endIndex,
            line[(hashStart + 64)..<(hashStart + 64 + reqKey.count)].elementsEqual(reqKey),
            RecordShape.decodeHex(line[hashStart..<(hashStart + 64)], into: &hash)
        else { return nil }
        guard let end = RecordShape.unescape(line, from: hashStart + 64 + reqKey.count, into: &scratch) else {
            return nil
        }
        let index = end
        // Then ,"decision":"allow","signature":"0x<130 hex>" or ,"decision":"deny".
        let decisionStart = index + 1
        guard decisionStart + decisionKey.count <= line.endIndex,
            line[decisionStart..<(decisionStart + decisionKey.count)].elementsEqual(decisionKey)
        else { return nil }
        let value = decisionStart + decisionKey.count
        if line[value...].starts(with: allow) {
            let start = value + allow.count
            var bytes = [UInt8](repeating: 0, count: 65)
            guard start + 130 < line.endIndex, line[start + 130] == 0x22,
                RecordShape.decodeHex(line[start..<(start + 130)], into: &bytes)
            else { return nil }
            signature = bytes
            return true
        }
        guard line[value...].starts(with: deny) else { return nil }
        return false
    }

}
