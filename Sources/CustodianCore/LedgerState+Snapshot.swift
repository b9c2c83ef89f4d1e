/// A compact encoding of the whole ledger, written at a clean stop so that the next start need not replay every
/// decision. Its SHA-256 is recorded in the audit log's stop record: a snapshot is used only when the chain
/// vouches for it, and otherwise the ledger is replayed from the log as before.
///
/// Layout (v5: v4 plus the home channels and outflows; v4: v3 plus each definition's protocol): the magic line, the seq, then length-prefixed fields (LEB128 integers, UTF-8 strings, 20-byte addresses,
/// amounts as their decimal text). Decoding refuses anything malformed or left over.
extension LedgerState {
    static let snapshotMagic = Array("custodian ledger snapshot v5\n".utf8)
    /// The previous layout, still decoded: no channels.
    static let snapshotMagicV4 = Array("custodian ledger snapshot v4\n".utf8)

    /// The snapshot of this ledger, as of the audit record `seq` (the stop record that will carry its hash).
    public func encodeSnapshot(seq: UInt64) -> [UInt8] {
        var out = SnapshotWriter()
        out.bytes = Self.snapshotMagic
        out.uint(seq)
        let ids = sessions.keys.sorted()
        out.uint(UInt64(ids.count))
        // Sessions' previous states are not kept: only an operator's release needs them, and a release is written
        // with the agent stopped, after a full replay, and makes the next start replay in full.
        for id in ids {
            guard let session = sessions[id] else { continue }
            out.record(session)
        }
        out.uint(UInt64(losses.count))
        for loss in losses {
            out.uint(loss.timeMs)
            out.string(loss.asset.value)
            out.amount(loss.amount)
            out.string(loss.sessionID)
            out.uint(loss.version)
        }
        let channelIDs = channels.channels.keys.sorted()
        out.uint(UInt64(channelIDs.count))
        for id in channelIDs {
            guard let entry = channels.channels[id] else { continue }
            out.channel(entry)
        }
        out.uint(UInt64(channels.outflows.count))
        for outflow in channels.outflows {
            out.uint(outflow.timeMs)
            out.string(outflow.asset)
            out.amount(outflow.amount)
        }
        return out.bytes
    }

    /// One session's record in the snapshot encoding (an operator's release record carries the state it returns
    /// the session to this way, as hex).
    public static func encodeRecord(_ session: SessionRecord) -> [UInt8] {
        var out = SnapshotWriter()
        out.bytes = recordMagic
        out.record(session)
        return out.bytes
    }

    /// What starts a record ``encodeRecord(_:)`` writes since records carry their protocol; the records of release
    /// records written before (v3 layout) start with the session id's length (66).
    static let recordMagic = Array("r4:".utf8)

    /// The record ``encodeRecord(_:)`` wrote (or an earlier build's, without the protocol: a v0 session), or nil
    /// (anything malformed or left over).
    public static func decodeRecord(_ bytes: [UInt8]) -> SessionRecord? {
        let current = bytes.starts(with: recordMagic)
        var input = SnapshotReader(bytes: bytes, index: current ? recordMagic.count : 0)
        guard let record = input.record(withProtocol: current), !input.ensure(1) else { return nil }
        return record
    }

    /// One home channel's entry in the snapshot encoding (the record of a `ledger import` into a ledger database
    /// carries it this way, as hex).
    public static func encodeChannel(_ entry: ChannelEntry) -> [UInt8] {
        var out = SnapshotWriter()
        out.bytes = channelMagic
        out.channel(entry)
        return out.bytes
    }

    static let channelMagic = Array("c5:".utf8)

    /// The entry ``encodeChannel(_:)`` wrote, or nil (anything malformed or left over).
    public static func decodeChannel(_ bytes: [UInt8]) -> ChannelEntry? {
        guard bytes.starts(with: channelMagic) else { return nil }
        var input = SnapshotReader(bytes: bytes, index: channelMagic.count)
        guard let entry = input.channel(), !input.ensure(1) else { return nil }
        return entry
    }

