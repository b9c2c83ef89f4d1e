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
    /// Callers allowed besides the agent's own uid, which is always served (as ssh-agent serves its owner: that uid
    /// can read the key file anyway).
    public var allowUIDs: [UInt32]
    public var allowGIDs: [UInt32]
    public var maxConnections: Int
    /// A connection silent this long is closed, and a line must be complete this long after its first byte.
    public var idleTimeoutSeconds: Int64
    public var maxLineBytes: Int
    /// Requests per second per caller uid (a burst of as many), checked before any parsing; 0 turns it off.
    public var rateLimit: Int

    public init(
        socketPath: String, allowUIDs: [UInt32] = [], allowGIDs: [UInt32] = [], maxConnections: Int = 1024,
        idleTimeoutSeconds: Int64 = 60, maxLineBytes: Int = 65_536, rateLimit: Int = 50_000
    ) {
        self.socketPath = socketPath
        self.allowUIDs = allowUIDs
        self.allowGIDs = allowGIDs
        self.maxConnections = maxConnections
        self.idleTimeoutSeconds = idleTimeoutSeconds
        self.maxLineBytes = maxLineBytes
        self.rateLimit = rateLimit
    }

    /// Whether a caller with these credentials may talk to the agent.
    func allows(_ peer: Peer) -> Bool {
        peer.uid == getuid() || allowUIDs.contains(peer.uid) || allowGIDs.contains(peer.gid)
    }

    /// Descriptors the agent needs besides its connections: the listening socket, the log, snapshots, anchor and
    /// lock, each event loop's epoll and wake-up descriptors, standard streams, and room for the operator's
    /// commands' answers.
    public static let reservedDescriptors = 64
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
    /// Whether systemd passed the socket (then systemd owns the socket file).
    public let activated: Bool

    /// Binds the socket (mode 0600, in a directory only the agent can write), or takes the one systemd passes
    /// (LISTEN_FDS), without accepting yet: connections wait in the backlog until ``serve()``.
    public static func bind(settings: ServerSettings, engine: Engine) throws -> Server {
        let inherited = SocketActivation.listeningSocket()
        if inherited == nil { try prepareSocketPath(settings.socketPath) }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: System.coreCount)
        let connections = NIOLockedValueBox(0)
        let callers = CallerBook(rate: settings.rateLimit)
        // Per event loop, its open connections: a loop with one writes that connection's batch itself.
        var loads: [ObjectIdentifier: NIOLoopBoundBox<Int>] = [:]
        for loop in group.makeIterator() {
            loads[ObjectIdentifier(loop)] = NIOLoopBoundBox.makeBoxSendingValue(0, eventLoop: loop)
        }
        let loopLoads = loads
        let bootstrap = ServerBootstrap(group: group)
            // Room for every allowed connection to arrive at once (the kernel caps it at net.core.somaxconn).
            .serverChannelOption(.backlog, value: Int32(clamping: max(settings.maxConnections, 256)))
            .serverChannelOption(.autoRead, value: false)
            // Out of descriptors (EMFILE, ENFILE): accept again after a pause instead of spinning on the error; the
            // waiting client stays in the backlog.
            .serverChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        AcceptBackoffHandler(shouldForwardIOErrorCaught: false) { _ in .milliseconds(250) })
                }
            }
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        IdleStateHandler(readTimeout: .seconds(settings.idleTimeoutSeconds)))
                    try channel.pipeline.syncOperations.addHandler(
                        ConnectionHandler(
                            engine: engine, settings: settings, connections: connections, callers: callers,
                            loopLoad: loopLoads[ObjectIdentifier(channel.eventLoop)]))
                }
            }
        // The socket file takes its mode from the umask at bind time: owner read/write only.
        let previous = umask(0o177)
        defer { umask(previous) }
        do {
            let channel: Channel
            if let inherited {
                channel = try bootstrap.withBoundSocket(inherited).wait()
            } else {
                channel = try bootstrap.bind(unixDomainSocketPath: settings.socketPath).wait()
            }
            return Server(group: group, channel: channel, settings: settings, activated: inherited != nil)
        } catch {
            try? group.syncShutdownGracefully()
            throw ServerError(description: "cannot listen on \(settings.socketPath): \(error)")
        }
    }

    private init(group: MultiThreadedEventLoopGroup, channel: Channel, settings: ServerSettings, activated: Bool) {
        self.group = group
        self.channel = channel
        self.settings = settings
        self.activated = activated
    }

    /// Starts accepting connections.
    public func serve() {
        channel.setOption(.autoRead, value: true).whenSuccess { [channel] in channel.read() }
    }

    /// Stops accepting, closes the connections, removes the socket file (unless systemd owns it).
    public func stop() {
        try? channel.close().wait()
        try? group.syncShutdownGracefully()
        if !activated { unlink(settings.socketPath) }
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

/// systemd socket activation: the listening socket passed as fd 3 when LISTEN_PID is this process.
enum SocketActivation {
    static func listeningSocket() -> CInt? {
        guard let pid = getenv("LISTEN_PID").flatMap({ Int32(String(cString: $0)) }), pid == getpid(),
            let count = getenv("LISTEN_FDS").flatMap({ Int(String(cString: $0)) }), count >= 1
        else { return nil }
        // Not inherited by anything this process might start.
        unsetenv("LISTEN_PID")
        unsetenv("LISTEN_FDS")
        unsetenv("LISTEN_FDNAMES")
        let fd: CInt = 3
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        return fd
    }
}

/// Per caller uid: a token bucket for the request rate, and a limit on how often refusals are audited, so that a
/// flood of refused connections cannot grow the log without bound.
final class CallerBook: Sendable {
    private struct Entry {
        var tokens: Double
        var refilledAt: UInt64
        var refusalLoggedAt: UInt64?
        var refusalsSuppressed: Int
        /// Refused signing requests the caller may still have recorded now (refilled at `refusedRate`).
        var refusedTokens = Double(CallerBook.refusedBurst)
        var refusedRefilledAt: UInt64 = 0
    }

    /// Refused signing requests recorded per caller uid per second, after a burst of `refusedBurst`: past that, the
    /// caller's signing requests are answered -32005 without being read or recorded until the budget refills. With
    /// a refusal record of at most about 5 KiB (``RefusalText``), refusals grow the log by at most about 100 KiB/s
    /// per uid.
    static let refusedRate = 20
    static let refusedBurst = 1000

    private let rate: Int
    private let entries = NIOLockedValueBox<[UInt32: Entry]>([:])
    /// One refusal record per uid per this many ms.
    static let refusalLogInterval: UInt64 = 60_000

    init(rate: Int) { self.rate = rate }

    private static func nowMs() -> UInt64 {
        var spec = timespec()
        clock_gettime(CLOCK_MONOTONIC, &spec)
        return UInt64(spec.tv_sec) * 1000 + UInt64(spec.tv_nsec / 1_000_000)
    }

    private func withEntry<R>(_ uid: UInt32, _ body: (inout Entry, UInt64) -> R) -> R {
        let now = Self.nowMs()
        return entries.withLockedValue { table in
            if table[uid] == nil, table.count >= 4096 { table.removeAll() }  // bounded: reset rather than grow
            var entry = table[uid] ?? Entry(tokens: Double(rate), refilledAt: now, refusalsSuppressed: 0)
            let result = body(&entry, now)
            table[uid] = entry
            return result
        }
    }

    /// Takes one request token for `uid`; false when the caller is over its rate.
    func admit(_ uid: UInt32) -> Bool {
        guard rate > 0 else { return true }
        return withEntry(uid) { entry, now in
            let elapsed = Double(now &- entry.refilledAt) / 1000
            entry.tokens = min(Double(rate), entry.tokens + elapsed * Double(rate))
            entry.refilledAt = now
            guard entry.tokens >= 1 else { return false }
            entry.tokens -= 1
            return true
        }
    }

    /// Whether `uid` may have another signing request read (its budget of recorded refusals is not spent).
    func mayBeRefused(_ uid: UInt32) -> Bool {
        withEntry(uid) { entry, now in
            refill(&entry, now)
            return entry.refusedTokens >= 1
        }
    }

    /// Spends one recorded refusal of `uid`'s budget.
    func chargeRefusal(_ uid: UInt32) {
        withEntry(uid) { entry, now in
            refill(&entry, now)
            entry.refusedTokens = max(entry.refusedTokens - 1, 0)
        }
    }

    private func refill(_ entry: inout Entry, _ now: UInt64) {
        if entry.refusedRefilledAt == 0 { entry.refusedRefilledAt = now }
        let elapsed = Double(now &- entry.refusedRefilledAt) / 1000
        entry.refusedTokens = min(Double(Self.refusedBurst), entry.refusedTokens + elapsed * Double(Self.refusedRate))
        entry.refusedRefilledAt = now
    }

    /// Whether to audit this refusal now; if so, how many were suppressed since the last record.
    func refusalToLog(_ uid: UInt32) -> Int? {
        withEntry(uid) { entry, now in
            if let last = entry.refusalLoggedAt, now &- last < Self.refusalLogInterval {
                entry.refusalsSuppressed += 1
                return nil
            }
            let suppressed = entry.refusalsSuppressed
            entry.refusalLoggedAt = now
            entry.refusalsSuppressed = 0
            return suppressed
        }
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
///
/// Backpressure: while `maxPendingReplies` replies are unsent (decided or not), or the socket's send buffer is
/// past its high-water mark (the client does not read), no more lines are handled and nothing more is read; the
/// kernel's socket buffer then stops the client. Reading resumes when the replies drain. A connection's memory is
/// therefore bounded (one read, one line, the replies in flight), whatever the client does.
private final class ConnectionHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    /// Replies that may wait unsent before the connection stops being read.
    static let maxPendingReplies = 64

    private let engine: Engine
    private let settings: ServerSettings
    private let connections: NIOLockedValueBox<Int>
    private let callers: CallerBook
    private var buffer = ByteBuffer()
    private var peer: Peer?
    private var allowed = false
    private var counted = false
    private var closing = false
    /// Whether a sign was staged with its write deferred to the end of the lines at hand.
    private var signsStaged = false
    /// The open connections of this handler's event loop.
    private let loopLoad: NIOLoopBoundBox<Int>?
    private var loaded = false
    /// Replies in request order: a slot per request, filled when its reply is ready, written from the front.
    private var replies = CircularBuffer<Reply?>()
    /// The number of slots taken before the first one in `replies`.
    private var repliesTaken = 0
    /// A read the pipeline asked for while the connection was held back.
    private var readHeld = false
    /// Whether `processBuffered` is running (a reply written inline must not start it again).
    private var processing = false
    /// Closes the connection if the line begun is not complete in time.
    private var lineDeadline: Scheduled<Void>?

    private struct Reply {
        var bytes: [UInt8]
        var thenClose: Bool
    }

    init(
        engine: Engine, settings: ServerSettings, connections: NIOLockedValueBox<Int>, callers: CallerBook,
        loopLoad: NIOLoopBoundBox<Int>?
    ) {
        self.loopLoad = loopLoad
        self.engine = engine
        self.settings = settings
        self.connections = connections
        self.callers = callers
    }

    func channelActive(context: ChannelHandlerContext) {
        let admitted = connections.withLockedValue { count -> Bool in
            guard count < settings.maxConnections else { return false }
            count += 1
            return true
        }
        guard admitted else {
            // Told why, then closed: not left waiting for an answer that never comes.
            closing = true
            engine.metrics.rateLimited("connections")
            let reply = RPC.error(
                id: nil, .rateLimited, "too many connections: the agent serves \(settings.maxConnections) at once")
            let channel = context.channel
            context.writeAndFlush(wrapOutboundOut(ByteBuffer(bytes: reply))).whenComplete { _ in
                channel.close(promise: nil)
            }
            return
        }
        counted = true
        engine.metrics.connections(1)
        if let loopLoad {
            loopLoad.value += 1
            loaded = true
        }
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
            engine.metrics.callerRefused()
            if let peer, let suppressed = callers.refusalToLog(peer.uid) {
                engine.record(event: "caller_refused", peer: peer) { writer in
                    writer.field("suppressed_since_last", suppressed)
                }
            }
            let reply = RPC.error(id: nil, .callerNotAllowed, "caller not allowed")
            send(reply, context: context, thenClose: true)
            return
        }
        processBuffered(context: context)
    }

    func channelInactive(context: ChannelHandlerContext) {
        lineDeadline?.cancel()
        lineDeadline = nil
        if loaded, let loopLoad {
            loopLoad.value -= 1
            loaded = false
        }
        if counted {
            connections.withLockedValue { $0 -= 1 }
            engine.metrics.connections(-1)
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

    /// Whether the connection must wait for its replies to drain before more lines are handled or read.
    private func heldBack(_ context: ChannelHandlerContext) -> Bool {
        replies.count >= Self.maxPendingReplies || !context.channel.isWritable
    }

    func read(context: ChannelHandlerContext) {
        if heldBack(context) {
            readHeld = true
            return
        }
        context.read()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        resume(context: context)
        context.fireChannelWritabilityChanged()
    }

    /// Once the replies drain: the lines already buffered, then the read that was held. (Not from within
    /// `processBuffered`, whose loop goes on by itself.)
    private func resume(context: ChannelHandlerContext) {
        guard !closing, !processing, !heldBack(context) else { return }
        if allowed, buffer.readableBytes > 0 { processBuffered(context: context) }
        if readHeld, !heldBack(context) {
            readHeld = false
            context.read()
        }
    }

    /// A line begun must be complete within the idle timeout of its first byte, however slowly it trickles in.
    private func updateLineDeadline(context: ChannelHandlerContext, lineCompleted: Bool) {
        let partial = buffer.readableBytes > 0 && buffer.readableBytesView.firstIndex(of: 0x0A) == nil
        if lineCompleted || !partial {
            lineDeadline?.cancel()
            lineDeadline = nil
        }
        guard partial, lineDeadline == nil, !closing else { return }
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        let seconds = settings.idleTimeoutSeconds
        lineDeadline = context.eventLoop.scheduleTask(in: .seconds(seconds)) {
            let (handler, context) = bound.value
            handler.lineDeadline = nil
            guard !handler.closing else { return }
            handler.closing = true
            handler.buffer.clear()
            let reply = RPC.error(id: nil, .invalidRequest, "line not complete within \(seconds) s of its first byte")
            handler.send(reply, context: context, thenClose: true)
        }
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
        // Every sign of these lines is staged first and written together at the end (one fdatasync for a client
        // that sends several lines at once).
        defer {
            if signsStaged {
                signsStaged = false
                engine.endOfReadBatch(sharedLoop: (loopLoad?.value ?? 0) > 1)
            }
        }
        var lineCompleted = false
        processing = true
        defer {
            processing = false
            updateLineDeadline(context: context, lineCompleted: lineCompleted)
            if readHeld, !closing, !heldBack(context) {
                readHeld = false
                context.read()
            }
        }
        while !closing, !heldBack(context), let newline = buffer.readableBytesView.firstIndex(of: 0x0A) {
            lineCompleted = true
            let length = newline - buffer.readerIndex
            guard length <= settings.maxLineBytes, let line = buffer.readBytes(length: length) else {
                refuseLongLine(context: context)
                return
            }
            buffer.moveReaderIndex(forwardBy: 1)
            // The rate is checked before any parsing: a flooding caller costs a counter, not a parse.
            if let peer, !callers.admit(peer.uid) {
                engine.metrics.rateLimited("requests")
                let reply = RPC.error(id: nil, .rateLimited, "rate limited: more than \(settings.rateLimit) requests/s")
                send(reply, context: context)
                continue
            }
            handle(line: line, context: context)
        }
        // Held back with lines still buffered: they wait for the replies to drain (see `resume`).
        if buffer.readableBytes > settings.maxLineBytes, buffer.readableBytesView.firstIndex(of: 0x0A) == nil {
            refuseLongLine(context: context)
            return
        }
        buffer.discardReadBytes()
    }

    private func refuseLongLine(context: ChannelHandlerContext) {
        closing = true
        buffer.clear()
        let reply = RPC.error(id: nil, .invalidRequest, "line longer than \(settings.maxLineBytes) bytes")
        send(reply, context: context, thenClose: true)
    }

    private func handle(line: [UInt8], context: ChannelHandlerContext) {
        let request: RPCRequest
        switch RPC.parse(line) {
        case .failure(let reply):
            send(reply.bytes, context: context)
            return
        case .success(let parsed):
            request = parsed
        }
        let address = engine.address.checksummed
        // Fail closed: `address`, `status`, `metrics` and `rotate` take no parameters; any given are refused, not
        // ignored.
        if ["address", "status", "metrics", "rotate"].contains(request.method), !request.params.isEmpty {
            let reply = RPC.error(id: request.id, .invalidParams, "invalid params: \(request.method) takes none")
            send(reply, context: context)
            return
        }
        switch request.method {
        case "sign":
            guard request.params.count == 1, let message = request.params.member("message")?.value.string else {
                let reply = RPC.error(id: request.id, .invalidParams, "invalid params: expected {\"message\": string}")
                send(reply, context: context)
                return
            }
            if let peer, !callers.mayBeRefused(peer.uid) {
                engine.metrics.rateLimited("refusals")
                let reply = RPC.error(
                    id: request.id, .rateLimited,
                    "rate limited: more than \(CallerBook.refusedRate) refused requests/s (after \(CallerBook.refusedBurst))"
                )
                send(reply, context: context)
                return
            }
            let id = request.id
            let answer = replyLater(context: context)
            let callers = callers
            let peer = peer
            signsStaged = true
            engine.sign(message: Array(message.utf8), peer: peer, deferWrite: true) { outcome in
                if case .refused = outcome, let peer { callers.chargeRefusal(peer.uid) }
                answer(RPC.reply(id: id, address: address, outcome))
            }
        case "address":
            let reply = RPC.result(id: request.id) { writer in
                writer.beginObject()
                writer.field("address", address)
                writer.endObject()
            }
            send(reply, context: context)
        case "status":
            let reply = RPC.status(id: request.id, engine.status(), nowMs: Engine.systemClock())
            send(reply, context: context)
        case "metrics":
            let text = engine.metrics.exposition(engine.ledgerGauges())
            let reply = RPC.result(id: request.id) { writer in
                writer.beginObject()
                writer.field("format", "prometheus-text-0.0.4")
                writer.field("text", utf8: text)
                writer.endObject()
            }
            send(reply, context: context)
        case "rotate":
            // An operator's command: the agent's own user (or root), not every caller the socket admits.
            guard let peer, peer.uid == getuid() || peer.uid == 0 else {
                let reply = RPC.error(
                    id: request.id, .callerNotAllowed, "rotate is for the agent's own user (the operator) or root")
                send(reply, context: context)
                return
            }
            let id = request.id
            let answer = replyLater(context: context)
            engine.rotate(peer: peer) { sealed in
                answer(
                    sealed.map { name in
                        RPC.result(id: id) { writer in
                            writer.beginObject()
                            writer.field("sealed", name)
                            writer.endObject()
                        }
                    } ?? RPC.error(id: id, .auditUnavailable, "the rollover could not be recorded"))
            }
        case "observe":
            guard request.params.count == 1, let message = request.params.member("message")?.value.string else {
                let reply = RPC.error(id: request.id, .invalidParams, "invalid params: expected {\"message\": string}")
                send(reply, context: context)
                return
            }
            let id = request.id
            let answer = replyLater(context: context)
            engine.observe(message: Array(message.utf8), peer: peer) { outcome in
                answer(RPC.observed(id: id, outcome))
            }
        case "channel_resume", "channel_challenge":
            // An operator's command, like rotate.
            guard let peer, peer.uid == getuid() || peer.uid == 0 else {
                let reply = RPC.error(
                    id: request.id, .callerNotAllowed,
                    "\(request.method) is for the agent's own user (the operator) or root")
                send(reply, context: context)
                return
            }
            guard request.params.count == 1, let channel = request.params.member("channel")?.value.string else {
                let reply = RPC.error(id: request.id, .invalidParams, "invalid params: expected {\"channel\": string}")
                send(reply, context: context)
                return
            }
            let id = request.id
            let answer = replyLater(context: context)
            if request.method == "channel_challenge" {
                engine.challengeChannel(channel, peer: peer) { outcome in
                    switch outcome {
                    case .success(let challenge):
                        answer(
                            RPC.result(id: id) { writer in
                                writer.beginObject()
                                writer.field("channel", channel)
                                writer.field("version", challenge.version)
                                writer.field("challenger_sig", challenge.signature)
                                writer.endObject()
                            })
                    case .failure(let denial):
                        answer(RPC.operatorRefusal(id: id, denial))
                    }
                }
                return
            }
            engine.resumeChannel(channel, peer: peer) { failure in
                answer(
                    failure.map { RPC.operatorRefusal(id: id, $0, code: .invalidParams) }
                        ?? RPC.result(id: id) { writer in
                            writer.beginObject()
                            writer.field("channel", channel)
                            writer.field("resumed", true)
                            writer.endObject()
                        })
            }
        default:
            let reply = RPC.error(id: request.id, .methodNotFound, "method not found: \(request.method)")
            send(reply, context: context)
        }
    }

    /// Takes the next reply slot and returns what fills it from any thread: inline when called on this connection's
    /// own event loop (a batch written there, for a lone client), else by a task on it.
    private func replyLater(context: ChannelHandlerContext) -> @Sendable ([UInt8]) -> Void {
        let slot = reserveReply()
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        let eventLoop = context.eventLoop
        return { bytes in
            if eventLoop.inEventLoop {
                let (handler, context) = bound.value
                handler.fill(slot, Reply(bytes: bytes, thenClose: false), context: context)
            } else {
                eventLoop.execute {
                    let (handler, context) = bound.value
                    handler.fill(slot, Reply(bytes: bytes, thenClose: false), context: context)
                }
            }
        }
    }

    /// Writes `reply` after every earlier reply of this connection.
    private func send(_ reply: [UInt8], context: ChannelHandlerContext, thenClose: Bool = false) {
        fill(reserveReply(), Reply(bytes: reply, thenClose: thenClose), context: context)
    }

    /// Takes the next reply slot.
    private func reserveReply() -> Int {
        replies.append(nil)
        return repliesTaken + replies.count - 1
    }

    /// Fills a slot, then writes every reply that is ready at the front, with one flush.
    private func fill(_ slot: Int, _ reply: Reply, context: ChannelHandlerContext) {
        let index = slot - repliesTaken
        guard index >= 0, index < replies.count else { return }
        replies[replies.index(replies.startIndex, offsetBy: index)] = reply
        var wrote = false
        while let first = replies.first, let ready = first {
            replies.removeFirst()
            repliesTaken += 1
            if ready.thenClose {
                // The last reply: close once it is written (a close would drop a write still pending).
                replies.removeAll()
                let channel = context.channel
                let written = context.eventLoop.makePromise(of: Void.self)
                context.writeAndFlush(wrapOutboundOut(ByteBuffer(bytes: ready.bytes)), promise: written)
                written.futureResult.whenComplete { _ in channel.close(promise: nil) }
                return
            }
            context.write(wrapOutboundOut(ByteBuffer(bytes: ready.bytes)), promise: nil)
            wrote = true
        }
        if wrote {
            context.flush()
            resume(context: context)
        }
    }
}
