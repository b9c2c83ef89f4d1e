import CustodianCore

/// JSON-RPC 2.0 error codes of CONTRACT §3.
public enum RPCCode: Int, Sendable {
    case parseError = -32700
    case invalidRequest = -32600
    case methodNotFound = -32601
    case invalidParams = -32602
    case policyDenied = -32001
    case malformedPayload = -32002
    case auditUnavailable = -32003
    case callerNotAllowed = -32004
    case rateLimited = -32005
}

/// One parsed JSON-RPC request line.
struct RPCRequest {
    /// The id's JSON token exactly as sent (echoed back unchanged), or `null`.
    var id: [UInt8]
    var method: String
    var params: [StrictJSON.Member]
}

/// An error reply, ready to send.
struct RPCErrorReply: Error {
    var bytes: [UInt8]
}

/// The JSON-RPC envelope: strict like the payload reader, and never re-encoding the id.
enum RPC {
    static let version = "0.1.0"

    /// Parses a request line, or returns the error reply to send.
    static func parse(_ line: [UInt8]) -> Result<RPCRequest, RPCErrorReply> {
        let root: StrictJSON.Node
        switch StrictJSON.parse(line) {
        case .success(let node): root = node
        case .failure(.malformed(let why)):
            return .failure(RPCErrorReply(bytes: error(id: nil, .parseError, "parse error: \(why)")))
        case .failure(.duplicateKey(let key)):
            return .failure(
                RPCErrorReply(bytes: error(id: nil, .invalidRequest, "invalid request: duplicate key \"\(key)\"")))
        }
        guard let members = root.value.members else {
            return .failure(RPCErrorReply(bytes: error(id: nil, .invalidRequest, "invalid request: not an object")))
        }
        var id: [UInt8] = Array("null".utf8)
        if let idNode = members.member("id") {
            switch idNode.value {
            case .string, .number, .null: id = Array(line[idNode.span])
            default:
                return .failure(
                    RPCErrorReply(
                        bytes: error(id: nil, .invalidRequest, "invalid request: id must be a string or number")))
            }
        }
        for member in members where !["jsonrpc", "id", "method", "params"].contains(member.key) {
            return .failure(
                RPCErrorReply(bytes: error(id: id, .invalidRequest, "invalid request: unknown key \"\(member.key)\"")))
        }
        guard members.member("jsonrpc")?.value.string == "2.0" else {
            return .failure(
                RPCErrorReply(bytes: error(id: id, .invalidRequest, "invalid request: jsonrpc must be \"2.0\"")))
        }
        guard let method = members.member("method")?.value.string else {
            return .failure(
                RPCErrorReply(bytes: error(id: id, .invalidRequest, "invalid request: method must be a string")))
        }
        var params: [StrictJSON.Member] = []
        if let node = members.member("params") {
            guard let object = node.value.members else {
                return .failure(
                    RPCErrorReply(bytes: error(id: id, .invalidParams, "invalid params: params must be an object")))
            }
            params = object
        }
        return .success(RPCRequest(id: id, method: method, params: params))
    }

    /// `{"jsonrpc":"2.0","id":…,"result":…}` + newline; `result` writes the value.
    static func result(id: [UInt8], _ result: (inout JSONWriter) -> Void) -> [UInt8] {
        var writer = JSONWriter(capacity: 512)
        writer.beginObject()
        writer.field("jsonrpc", "2.0")
        writer.key("id")
        writer.raw(id)
        writer.key("result")
        result(&writer)
        writer.endObject()
        writer.newline()
        return writer.bytes
    }

    /// An error reply, with `data.reason` and `data.audit_seq` when a decision was recorded.
    static func error(
        id: [UInt8]?, _ code: RPCCode, _ message: String, reason: String? = nil, auditSeq: UInt64? = nil,
        figures: [Figure] = []
    ) -> [UInt8] {
        var writer = JSONWriter(capacity: 256)
        writer.beginObject()
        writer.field("jsonrpc", "2.0")
        writer.key("id")
        writer.raw(id ?? Array("null".utf8))
        writer.key("error")
        writer.beginObject()
        writer.field("code", code.rawValue)
        writer.field("message", message)
        if reason != nil || auditSeq != nil {
            writer.key("data")
            writer.beginObject()
            if let reason { writer.field("reason", reason) }
            if let auditSeq { writer.field("audit_seq", auditSeq) }
            if !figures.isEmpty {
                writer.key("figures")
                writer.beginObject()
                for figure in figures { writer.field(figure.name, figure.value) }
                writer.endObject()
            }
            writer.endObject()
        }
        writer.endObject()
        writer.endObject()
        writer.newline()
        return writer.bytes
    }