    /// The seq a snapshot was taken at, read from its header without decoding it.
    public static func snapshotSeq(_ bytes: [UInt8]) -> UInt64? {
        // An earlier build's snapshot (v2) is not decoded, but its seq is still evidence of how far the log reached.
        guard
            let magic = ([snapshotMagic, snapshotMagicV4] + olderSnapshotMagics).first(where: { bytes.starts(with: $0) }
            )
        else {
            return nil
        }
        var input = SnapshotReader(bytes: bytes, index: magic.count)
        return input.uint()
    }

    /// The headers of the snapshots earlier builds wrote (same header layout, other records): v2 before committed
    /// loss, v3 before v1 sessions.
    static let olderSnapshotMagics = [
        Array("custodian ledger snapshot v3\n".utf8), Array("custodian ledger snapshot v2\n".utf8),
    ]

    /// The ledger a snapshot holds and the seq of the record it was taken at, or nil if it is not one this build
    /// wrote.
    public static func decodeSnapshot(_ bytes: [UInt8]) -> (state: LedgerState, seq: UInt64)? {
        var given = false
        return decodeSnapshot(chunks: {
            guard !given else { return nil }
            given = true
            return bytes
        })
    }

    /// Like ``decodeSnapshot(_:)`` over bytes handed in pieces by `chunks` (nil at the end), so that a snapshot is
    /// decoded from a file without being held whole in memory. Reads every chunk: a snapshot with bytes left over
    /// does not decode.
    public static func decodeSnapshot(chunks: @escaping () -> [UInt8]?) -> (state: LedgerState, seq: UInt64)? {
        var input = SnapshotReader(next: chunks)
        guard input.ensure(snapshotMagic.count) else { return nil }
        let current = input.bytes[0..<snapshotMagic.count].elementsEqual(snapshotMagic)
        guard current || input.bytes[0..<snapshotMagicV4.count].elementsEqual(snapshotMagicV4) else { return nil }
        input.index = snapshotMagic.count
        var state = LedgerState()
        guard let seq = input.uint(), let count = input.uint() else { return nil }
        state.sessions.reserveCapacity(Int(min(count, 1 << 24)))
        for _ in 0..<count {
            guard let session = input.record() else { return nil }
            state.sessions[session.appSessionID] = session
        }
        guard let lossCount = input.uint() else { return nil }
        for _ in 0..<lossCount {
            guard let time = input.uint(), let asset = input.string(), let amount = input.amount(),
                let id = input.string(), let version = input.uint()
            else { return nil }
            state.losses.append(
                LossEvent(timeMs: time, asset: ExactString(asset), amount: amount, sessionID: id, version: version))
        }
        if current {
            guard let channelCount = input.uint() else { return nil }
            for _ in 0..<channelCount {
                guard let entry = input.channel(), state.channels.channels[entry.copy.channelID] == nil else {
                    return nil
                }
                state.channels.channels[entry.copy.channelID] = entry
            }
            guard let outflowCount = input.uint() else { return nil }
            for _ in 0..<outflowCount {
                guard let time = input.uint(), let asset = input.string(), let amount = input.amount() else {
                    return nil
                }
                state.channels.outflows.append(ChannelPolicy.Outflow(timeMs: time, asset: asset, amount: amount))
            }
        }
        guard !input.ensure(1) else { return nil }
        state.recountOpenFunding()
        return (state, seq)
    }
}

private struct SnapshotWriter {
    var bytes: [UInt8] = []

    mutating func uint(_ value: UInt64) {
        var value = value
        repeat {
            var byte = UInt8(value & 0x7F)
            value >>= 7
            if value != 0 { byte |= 0x80 }
            bytes.append(byte)
        } while value != 0
    }

    mutating func string(_ text: String) {
        uint(UInt64(text.utf8.count))
        bytes.append(contentsOf: text.utf8)
    }

