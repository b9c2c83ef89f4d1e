import CustodianCore
import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Why a call to the agent failed.
public enum ClientError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The socket could not be reached (no agent, wrong path, permission).
    case unreachable(String)
    /// The agent answered with a JSON-RPC error: code, message, and the reason code when a decision was made.
    case refused(code: Int, message: String, reason: String?, auditSeq: UInt64?)
    /// The agent's answer was not a JSON-RPC response, or the connection broke mid-answer.
    case protocolError(String)

    public var description: String {
        switch self {
        case .unreachable(let why): "cannot reach the agent: \(why)"
        case .refused(let code, let message, let reason, _):
            "refused (\(code)\(reason.map { ", \($0)" } ?? "")): \(message)"
        case .protocolError(let why): "unexpected answer from the agent: \(why)"
        }
    }
}

/// The result of `sign`.
public struct SignResult: Sendable, Equatable {
    /// `0x` + 130 hex digits.
    public var signature: String
    public var address: String
    /// v0: Keccak-256 of the `req` bytes; v1: the ABI hash of the state that was checked and signed.
    public var requestHash: String
    /// What to send on the WebSocket: v0's envelope, or v1's frame with `quorumSig` appended to `quorum_sigs`.
    public var message: String
    public var auditSeq: UInt64
    /// v1 only: the quorum signature (`0xa1` ‖ ``signature``) to pass to the SDK's `quorumSigs`.
    public var quorumSig: String?
    /// v1 channel states only: the state's `user_sig` (`0x00` ‖ ``signature``; in a deposit frame ``signature`` is
    /// the channel signature and ``quorumSig`` carries the app update's).
    public var userSig: String?
}

/// A client of the agent's Unix socket (CONTRACT §3): one connection, one request per line, in order.
public final class CustodianClient {
    public let socketPath: String
    private var fd: Int32 = -1
    private var nextID: UInt64 = 1
    private var pending: [UInt8] = []
    private let timeoutSeconds: Int

    public init(socketPath: String, timeoutSeconds: Int = 30) {
        self.socketPath = socketPath
        self.timeoutSeconds = timeoutSeconds
    }

    deinit { if fd >= 0 { close(fd) } }

    /// Asks the agent to sign `message` (a v0 NitroRPC message or a v1 frame, as bytes).
    public func sign(message: [UInt8]) throws(ClientError) -> SignResult {
        let result = try call(method: "sign", params: Self.messageParams(message))
        guard let members = result.value.members, let signature = members.member("signature")?.value.string,
            let address = members.member("address")?.value.string,
            let requestHash = members.member("request_hash")?.value.string,
            let envelope = members.member("message")?.value.string,
            let seq = members.member("audit_seq")?.value.numberToken.flatMap({ UInt64($0) })
        else { throw .protocolError("a sign result without signature, address, request_hash, message or audit_seq") }
        return SignResult(
            signature: signature, address: address, requestHash: requestHash, message: envelope, auditSeq: seq,
            quorumSig: members.member("quorum_sig")?.value.string, userSig: members.member("user_sig")?.value.string)
    }

    /// Hands the agent nitronode's answer to `channels.v1.get_latest_state` (the frame's text): the agent takes its
    /// own last state co-signed, or a state the node issued (a receive, a release) as its new base when PROTOCOL-v1-
    /// channels §7.3 allows. Returns the channel and the state's version; a refusal is ``ClientError/refused``.
    public func observe(message: [UInt8]) throws(ClientError) -> (channel: String, version: UInt64) {
        let result = try call(method: "observe", params: Self.messageParams(message))
        guard let members = result.value.members, let channel = members.member("channel")?.value.string,
            let version = members.member("version")?.value.numberToken.flatMap({ UInt64($0) })
        else { throw .protocolError("an observe result without channel or version") }
        return (channel, version)
    }

    /// An operator's challenge of a channel: the agent's signature (`0x00` ‖ 65 bytes) over the 672-byte challenge of
    /// its latest state the node co-signed, and that state's version (the agent's own user or root only).
    public func challengeChannel(_ channel: String) throws(ClientError) -> (version: UInt64, challengerSig: String) {
        var params = JSONWriter()
        params.beginObject()
        params.field("channel", channel)
        params.endObject()
        let result = try call(method: "channel_challenge", params: params.bytes)
        guard let members = result.value.members,
            let version = members.member("version")?.value.numberToken.flatMap({ UInt64($0) }),
            let signature = members.member("challenger_sig")?.value.string
        else { throw .protocolError("a challenge result without version or challenger_sig") }
        return (version, signature)
    }

    /// An operator's resume of a channel whose signing stopped (the agent's own user or root only).
    public func resumeChannel(_ channel: String) throws(ClientError) {
        var params = JSONWriter()
        params.beginObject()
        params.field("channel", channel)
        params.endObject()
        _ = try call(method: "channel_resume", params: params.bytes)
    }

    /// `{"message": "<message>"}`: the bytes go in as they are; an invalid UTF-8 message is refused by the agent,
    /// never repaired here.
    static func messageParams(_ message: [UInt8]) -> [UInt8] {
        var params = JSONWriter()
        params.beginObject()
        params.key("message")
        var quoted: [UInt8] = []
        JSONWriter.appendBytes(message, to: &quoted)
        params.raw(quoted)
        params.endObject()
        return params.bytes
    }