    /// The reply to a `sign` outcome.
    static func reply(id: [UInt8], address: String, _ outcome: SignOutcome) -> [UInt8] {
        switch outcome {
        case .signed(
            let signature, let quorumSig, let envelope, let requestHash, let auditSeq, let userSig, let appHash):
            return result(id: id) { writer in
                writer.beginObject()
                writer.field("signature", signature)
                if let userSig { writer.field("user_sig", userSig) }
                if let quorumSig { writer.field("quorum_sig", quorumSig) }
                writer.field("address", address)
                writer.field("request_hash", requestHash)
                if let appHash { writer.field("app_request_hash", appHash) }
                writer.field("message", utf8: envelope)
                writer.field("audit_seq", auditSeq)
                writer.endObject()
            }
        case .refused(let denial, let auditSeq): return refusal(id: id, denial, auditSeq: auditSeq)
        case .unavailable(let why, let reason): return unavailable(id: id, "nothing signed: \(why)", reason: reason)
        }
    }

    /// A recorded refusal: -32002 for a payload reason, -32001 for a policy one, with the reason and its figures.
    static func refusal(id: [UInt8], _ denial: Denial, auditSeq: UInt64?) -> [UInt8] {
        let code: RPCCode = denial.reason.isPayload ? .malformedPayload : .policyDenied
        let prefix = denial.reason.isPayload ? "malformed payload" : "policy denied"
        return error(
            id: id, code, "\(prefix): \(denial.detail)", reason: denial.reason.rawValue, auditSeq: auditSeq,
            figures: denial.figures)
    }

    /// A decision that could not be recorded (-32003).
    /// The reply to an operator's channel command refused with `denial`: unavailable when nothing could be recorded,
    /// otherwise a refusal of `code`.
    static func operatorRefusal(id: [UInt8], _ denial: Denial, code: RPCCode? = nil) -> [UInt8] {
        if denial.reason == .auditUnavailable || denial.reason == .ledgerUnavailable {
            return unavailable(id: id, denial.detail, reason: denial.reason)
        }
        guard let code else { return refusal(id: id, denial, auditSeq: nil) }
        return error(id: id, code, denial.detail)
    }

    static func unavailable(id: [UInt8], _ why: String, reason: ReasonCode = .auditUnavailable) -> [UInt8] {
        let what = reason == .ledgerUnavailable ? "ledger database unavailable" : "audit log unavailable"
        return error(id: id, .auditUnavailable, "\(what), \(why)", reason: reason.rawValue)
    }

    /// The reply to an `observe` outcome.
    static func observed(id: [UInt8], _ outcome: ObserveOutcome) -> [UInt8] {
        switch outcome {
        case .accepted(let channel, let version, let auditSeq):
            return result(id: id) { writer in
                writer.beginObject()
                writer.field("channel", channel)
                writer.field("version", version)
                writer.field("accepted", true)
                writer.field("audit_seq", auditSeq)
                writer.endObject()
            }
        case .refused(let denial, let auditSeq): return refusal(id: id, denial, auditSeq: auditSeq)
        case .unavailable(let denial):
            return unavailable(id: id, "nothing recorded: \(denial.detail)", reason: denial.reason)
        }
    }

    /// The `status` result.
    static func status(id: [UInt8], _ snapshot: StatusSnapshot, nowMs: UInt64) -> [UInt8] {
        result(id: id) { writer in
            writer.beginObject()
            writer.field("address", snapshot.address)
            writer.field("version", version)
            writer.field("policy_hash", snapshot.policyHash)
            writer.key("audit")
            writer.beginObject()
            writer.field("seq", snapshot.auditSeq)
            writer.field("head", snapshot.auditHead)
            writer.endObject()
            writer.key("sessions")
            writer.beginObject()
            writer.field("open", snapshot.openSessions)
            writer.field("closed", snapshot.closedSessions)
            writer.endObject()
            writer.field("uptime_s", nowMs >= snapshot.startedAtMs ? (nowMs - snapshot.startedAtMs) / 1000 : 0)
            writer.endObject()
        }
    }
}
