import CustodianCore
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Settings of the socket server.
public struct ServerSettings: Sendable {
    public var socketPath: String
    /// Allowed caller uids (the agent's own uid is always allowed when both lists are empty).
    public var allowUIDs: [UInt32]
    public var allowGIDs: [UInt32]
    public var maxConnections: Int
    public var idleTimeoutSeconds: Int64
    public var maxLineBytes: Int

    public init(
        socketPath: String, allowUIDs: [UInt32] = [], allowGIDs: [UInt32] = [], maxConnections: Int = 1024,
        idleTimeoutSeconds: Int64 = 60, maxLineBytes: Int = 65_536
    ) {
        self.socketPath = socketPath
        self.allowUIDs = allowUIDs
        self.allowGIDs = allowGIDs
        self.maxConnections = maxConnections
        self.idleTimeoutSeconds = idleTimeoutSeconds
        self.maxLineBytes = maxLineBytes
    }

    /// Whether a caller with these credentials may talk to the agent.
    func allows(_ peer: Peer) -> Bool {
        if allowUIDs.isEmpty && allowGIDs.isEmpty { return peer.uid == getuid() }
        return allowUIDs.contains(peer.uid) || allowGIDs.contains(peer.gid)
    }
}

/// Why the server could not start.
public struct ServerError: Error, CustomStringConvertible, Sendable {
    public var description: String
}

/// The Unix-socket JSON-RPC server (CONTRACT §3).
public final class Server: Sendable {
    private let group: MultiThreadedEventLoopGroup
    private let channel: Channel
    public let settings: ServerSettings

    /// Binds the socket (mode 0600, in a directory only the agent can write) and starts serving.
    public static func start(settings: ServerSettings, engine: Engine) throws -> Server {
        try prepareSocketPath(settings.socketPath)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let connections = NIOLockedValueBox(0)
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        IdleStateHandler(readTimeout: .seconds(settings.idleTimeoutSeconds)))
                    try channel.pipeline.syncOperations.addHandler(
                        ConnectionHandler(engine: engine, settings: settings, connections: connections))
                }
            }
        // The socket file takes its mode from the umask at bind time: owner read/write only.
        let previous = umask(0o177)
        defer { umask(previous) }
        do {
            let channel = try bootstrap.bind(unixDomainSocketPath: settings.socketPath).wait()
            return Server(group: group, channel: channel, settings: settings)
        } catch {
            try? group.syncShutdownGracefully()
            throw ServerError(description: "cannot listen on \(settings.socketPath): \(error)")
        }
    }

    private init(group: MultiThreadedEventLoopGroup, channel: Channel, settings: ServerSettings) {
        self.group = group
        self.channel = channel
        self.settings = settings
    }

    /// Stops accepting, closes the connections, removes the socket file.
    public func stop() {
        try? channel.close().wait()
        try? group.syncShutdownGracefully()
        unlink(settings.socketPath)
    }

    /// Refuses a socket directory others can write, and a socket where another agent still answers; removes a
    /// stale socket file.
    static func prepareSocketPath(_ path: String) throws {
        let directory = path.contains("/") ? String(path[..<(path.lastIndex(of: "/") ?? path.startIndex)]) : "."
        var info = stat()
        guard stat(directory.isEmpty ? "/" : directory, &info) == 0 else {
            throw ServerError(description: "the socket directory \(directory) does not exist")
        }
        guard info.st_uid == getuid(), info.st_mode & 0o022 == 0 else {
            throw ServerError(
                description: "the socket directory \(directory) must be owned by this user and not writable by others")
        }
        guard lstat(path, &info) == 0 else { return }
        guard info.st_mode & S_IFMT == S_IFSOCK else {
            throw ServerError(description: "\(path) exists and is not a socket")
        }
        if SocketProbe.answers(path) {
            throw ServerError(description: "another agent is listening on \(path)")
        }
        unlink(path)
    }
}

/// A blocking connect to see whether something listens on a Unix socket path.
enum SocketProbe {
    static func answers(_ path: String) -> Bool {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else { return false }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (index, byte) in bytes.enumerated() { raw[index] = byte }
        }
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        return result == 0
    }
}

/// `struct ucred` of Linux, read through SO_PEERCRED.
private struct PeerCredentials: Sendable {
    var pid: Int32 = 0
    var uid: UInt32 = 0
    var gid: UInt32 = 0
}

