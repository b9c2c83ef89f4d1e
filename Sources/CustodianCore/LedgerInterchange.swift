/// The ledger interchange format (`custodian ledger export` / `ledger import`), in the spirit of EIP-3076's
/// slashing-protection interchange: every session this key signed for, with the state it last signed and what the
/// policy needs to judge the next one (funding, withdrawals, committed loss, the create's content), and the loss
/// events that still count in a velocity window. One JSON object:
///
/// ```
/// {"format":"custodian-ledger-interchange","version":1,"agent":"0xFdEc…C638","exported_at":"2026-11-30T16:00:00.000Z",
///  "source":{"audit_seq":1042,"audit_head":"9f2c…"},
///  "sessions":[{"app_session_id":"0x…","protocol":"nitrorpc/v0","definition":{…},"status":"closed","version":2,
///    "allocations":[{"participant":"0x…","asset":"usdc","amount":"75.5"},…],"session_data":null,
///    "creation":{"allocations":[…],"session_data":null},"totals":{"usdc":"150"},"funding":{"usdc":"100"},
///    "withdrawn":{},"committed_loss":{"usdc":"24.5"},
///    "losses":[{"time_ms":1733000060000,"asset":"usdc","amount":"24.5","version":2}]}]}
/// ```
///
/// `definition` is the protocol's own: v0 `{application?, protocol, participants, weights, quorum, challenge,
/// nonce}`, v1 `{application_id, participants: [{wallet_address, signature_weight}], quorum, nonce}` (nonce a decimal
/// string, as on the wire). Amounts are decimal strings, addresses EIP-55, integers JSON integers. Reading is as
/// strict as the request readers: unknown or repeated keys, a wrong shape, and a session whose id is not its
/// definition's are refused.
public enum LedgerInterchange {
    public static let format = "custodian-ledger-interchange"
    public static let version: UInt64 = 1

    /// One session of an interchange file, with its loss events.
    public struct Entry: Sendable, Equatable {
        public var session: SessionRecord
        public var losses: [LossEvent]
    }

    /// What an interchange file holds.
    public struct Document: Sendable {
        public var agent: Address
        public var exportedAt: String
        public var auditSeq: UInt64
        public var auditHead: String
        public var entries: [Entry]
    }

    /// The interchange text of `state`, the ledger of `agent` as of audit record `seq` (line hash `head`).
    public static func encode(
        _ state: LedgerState, agent: Address, exportedAt: String, auditSeq: UInt64, auditHead: String
    ) -> [UInt8] {
        var lossesBySession: [String: [LossEvent]] = [:]
        for loss in state.losses { lossesBySession[loss.sessionID, default: []].append(loss) }
        var writer = JSONWriter()
        writer.beginObject()
        writer.field("format", format)
        writer.field("version", version)
        writer.field("agent", agent.checksummed)
        writer.field("exported_at", exportedAt)
        writer.key("source")
        writer.beginObject()
        writer.field("audit_seq", auditSeq)
        writer.field("audit_head", auditHead)
        writer.endObject()
        writer.key("sessions")
        writer.beginArray()
        for id in state.sessions.keys.sorted() {
            guard let session = state.sessions[id] else { continue }
            write(session, losses: lossesBySession[id] ?? [], &writer)
        }
        writer.endArray()
        writer.endObject()
        writer.newline()
        return writer.bytes
    }

    private static func write(_ session: SessionRecord, losses: [LossEvent], _ writer: inout JSONWriter) {
        writer.beginObject()
        writer.field("app_session_id", session.appSessionID)
        writer.field("protocol", session.definition.wire.rawValue)
        writer.key("definition")
        writeDefinition(session.definition, &writer)
        writer.field("status", session.status.rawValue)
        writer.field("version", session.version)
        writer.key("allocations")
        writeAllocations(session.allocations, &writer)
        writeOptional("session_data", session.sessionData, &writer)
        writer.key("creation")
        writer.beginObject()
        writer.key("allocations")
        writeAllocations(session.creation, &writer)
        writeOptional("session_data", session.creationSessionData, &writer)
        writer.endObject()
        writeAmounts("totals", session.totals, &writer)
        writeAmounts("funding", session.funding, &writer)
        writeAmounts("withdrawn", session.withdrawn, &writer)
        writeAmounts("committed_loss", session.committedLoss, &writer)
        writeLosses(losses, &writer)
        writer.endObject()
    }