    mutating func optionalString(_ text: String?) {
        if let text {
            uint(1)
            string(text)
        } else {
            uint(0)
        }
    }

    mutating func amount(_ amount: Amount) { string(amount.description) }

    /// A home channel's entry (snapshot v5).
    mutating func channel(_ entry: ChannelEntry) {
        let copy = entry.copy
        string(copy.channelID)
        address(copy.user)
        string(copy.asset)
        uint(UInt64(copy.decimals))
        uint(copy.epoch)
        uint(copy.version)
        address(copy.ledger.token)
        uint(copy.ledger.chainID)
        for value in [
            copy.ledger.userBalance, copy.ledger.userNetFlow, copy.ledger.nodeBalance, copy.ledger.nodeNetFlow,
        ] {
            amount(value)
        }
        optionalString(entry.lastSigned.map { "\($0.version):" + Hex.encode($0.hash, prefixed: false) })
        uint((entry.nodeIssuedBase ? 1 : 0) | (entry.coSigned ? 2 : 0) | (entry.finalized ? 4 : 0))
        optionalString(entry.halted)
        optionalString(entry.nodeBaseHash.map { Hex.encode($0, prefixed: false) })
        optionalString(entry.coSignedMessage.map { Hex.encode($0, prefixed: false) })
    }

    mutating func address(_ address: Address) { bytes.append(contentsOf: address.bytes) }

    mutating func allocations(_ allocations: [Allocation]) {
        uint(UInt64(allocations.count))
        for allocation in allocations {
            address(allocation.participant)
            string(allocation.asset.value)
            amount(allocation.amount)
        }
    }

    mutating func amounts(_ amounts: [ExactString: Amount]) {
        uint(UInt64(amounts.count))
        for (asset, value) in amounts.sorted(by: { $0.key < $1.key }) {
            string(asset.value)
            amount(value)
        }
    }

    mutating func record(_ session: SessionRecord) {
        string(session.appSessionID)
        let definition = session.definition
        optionalString(definition.application)
        string(definition.protocolName)
        uint(UInt64(definition.participants.count))
        for participant in definition.participants { address(participant) }
        uint(UInt64(definition.weights.count))
        for weight in definition.weights { uint(UInt64(bitPattern: weight)) }
        uint(definition.quorum)
        uint(definition.challenge)
        uint(definition.nonce)
        uint(definition.wire == .nitroliteV1 ? 1 : 0)
        uint(session.status == .open ? 0 : 1)
        uint(session.version)
        allocations(session.allocations)
        optionalString(session.sessionData)
        amounts(session.totals)
        amounts(session.funding)
        amounts(session.withdrawn)
        allocations(session.creation)
        optionalString(session.creationSessionData)
        amounts(session.committedLoss)
    }
}

/// 20 bytes (an address) as a hashable value without an allocation: the key of the address cache.
private struct AddressBytes: Hashable {
    var first: UInt64
    var second: UInt64
    var last: UInt32

    init(_ bytes: UnsafeRawPointer) {
        first = bytes.loadUnaligned(as: UInt64.self)
        second = bytes.loadUnaligned(fromByteOffset: 8, as: UInt64.self)
        last = bytes.loadUnaligned(fromByteOffset: 16, as: UInt32.self)
    }
}

/// Up to 16 bytes as a hashable value without an allocation: the key of the short-string cache.
private struct ShortBytes: Hashable {
    var low: UInt64 = 0
    var high: UInt64 = 0
    var count: Int

    init(_ bytes: ArraySlice<UInt8>) {
        count = bytes.count
        for (offset, byte) in bytes.enumerated() {
            if offset < 8 {
                low |= UInt64(byte) << (8 * UInt64(offset))
            } else {
                high |= UInt64(byte) << (8 * UInt64(offset - 8))
            }
        }
    }
}