/// One connection: line framing, the caller check, JSON-RPC dispatch, replies in request order.
private final class ConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let engine: Engine
    private let settings: ServerSettings
    private let connections: NIOLockedValueBox<Int>
    private var buffer = ByteBuffer()
    private var peer: Peer?
    private var allowed = false
    private var counted = false
    private var closing = false
    /// Completes when every reply so far has been written: replies leave in request order.
    private var tail: EventLoopFuture<Void>?

    init(engine: Engine, settings: ServerSettings, connections: NIOLockedValueBox<Int>) {
        self.engine = engine
        self.settings = settings
        self.connections = connections
    }

    func channelActive(context: ChannelHandlerContext) {
        let admitted = connections.withLockedValue { count -> Bool in
            guard count < settings.maxConnections else { return false }
            count += 1
            return true
        }
        guard admitted else {
            context.close(promise: nil)
            return
        }
        counted = true
        guard let provider = context.channel as? SocketOptionProvider else {
            admit(nil, context: context)
            return
        }
        let future: EventLoopFuture<PeerCredentials> = provider.unsafeGetSocketOption(
            level: SocketOptionLevel(SOL_SOCKET), name: SocketOptionName(SO_PEERCRED))
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        future.whenComplete { result in
            let (handler, context) = bound.value
            handler.admit(try? result.get(), context: context)
        }
        context.fireChannelActive()
    }

    /// Checks the caller's credentials; a refused caller gets -32004 and the connection is closed.
    private func admit(_ credentials: PeerCredentials?, context: ChannelHandlerContext) {
        peer = credentials.map { Peer(pid: $0.pid, uid: $0.uid, gid: $0.gid) }
        allowed = peer.map(settings.allows) ?? false
        if !allowed {
            closing = true
            buffer.clear()
            let reply = RPC.error(id: nil, .callerNotAllowed, "caller not allowed")
            send(context.eventLoop.makeSucceededFuture(reply), context: context, thenClose: true)
            return
        }
        processBuffered(context: context)
    }

    func channelInactive(context: ChannelHandlerContext) {
        if counted {
            connections.withLockedValue { $0 -= 1 }
            counted = false
        }
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !closing else { return }
        var incoming = unwrapInboundIn(data)
        buffer.writeBuffer(&incoming)
        // Until the caller is checked, bytes only accumulate (up to the line limit).
        if allowed {
            processBuffered(context: context)
        } else if buffer.readableBytes > settings.maxLineBytes {
            refuseLongLine(context: context)
        }
    }

    private func processBuffered(context: ChannelHandlerContext) {
        while !closing, let newline = buffer.readableBytesView.firstIndex(of: 0x0A) {
            let length = newline - buffer.readerIndex
            guard length <= settings.maxLineBytes, let line = buffer.readBytes(length: length) else {
                refuseLongLine(context: context)
                return
            }
            buffer.moveReaderIndex(forwardBy: 1)
            handle(line: line, context: context)
        }
        if buffer.readableBytes > settings.maxLineBytes {
            refuseLongLine(context: context)
            return
        }
        buffer.discardReadBytes()
    }

    private func refuseLongLine(context: ChannelHandlerContext) {
        closing = true
        buffer.clear()
        let reply = RPC.error(id: nil, .invalidRequest, "line longer than \(settings.maxLineBytes) bytes")
        send(context.eventLoop.makeSucceededFuture(reply), context: context, thenClose: true)
    }

    private func handle(line: [UInt8], context: ChannelHandlerContext) {
        let request: RPCRequest
        switch RPC.parse(line) {
        case .failure(let reply):
            send(context.eventLoop.makeSucceededFuture(reply.bytes), context: context)
            return
        case .success(let parsed):
            request = parsed
        }
        let address = engine.address.checksummed
        switch request.method {
        case "sign":
            guard request.params.count == 1, let message = request.params.member("message")?.value.string else {
                let reply = RPC.error(id: request.id, .invalidParams, "invalid params: expected {\"message\": string}")
                send(context.eventLoop.makeSucceededFuture(reply), context: context)
                return
            }
            let promise = context.eventLoop.makePromise(of: [UInt8].self)
            let id = request.id
            engine.sign(message: Array(message.utf8), peer: peer) { outcome in
                promise.succeed(RPC.reply(id: id, address: address, outcome))
            }
            send(promise.futureResult, context: context)
        case "address":
            let reply = RPC.result(id: request.id) { writer in
                writer.beginObject()
                writer.field("address", address)
                writer.endObject()
            }
            send(context.eventLoop.makeSucceededFuture(reply), context: context)
        case "status":
            let reply = RPC.status(id: request.id, engine.status(), nowMs: Engine.systemClock())
            send(context.eventLoop.makeSucceededFuture(reply), context: context)
        default:
            let reply = RPC.error(id: request.id, .methodNotFound, "method not found: \(request.method)")
            send(context.eventLoop.makeSucceededFuture(reply), context: context)
        }
    }

    /// Writes `reply` after every earlier reply of this connection.
    private func send(_ reply: EventLoopFuture<[UInt8]>, context: ChannelHandlerContext, thenClose: Bool = false) {
        let channel = context.channel
        let previous = tail ?? context.eventLoop.makeSucceededVoidFuture()
        tail = previous.flatMap { reply }.flatMap { bytes in
            let written = channel.writeAndFlush(ByteBuffer(bytes: bytes))
            if thenClose { written.whenComplete { _ in channel.close(promise: nil) } }
            return written
        }.recover { _ in }
    }
}