    /// `"losses": [{time_ms, asset, amount, version}, …]`, as the interchange format and import records write them.
    public static func writeLosses(_ losses: [LossEvent], _ writer: inout JSONWriter) {
        writer.key("losses")
        writer.beginArray()
        for loss in losses {
            writer.beginObject()
            writer.field("time_ms", loss.timeMs)
            writer.field("asset", loss.asset.value)
            writer.field("amount", "\(loss.amount)")
            writer.field("version", loss.version)
            writer.endObject()
        }
        writer.endArray()
    }

    private static func writeDefinition(_ definition: AppDefinition, _ writer: inout JSONWriter) {
        writer.beginObject()
        switch definition.wire {
        case .nitroRPCv0:
            if let application = definition.application { writer.field("application", application) }
            writer.field("protocol", definition.protocolName)
            writer.key("participants")
            writer.beginArray()
            for participant in definition.participants { writer.string(participant.checksummed) }
            writer.endArray()
            writer.key("weights")
            writer.beginArray()
            for weight in definition.weights { writer.number(weight) }
            writer.endArray()
            writer.field("quorum", definition.quorum)
            writer.field("challenge", definition.challenge)
            writer.field("nonce", definition.nonce)
        case .nitroliteV1:
            writer.field("application_id", definition.application ?? "")
            writer.key("participants")
            writer.beginArray()
            for (participant, weight) in zip(definition.participants, definition.weights) {
                writer.beginObject()
                writer.field("wallet_address", participant.checksummed)
                writer.field("signature_weight", weight)
                writer.endObject()
            }
            writer.endArray()
            writer.field("quorum", definition.quorum)
            writer.field("nonce", String(definition.nonce))
        }
        writer.endObject()
    }

    /// `[{participant, asset, amount}, …]`.
    public static func writeAllocations(_ allocations: [Allocation], _ writer: inout JSONWriter) {
        writer.beginArray()
        for allocation in allocations {
            writer.beginObject()
            writer.field("participant", allocation.participant.checksummed)
            writer.field("asset", allocation.asset.value)
            writer.field("amount", "\(allocation.amount)")
            writer.endObject()
        }
        writer.endArray()
    }

    private static func writeOptional(_ key: String, _ value: String?, _ writer: inout JSONWriter) {
        writer.key(key)
        if let value { writer.string(value) } else { writer.null() }
    }

    private static func writeAmounts(_ key: String, _ amounts: [ExactString: Amount], _ writer: inout JSONWriter) {
        writer.key(key)
        writer.beginObject()
        for (asset, amount) in amounts.sorted(by: { $0.key < $1.key }) { writer.field(asset.value, "\(amount)") }
        writer.endObject()
    }
}

/// Why an interchange file was refused: the path of what is wrong, and why.
public struct InterchangeError: Error, Equatable, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

extension LedgerInterchange {
    /// Reads an interchange file strictly (see the type's documentation); every session's id must be the one its
    /// definition gives, and its loss events must name it.
    public static func decode(_ bytes: [UInt8]) -> Result<Document, InterchangeError> {
        do {
            let root: StrictJSON.Node
            switch StrictJSON.parse(bytes) {
            case .success(let node): root = node
            case .failure(.malformed(let why)): throw InterchangeError("not JSON: \(why)")
            case .failure(.duplicateKey(let key)): throw InterchangeError("the key \"\(key)\" appears twice")
            }
            let top = try Fields(root, "the file", ["format", "version", "agent", "exported_at", "source", "sessions"])
            guard try top.string("format") == format else {
                throw InterchangeError("format is not \"\(format)\"")
            }
            guard try top.integer("version") == version else {
                throw InterchangeError("version is not \(version): this build reads version \(version)")
            }
            let agent = try top.address("agent")
            let exportedAt = try top.string("exported_at")
            let source = try Fields(try top.node("source"), "source", ["audit_seq", "audit_head"])
            var entries: [Entry] = []
            var seen = Set<String>()
            for (index, node) in try top.array("sessions").enumerated() {
                let entry = try session(node, "sessions[\(index)]")
                guard seen.insert(entry.session.appSessionID).inserted else {
                    throw InterchangeError("sessions[\(index)]: \(entry.session.appSessionID) is listed twice")
                }
                entries.append(entry)
            }
            return .success(
                Document(
                    agent: agent, exportedAt: exportedAt, auditSeq: try source.integer("audit_seq"),
                    auditHead: try source.string("audit_head"), entries: entries))
        } catch let error as InterchangeError {
            return .failure(error)
        } catch {
            return .failure(InterchangeError("\(error)"))
        }
    }