    /// The agent's address.
    public func address() throws(ClientError) -> String {
        guard let address = try call(method: "address", params: nil).value.members?.member("address")?.value.string
        else { throw .protocolError("no address in the result") }
        return address
    }

    /// The `status` result as its JSON text.
    public func statusJSON() throws(ClientError) -> [UInt8] {
        let (node, line) = try callRaw(method: "status", params: nil)
        return Array(line[node.span])
    }

    /// The agent's metrics in the Prometheus text format (the `metrics` method's `text`).
    public func metricsText() throws(ClientError) -> String {
        let result = try call(method: "metrics", params: nil)
        guard let text = result.value.members?.member("text")?.value.string else {
            throw ClientError.protocolError("the metrics result has no text")
        }
        return text
    }

    /// Asks the agent to seal its active audit log segment and begin the next; returns the sealed file's name.
    public func rotate() throws(ClientError) -> String {
        let result = try call(method: "rotate", params: nil)
        guard let name = result.value.members?.member("sealed")?.value.string else {
            throw ClientError.protocolError("the rotate result names no sealed segment")
        }
        return name
    }

    /// Calls `method` and returns the parsed `result`.
    public func call(method: String, params: [UInt8]?) throws(ClientError) -> StrictJSON.Node {
        try callRaw(method: method, params: params).0
    }

    private func callRaw(method: String, params: [UInt8]?) throws(ClientError) -> (StrictJSON.Node, [UInt8]) {
        try connectIfNeeded()
        let id = nextID
        nextID += 1
        var request = JSONWriter()
        request.beginObject()
        request.field("jsonrpc", "2.0")
        request.field("id", id)
        request.field("method", method)
        if let params {
            request.key("params")
            request.raw(params)
        }
        request.endObject()
        let sendError: ClientError?
        do {
            try send(request.bytes + [0x0A])
            sendError = nil
        } catch {
            sendError = error
        }
        // An agent that refuses the caller answers -32004 and closes at once, possibly before the request is
        // written: its answer is still there to read.
        let line: [UInt8]
        do { line = try readLine() } catch { throw sendError ?? error }
        guard case .success(let root) = StrictJSON.parse(line), let members = root.value.members else {
            throw .protocolError("not a JSON object")
        }
        if let error = members.member("error")?.value.members {
            let code = error.member("code")?.value.numberToken.flatMap { Int($0) } ?? 0
            let message = error.member("message")?.value.string ?? ""
            let data = error.member("data")?.value.members
            throw .refused(
                code: code, message: message, reason: data?.member("reason")?.value.string,
                auditSeq: data?.member("audit_seq")?.value.numberToken.flatMap { UInt64($0) })
        }
        guard let result = members.member("result") else { throw .protocolError("neither result nor error") }
        return (result, line)
    }

    private func connectIfNeeded() throws(ClientError) {
        guard fd < 0 else { return }
        let socketFD = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard socketFD >= 0 else { throw .unreachable("socket(): \(String(cString: strerror(errno)))") }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let path = Array(socketPath.utf8)
        guard path.count < MemoryLayout.size(ofValue: address.sun_path) else {
            close(socketFD)
            throw .unreachable("socket path too long: \(socketPath)")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (index, byte) in path.enumerated() { raw[index] = byte }
        }
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(socketFD, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard result == 0 else {
            let why = String(cString: strerror(errno))
            close(socketFD)
            throw .unreachable("\(socketPath): \(why)")
        }
        var timeout = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        _ = setsockopt(socketFD, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        _ = setsockopt(socketFD, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        fd = socketFD
    }

    private func send(_ bytes: [UInt8]) throws(ClientError) {
        var written = 0
        while written < bytes.count {
            let count = bytes.withUnsafeBytes { buffer -> Int in
                guard let base = buffer.baseAddress else { return 0 }
                return Glibc.send(fd, base + written, bytes.count - written, Int32(MSG_NOSIGNAL))
            }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { throw .unreachable("write: \(String(cString: strerror(errno)))") }
            written += count
        }
    }

    private func readLine() throws(ClientError) -> [UInt8] {
        var chunk = [UInt8](repeating: 0, count: 65_536)
        while true {
            if let newline = pending.firstIndex(of: 0x0A) {
                let line = Array(pending[..<newline])
                pending.removeSubrange(...newline)
                return line
            }
            let count = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if count < 0 && errno == EINTR { continue }
            if count < 0 { throw .protocolError("read: \(String(cString: strerror(errno)))") }
            if count == 0 { throw .protocolError("the agent closed the connection") }
            pending.append(contentsOf: chunk[0..<count])
        }
    }
}

extension CustodianClient {
    /// Signs `message` without blocking the caller's task: the socket I/O runs on its own thread.
    public static func sign(message: [UInt8], socketPath: String, timeoutSeconds: Int = 30) async throws -> SignResult {
        try await offload {
            try CustodianClient(socketPath: socketPath, timeoutSeconds: timeoutSeconds).sign(message: message)
        }
    }

    /// The agent's status as JSON text, without blocking the caller's task.
    public static func status(socketPath: String, timeoutSeconds: Int = 30) async throws -> String {
        try await offload {
            String(
                decoding: try CustodianClient(socketPath: socketPath, timeoutSeconds: timeoutSeconds).statusJSON(),
                as: UTF8.self)
        }
    }

    private static func offload<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            let thread = Thread { continuation.resume(with: Result { try work() }) }
            thread.start()
        }
    }
}