/// Values by the exact bytes that encode them (at most `limit` of them: past that, values are decoded each time).
private struct Interned<Value> {
    private var buckets: [UInt64: [(key: [UInt8], value: Value)]] = [:]
    private var count = 0
    static var limit: Int { 1 << 16 }

    /// FNV-1a over `bytes[range]`.
    static func hash(_ bytes: [UInt8], _ range: Range<Int>) -> UInt64 {
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325
        for index in range {
            hash = (hash ^ UInt64(bytes[index])) &* 0x0000_0100_0000_01B3
        }
        return hash
    }

    func find(_ bytes: [UInt8], _ range: Range<Int>, hash: UInt64) -> Value? {
        buckets[hash]?.first { $0.key.elementsEqual(bytes[range]) }?.value
    }

    mutating func insert(_ key: [UInt8], _ value: Value, hash: UInt64) {
        guard count < Self.limit else { return }
        buckets[hash, default: []].append((key, value))
        count += 1
    }
}

private struct SnapshotReader {
    /// The bytes at hand; `index` is the next to read. More come from `next` as they are needed.
    var bytes: [UInt8]
    var index: Int
    private let next: (() -> [UInt8]?)?
    private var ended: Bool
    /// Addresses repeat (participants, allocations): their EIP-55 form is computed once.
    var addresses: [AddressBytes: Address] = [:]
    /// Amounts repeat too; those of up to 16 digits are parsed once.
    var amounts: [ShortBytes: Amount] = [:]
    /// Short strings repeat (asset symbols, applications, protocols): each is built once.
    var strings: [ShortBytes: String] = [:]
    /// Amount maps (totals, funding, withdrawals, committed loss) and allocation lists repeat across sessions (the
    /// same stakes, the same splits): each distinct encoding is decoded once and its value shared (copy-on-write),
    /// which saves an allocation per map per session, in time and in the ledger's memory.
    var amountMaps = Interned<[ExactString: Amount]>()
    var allocationLists = Interned<[Allocation]>()

    init(bytes: [UInt8], index: Int) {
        self.bytes = bytes
        self.index = index
        self.next = nil
        self.ended = true
    }

    init(next: @escaping () -> [UInt8]?) {
        self.bytes = []
        self.index = 0
        self.next = next
        self.ended = false
    }

    /// Whether `count` bytes are at hand from `index`, taking more chunks if needed (the bytes read are dropped).
    @inline(__always)
    mutating func ensure(_ count: Int) -> Bool {
        bytes.count - index >= count || refill(count)
    }

    private mutating func refill(_ count: Int) -> Bool {
        while bytes.count - index < count {
            guard !ended, let next, let chunk = next() else {
                ended = true
                return false
            }
            if index > 0 {
                bytes.removeFirst(index)
                index = 0
            }
            bytes.append(contentsOf: chunk)
        }
        return true
    }

    mutating func uint() -> UInt64? {
        _ = ensure(10)  // the longest LEB128 of a UInt64 (fewer at the end)
        var value: UInt64 = 0
        var shift: UInt64 = 0
        while index < bytes.count, shift < 64 {
            let byte = bytes[index]
            index += 1
            value |= UInt64(byte & 0x7F) << shift
            if byte & 0x80 == 0 { return value }
            shift += 7
        }
        return nil
    }

    mutating func count(limit: Int = 1 << 24) -> Int? {
        guard let value = uint(), value <= UInt64(limit) else { return nil }
        return Int(value)
    }

    mutating func string() -> String? {
        guard let length = count(), ensure(length) else { return nil }
        let slice = bytes[index..<(index + length)]
        index += length
        let key = length <= 16 ? ShortBytes(slice) : nil
        if let key, let known = strings[key] { return known }
        // No re-validation: a snapshot is used only when the log vouches for its hash, so these are the bytes
        // custodian wrote from its own Strings (and a malformed sequence would only become U+FFFD).
        let text = String(decoding: slice, as: UTF8.self)
        if let key { strings[key] = text }
        return text
    }