    private static func session(_ node: StrictJSON.Node, _ path: String) throws -> Entry {
        let fields = try Fields(
            node, path,
            [
                "app_session_id", "protocol", "definition", "status", "version", "allocations", "session_data",
                "creation", "totals", "funding", "withdrawn", "committed_loss", "losses",
            ])
        let id = try fields.string("app_session_id")
        guard let wire = WireProtocol(rawValue: try fields.string("protocol")) else {
            throw InterchangeError("\(path): protocol is not nitrorpc/v0 or nitrolite/v1")
        }
        let definition = try self.definition(try fields.node("definition"), "\(path).definition", wire: wire)
        guard definition.appSessionID == id else {
            throw InterchangeError("\(path): app_session_id \(id) is not its definition's (\(definition.appSessionID))")
        }
        guard let status = SessionRecord.Status(rawValue: try fields.string("status")) else {
            throw InterchangeError("\(path): status is not open or closed")
        }
        let creation = try Fields(try fields.node("creation"), "\(path).creation", ["allocations", "session_data"])
        var session = SessionRecord(
            appSessionID: id, definition: definition, status: status, version: try fields.integer("version"),
            allocations: try allocations(try fields.node("allocations"), "\(path).allocations"),
            sessionData: try fields.optionalString("session_data"),
            totals: try amounts(try fields.node("totals"), "\(path).totals"),
            funding: try amounts(try fields.node("funding"), "\(path).funding"),
            withdrawn: try amounts(try fields.node("withdrawn"), "\(path).withdrawn"),
            creation: try allocations(try creation.node("allocations"), "\(path).creation.allocations"),
            creationSessionData: try creation.optionalString("session_data"))
        session.committedLoss = try amounts(try fields.node("committed_loss"), "\(path).committed_loss")
        var losses: [LossEvent] = []
        for (index, node) in try fields.array("losses").enumerated() {
            let loss = try Fields(node, "\(path).losses[\(index)]", ["time_ms", "asset", "amount", "version"])
            losses.append(
                LossEvent(
                    timeMs: try loss.integer("time_ms"), asset: ExactString(try loss.string("asset")),
                    amount: try loss.amount("amount"), sessionID: id, version: try loss.integer("version")))
        }
        return Entry(session: session, losses: losses)
    }

    private static func definition(_ node: StrictJSON.Node, _ path: String, wire: WireProtocol) throws
        -> AppDefinition
    {
        switch wire {
        case .nitroRPCv0:
            let fields = try Fields(
                node, path, ["application", "protocol", "participants", "weights", "quorum", "challenge", "nonce"],
                optional: ["application"])
            let participants = try fields.array("participants").enumerated().map { index, node in
                guard let text = node.value.string, let address = Address(eip55: text) else {
                    throw InterchangeError("\(path).participants[\(index)] is not an EIP-55 address")
                }
                return address
            }
            let weights = try fields.array("weights").enumerated().map { index, node in
                guard let weight = NitroRPCv0Reader.signed(node.value) else {
                    throw InterchangeError("\(path).weights[\(index)] is not an integer")
                }
                return weight
            }
            return AppDefinition(
                application: try fields.has("application") ? fields.string("application") : nil,
                protocolName: try fields.string("protocol"), participants: participants, weights: weights,
                quorum: try fields.integer("quorum"), challenge: try fields.integer("challenge"),
                nonce: try fields.integer("nonce"))
        case .nitroliteV1:
            let fields = try Fields(node, path, ["application_id", "participants", "quorum", "nonce"])
            var participants: [Address] = []
            var weights: [Int64] = []
            for (index, node) in try fields.array("participants").enumerated() {
                let participant = try Fields(
                    node, "\(path).participants[\(index)]", ["wallet_address", "signature_weight"])
                participants.append(try participant.address("wallet_address"))
                let weight = try participant.integer("signature_weight")
                guard weight <= 255 else {
                    throw InterchangeError("\(path).participants[\(index)].signature_weight is not a uint8")
                }
                weights.append(Int64(weight))
            }
            guard let nonce = NitroliteV1Reader.decimal(try fields.string("nonce")) else {
                throw InterchangeError("\(path).nonce is not a decimal string of a uint64")
            }
            var definition = AppDefinition(
                application: try fields.string("application_id"), protocolName: "", participants: participants,
                weights: weights, quorum: try fields.integer("quorum"), challenge: 0, nonce: nonce)
            definition.wire = .nitroliteV1
            return definition
        }
    }

