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
        var reader = ChainReader()
        let outcome: LineSource.Outcome
        do {
            outcome = try source.forEachLine { line, offset in
                let record: RawRecord
                switch reader.next(line, offset: offset) {
                case .failure(let error): return error
                case .success(let value): record = value
                }
                if record.seq == headAt { verification.headAtSeq = reader.headBytes }
                switch record.event {
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
                    if let error = verifyCheckpoint(entry, address: agent) { return error }
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
        if let error = checked ?? outcome.error { return .failure(error) }
        verification.chain = reader.finish(validLength: outcome.validLength, tornTail: outcome.tornTail)
        verification.address = expected
        return .success(verification)
    }

    /// A checkpoint's `head` must equal its `prev`, and its EIP-191 signature must recover to `address`.
    public static func verifyCheckpoint(_ entry: AuditEntry, address: Address) -> AuditError? {
        guard let head = entry.string("head"), head == entry.string("prev"), let headBytes = Hex.decode(head),
            headBytes.count == 32
        else { return .broken(line: entry.line, why: "checkpoint head differs from its prev") }
        guard let signatureText = entry.string("signature"), let signature = Hex.decode(signatureText),
            Recovery.address(digest: SigningKey.personalDigest(headBytes), signature: signature) == address
        else { return .broken(line: entry.line, why: "checkpoint signature does not recover to \(address)") }
        return nil
    }
}

/// Checks decisions on its own thread: `request_hash` against the Keccak-256 of `req` for each, and the signatures
/// of the allowances since the last checkpoint at the end.
private final class DecisionChecker: @unchecked Sendable {
    private enum Item {
        case line(Int, [UInt8])
        case checkpoint
        case address(Address)
    }

    private let condition = NSCondition()
    private var queue: [[Item]] = []
    private var batch: [Item] = []
    private var batchBytes = 0
    private var closed = false
    private var done = false
    private var verifyPending = true
    private var error: AuditError?
    /// Allowances since the last checkpoint: line, digest, signature.
    private var pending: [(Int, [UInt8], [UInt8])] = []
    private var address: Address?

    static let allowed = Array(#","decision":"allow","#.utf8)
    static let hashKey = Array(#""request_hash":"0x"#.utf8)
    static let reqKey = Array(#"","req":""#.utf8)
    static let signatureKey = Array(#","signature":"0x"#.utf8)

    func start() {
        let thread = Thread { [self] in run() }
        thread.name = "custodian-verify"
        thread.start()
    }

    func add(_ record: RawRecord) {
        batch.append(.line(record.line, Array(record.bytes)))
        batchBytes += record.bytes.count
        if batchBytes >= 1 << 20 { flush() }
    }

    func checkpoint() { batch.append(.checkpoint) }

    func setAddress(_ address: Address) { batch.append(.address(address)) }

    private func flush() {
        guard !batch.isEmpty else { return }
        condition.lock()
        // At most a few batches in flight: memory stays bounded however far the checker falls behind.
        while queue.count >= 4 && error == nil { condition.wait() }
        queue.append(batch)
        condition.broadcast()
        condition.unlock()
        batch = []
        batchBytes = 0
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
            let items = queue.removeFirst()
            condition.broadcast()
            let failed = error != nil
            condition.unlock()
            if !failed, let found = check(items) {
                condition.lock()
                error = found
                condition.broadcast()
                continue
            }
            condition.lock()
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

    private func check(_ items: [Item]) -> AuditError? {
        for item in items {
            switch item {
            case .checkpoint: pending.removeAll(keepingCapacity: true)
            case .address(let value): address = value
            case .line(let line, let bytes):
                if let error = check(line: line, bytes) { return error }
            }
        }
        return nil
    }

    /// One decision record: its `request_hash` and `req` (custodian writes them side by side), and for an allowance
    /// its signature. A record in another shape is read by the strict parser instead.
    private func check(line: Int, _ bytes: [UInt8]) -> AuditError? {
        let slice = bytes[...]
        let isAllowance = RecordShape.contains(Self.allowed, in: slice)
        let fields: (hash: [UInt8], req: [UInt8], signature: [UInt8]?)?
        if let fast = Self.fastFields(slice, allowance: isAllowance) {
            fields = fast
        } else {
            guard case .success(let root) = StrictJSON.parse(bytes), let members = root.value.members else {
                return .broken(line: line, why: "not a JSON object")
            }
            guard let req = members.member("req")?.value.string else {
                // A request that could not be read is recorded by its SHA-256 alone; an allowance always has req.
                return isAllowance ? .broken(line: line, why: "an allowance without req") : nil
            }
            guard let hash = members.member("request_hash")?.value.string.flatMap(Hex.decode), hash.count == 32 else {
                return .broken(line: line, why: "a decision without a request_hash")
            }
            let signature = members.member("signature")?.value.string.flatMap(Hex.decode)
            fields = (hash, Array(req.utf8), signature)
        }
        guard let fields else { return nil }
        let digest = Keccak256.hash(fields.req)
        guard digest == fields.hash else {
            return .broken(line: line, why: "request_hash is not the Keccak-256 of req: the record was edited")
        }
        if isAllowance {
            guard let signature = fields.signature, signature.count == 65 else {
                return .broken(line: line, why: "an allowance without a signature")
            }
            pending.append((line, digest, signature))
        }
        return nil
    }

    /// `request_hash`, the unescaped `req` and the signature, read where custodian writes them; nil for anything
    /// else (an escape this writer does not produce included), which the strict parser then reads.
    static func fastFields(_ line: ArraySlice<UInt8>, allowance: Bool) -> ([UInt8], [UInt8], [UInt8]?)? {
        guard let hashAt = RecordShape.firstIndex(of: hashKey, in: line) else { return nil }
        let hashStart = hashAt + hashKey.count
        guard hashStart + 64 + reqKey.count <= line.endIndex,
            line[(hashStart + 64)..<(hashStart + 64 + reqKey.count)].elementsEqual(reqKey),
            let hash = Hex.decode(String(decoding: line[hashStart..<(hashStart + 64)], as: UTF8.self))
        else { return nil }
        var req: [UInt8] = []
        req.reserveCapacity(line.count)
        var index = hashStart + 64 + reqKey.count
        var closed = false
        while index < line.endIndex {
            let byte = line[index]
            if byte == 0x22 {
                closed = true
                break
            }
            if byte != 0x5C {
                req.append(byte)
                index += 1
                continue
            }
            guard index + 1 < line.endIndex else { return nil }
            switch line[index + 1] {
            case 0x22, 0x5C: req.append(line[index + 1])
            case UInt8(ascii: "n"): req.append(0x0A)
            case UInt8(ascii: "r"): req.append(0x0D)
            case UInt8(ascii: "t"): req.append(0x09)
            case UInt8(ascii: "u"):
                guard index + 5 < line.endIndex, line[index + 2] == 0x30, line[index + 3] == 0x30,
                    let high = Hex.nibble(line[index + 4]), let low = Hex.nibble(line[index + 5]), high < 2
                else { return nil }
                req.append(high << 4 | low)
                index += 4
            default: return nil
            }
            index += 2
        }
        guard closed else { return nil }
        var signature: [UInt8]?
        if allowance {
            guard let signatureAt = RecordShape.firstIndex(of: signatureKey, in: line[index...]) else { return nil }
            let start = signatureAt + signatureKey.count
            guard start + 130 < line.endIndex, line[start + 130] == 0x22 else { return nil }
            signature = Hex.decode(String(decoding: line[start..<(start + 130)], as: UTF8.self))
        }
        return (hash, req, signature)
    }
}