    mutating func optionalString() -> String?? {
        guard let flag = uint() else { return nil }
        if flag == 0 { return .some(nil) }
        guard let text = string() else { return nil }
        return .some(text)
    }

    mutating func amount() -> Amount? {
        guard let length = count(), ensure(length) else { return nil }
        let slice = bytes[index..<(index + length)]
        index += length
        let key = length <= 16 ? ShortBytes(slice) : nil
        if let key, let known = amounts[key] { return known }
        guard let parsed = Amount(String(decoding: slice, as: UTF8.self)) else { return nil }
        if let key { amounts[key] = parsed }
        return parsed
    }

    mutating func address() -> Address? {
        guard ensure(20) else { return nil }
        let start = index
        index += 20
        guard let key = bytes.withUnsafeBytes({ raw in raw.baseAddress.map { AddressBytes($0 + start) } }) else {
            return nil
        }
        if let known = addresses[key] { return known }
        guard let parsed = Address(bytes: Array(bytes[start..<(start + 20)])) else { return nil }
        addresses[key] = parsed
        return parsed
    }

    /// The end of the amount map or allocation list at `index` if it lies wholly in the bytes at hand (nil
    /// otherwise, or if it is malformed: the full decode then reads it, or refuses it).
    private func skim(allocations: Bool) -> Int? {
        var cursor = index
        func length() -> Int? {
            var value = 0
            var shift = 0
            while cursor < bytes.count, shift < 28 {
                let byte = bytes[cursor]
                cursor += 1
                value |= Int(byte & 0x7F) << shift
                if byte & 0x80 == 0 { return value }
                shift += 7
            }
            return nil
        }
        func skipString() -> Bool {
            guard let count = length(), bytes.count - cursor >= count else { return false }
            cursor += count
            return true
        }
        guard let entries = length(), entries <= 64 else { return nil }
        for _ in 0..<entries {
            if allocations {
                guard bytes.count - cursor >= 20 else { return nil }
                cursor += 20
            }
            guard skipString(), skipString() else { return nil }
        }
        return cursor
    }

    /// A value decoded by `decode`, or the one an identical encoding decoded before.
    private mutating func interned<Value>(
        _ table: WritableKeyPath<SnapshotReader, Interned<Value>>, allocations: Bool,
        _ decode: (inout SnapshotReader) -> Value?
    ) -> Value? {
        guard let end = skim(allocations: allocations) else { return decode(&self) }
        let hash = Interned<Value>.hash(bytes, index..<end)
        if let known = self[keyPath: table].find(bytes, index..<end, hash: hash) {
            index = end
            return known
        }
        let key = Array(bytes[index..<end])
        guard let value = decode(&self) else { return nil }
        self[keyPath: table].insert(key, value, hash: hash)
        return value
    }

    /// A home channel's entry (snapshot v5), or nil.
    mutating func channel() -> ChannelEntry? {
        guard let id = string(), let user = address(), let asset = string(), let decimals = uint(), decimals <= 77,
            let epoch = uint(), let version = uint(), let token = address(), let chainID = uint(),
            let userBalance = signedAmount(), let userNetFlow = signedAmount(), let nodeBalance = signedAmount(),
            let nodeNetFlow = signedAmount(), let lastSignedText = optionalString(), let flags = uint(), flags < 8,
            let halted = optionalString(), let nodeBaseText = optionalString(), let coSignedText = optionalString()
        else { return nil }
        var lastSigned: (version: UInt64, hash: [UInt8])?
        if let text = lastSignedText {
            let parts = text.split(separator: ":", omittingEmptySubsequences: false)
            guard parts.count == 2, let signedVersion = UInt64(parts[0]), let hash = Hex.decode(parts[1]),
                hash.count == 32
            else { return nil }
            lastSigned = (signedVersion, hash)
        }
        var nodeBaseHash: [UInt8]?
        if let text = nodeBaseText {
            guard let hash = Hex.decode(text), hash.count == 32 else { return nil }
            nodeBaseHash = hash
        }
        let copy = ChannelCopy(
            channelID: id, user: user, asset: asset, decimals: UInt8(decimals), epoch: epoch, version: version,
            ledger: ChannelStateWire.HomeLedger(
                token: token, chainID: chainID, userBalance: userBalance, userNetFlow: userNetFlow,
                nodeBalance: nodeBalance, nodeNetFlow: nodeNetFlow))
        var entry = ChannelEntry(
            copy: copy, lastSigned: lastSigned, nodeIssuedBase: flags & 1 != 0, coSigned: flags & 2 != 0,
            finalized: flags & 4 != 0, halted: halted)
        entry.nodeBaseHash = nodeBaseHash
        if let text = coSignedText {
            guard let message = Hex.decode(text), message.count == 640 else { return nil }
            entry.coSignedMessage = message
        }
        return entry
    }