    private static func allocations(_ node: StrictJSON.Node, _ path: String) throws -> [Allocation] {
        guard let elements = node.value.elements else { throw InterchangeError("\(path) is not an array") }
        return try elements.enumerated().map { index, node in
            let fields = try Fields(node, "\(path)[\(index)]", ["participant", "asset", "amount"])
            return Allocation(
                participant: try fields.address("participant"), asset: ExactString(try fields.string("asset")),
                amount: try fields.amount("amount"))
        }
    }

    private static func amounts(_ node: StrictJSON.Node, _ path: String) throws -> [ExactString: Amount] {
        guard let members = node.value.members else { throw InterchangeError("\(path) is not an object") }
        var result: [ExactString: Amount] = [:]
        for member in members {
            guard let text = member.node.value.string, let amount = Amount(text) else {
                throw InterchangeError("\(path).\(member.key) is not a decimal string")
            }
            result[ExactString(member.key)] = amount
        }
        return result
    }

    /// An object's members, with exactly the expected keys (`optional` may be absent).
    private struct Fields {
        let members: [StrictJSON.Member]
        let path: String

        init(_ node: StrictJSON.Node, _ path: String, _ keys: [String], optional: Set<String> = []) throws {
            guard let members = node.value.members else { throw InterchangeError("\(path) is not an object") }
            for member in members where !keys.contains(where: { $0.hasSameBytes(as: member.key) }) {
                throw InterchangeError("\(path) has the unknown key \"\(member.key)\"")
            }
            for key in keys where !optional.contains(key) && members.member(key) == nil {
                throw InterchangeError("\(path) lacks \(key)")
            }
            self.members = members
            self.path = path
        }

        func has(_ key: String) -> Bool { members.member(key) != nil }

        func node(_ key: String) throws -> StrictJSON.Node {
            guard let node = members.member(key) else { throw InterchangeError("\(path) lacks \(key)") }
            return node
        }

        func string(_ key: String) throws -> String {
            guard let text = try node(key).value.string else {
                throw InterchangeError("\(path).\(key) is not a string")
            }
            return text
        }

        func optionalString(_ key: String) throws -> String? {
            let value = try node(key).value
            if case .null = value { return nil }
            guard let text = value.string else { throw InterchangeError("\(path).\(key) is not a string or null") }
            return text
        }

        func integer(_ key: String) throws -> UInt64 {
            guard let value = NitroliteV1Reader.unsigned(try node(key).value) else {
                throw InterchangeError("\(path).\(key) is not a non-negative integer")
            }
            return value
        }

        func address(_ key: String) throws -> Address {
            guard let address = Address(eip55: try string(key)) else {
                throw InterchangeError("\(path).\(key) is not an EIP-55 address")
            }
            return address
        }

        func amount(_ key: String) throws -> Amount {
            guard let amount = Amount(try string(key)) else {
                throw InterchangeError("\(path).\(key) is not a decimal string")
            }
            return amount
        }

        func array(_ key: String) throws -> [StrictJSON.Node] {
            guard let elements = try node(key).value.elements else {
                throw InterchangeError("\(path).\(key) is not an array")
            }
            return elements
        }
    }
}