    /// An amount with an optional sign (a net flow).
    mutating func signedAmount() -> Amount? {
        guard let text = string() else { return nil }
        return Amount(signed: text)
    }

    mutating func allocationList() -> [Allocation]? {
        interned(\.allocationLists, allocations: true) { $0.decodeAllocationList() }
    }

    mutating func decodeAllocationList() -> [Allocation]? {
        guard let count = count() else { return nil }
        var result: [Allocation] = []
        result.reserveCapacity(count)
        for _ in 0..<count {
            guard let participant = address(), let asset = string(), let amount = amount() else { return nil }
            result.append(Allocation(participant: participant, asset: ExactString(asset), amount: amount))
        }
        return result
    }

    mutating func amountMap() -> [ExactString: Amount]? {
        interned(\.amountMaps, allocations: false) { $0.decodeAmountMap() }
    }

    mutating func decodeAmountMap() -> [ExactString: Amount]? {
        guard let count = count() else { return nil }
        var result: [ExactString: Amount] = [:]
        result.reserveCapacity(count)
        for _ in 0..<count {
            guard let asset = string(), let value = amount() else { return nil }
            result[ExactString(asset)] = value
        }
        return result
    }

    /// One session's record; `withProtocol` false reads the v3 layout (a v0 session, no protocol field).
    mutating func record(withProtocol: Bool = true) -> SessionRecord? {
        guard let id = string(), let application = optionalString(), let protocolName = string(),
            let participantCount = count(limit: 4096)
        else { return nil }
        var participants: [Address] = []
        for _ in 0..<participantCount {
            guard let participant = address() else { return nil }
            participants.append(participant)
        }
        guard let weightCount = count(limit: 4096) else { return nil }
        var weights: [Int64] = []
        for _ in 0..<weightCount {
            guard let weight = uint() else { return nil }
            weights.append(Int64(bitPattern: weight))
        }
        guard let quorum = uint(), let challenge = uint(), let nonce = uint() else { return nil }
        var wire = WireProtocol.nitroRPCv0
        if withProtocol {
            guard let code = uint(), code <= 1 else { return nil }
            if code == 1 { wire = .nitroliteV1 }
        }
        guard let status = uint(), status <= 1,
            let version = uint(), let allocations = allocationList(), let sessionData = optionalString(),
            let totals = amountMap(), let funding = amountMap(), let withdrawn = amountMap(),
            let creation = allocationList(), let creationSessionData = optionalString(),
            let committedLoss = amountMap()
        else { return nil }
        var definition = AppDefinition(
            application: application, protocolName: protocolName, participants: participants, weights: weights,
            quorum: quorum, challenge: challenge, nonce: nonce)
        definition.wire = wire
        return SessionRecord(
            appSessionID: id, definition: definition, status: status == 0 ? .open : .closed, version: version,
            allocations: allocations, sessionData: sessionData, totals: totals, funding: funding, withdrawn: withdrawn,
            creation: creation, creationSessionData: creationSessionData, committedLoss: committedLoss)
    }
}
