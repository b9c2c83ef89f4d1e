import CustodianAgent
import CustodianCore
import CustodianCrypto
import CustodianTestSupport
import Foundation
import Testing

/// Waits for an engine reply.
final class Reply<T: Sendable>: @unchecked Sendable {
    private let semaphore = DispatchSemaphore(value: 0)
    private var value: T?

    func set(_ value: T) {
        self.value = value
        semaphore.signal()
    }

    func wait() -> T? {
        _ = semaphore.wait(timeout: .now() + 30)
        return value
    }
}

@Suite("The engine")
struct EngineTests {
    static let wide = """
        version = 1
        [requests]
        methods = ["create_app_session", "submit_app_state", "close_app_session"]
        max_age_ms = 100000000000000
        [assets.usdc]
        decimals = 6
        [sessions]
        max_participants = 8

        [counterparties]
        allow = []

        [velocity]
        window_s = 86400
        max_own_loss = {}

        """

    static func vectorText(_ folder: String, _ name: String, _ field: String) throws -> [UInt8] {
        let vector = try VectorFiles.load(folder, name)
        return Array(try #require(vector[field] as? String).utf8)
    }

    static func startEngine(_ directory: TemporaryDirectory, policy text: String = wide) throws -> Engine {
        let policy = try PolicyFile.parse(Array(text.utf8))
        let log = try AuditLog(path: directory.path + "/audit.log", chain: AuditChain())
        let engine = Engine(
            key: try signingKey(hex: keyAHex), policy: policy, state: LedgerState(), log: log, checkpointEvery: 1000)
        try engine.start(version: "test")
        return engine
    }

    static func sign(_ engine: Engine, _ message: [UInt8]) -> SignOutcome? {
        let reply = Reply<SignOutcome>()
        engine.sign(message: message, peer: nil) { reply.set($0) }
        return reply.wait()
    }

    @Test("fail closed: with the log removed, nothing is signed; the ledger stays what the log implies")
    func logRemoved() throws {
        let directory = try TemporaryDirectory()
        let engine = try Self.startEngine(directory)
        defer { engine.stop() }
        guard case .signed = Self.sign(engine, try Self.vectorText("sign", "create_v1.json", "req")) else {
            Issue.record("the create was not signed")
            return
        }
        try FileManager.default.removeItem(atPath: directory.path + "/audit.log")
        guard case .unavailable = Self.sign(engine, try Self.vectorText("sign", "close_v2.json", "req")) else {
            Issue.record("a signature left without a durable record")
            return
        }
        #expect(engine.status().openSessions == 1)
        #expect(engine.status().closedSessions == 0)
    }

    @Test("replaying the log gives the state the engine had, and a retry of a signed close is allowed")
    func replayEqualsState() throws {
        let directory = try TemporaryDirectory()
        let engine = try Self.startEngine(directory)
        _ = Self.sign(engine, try Self.vectorText("sign", "create_v1.json", "req"))
        _ = Self.sign(engine, try Self.vectorText("sign", "close_v2.json", "req"))
        let other = try Self.vectorText("close_policy", "allow_exact_sum.json", "message")
        guard case .refused(let denial, _) = Self.sign(engine, other) else {
            Issue.record("a second, different close was signed")
            return
        }
        #expect(denial.reason == .sessionClosed)
        let status = engine.status()
        engine.stop()
        let bytes = try FileIO.readAll(directory.path + "/audit.log")
        let (chain, state) = try Replay.ledger(from: bytes).get()
        let address = try #require(chain.agent)
        #expect(state.counts.open == status.openSessions)
        #expect(state.counts.closed == status.closedSessions)
        #expect(state.counts.closed == 1)
        var checkpoints: [AuditEntry] = []
        _ = AuditChain.read(
            bytes, wants: { _, event, _ in event == "checkpoint" },
            visit: {
                checkpoints.append($0); return nil
            })
        #expect(checkpoints.count == 1)
        #expect(checkpoints.allSatisfy { AuditVerifier.verifyCheckpoint($0, address: address) == nil })
        #expect(checkpoints.last?.seq == UInt64(chain.count), "the last record is the checkpoint of the stop")
    }

    @Test("warn mode: the request is signed and the refusal it would have been is in its audit record")
    func warnMode() throws {
        let directory = try TemporaryDirectory()
        let text =
            Self.wide.replacingOccurrences(of: "decimals = 6", with: "decimals = 6\nmax_allocation = \"100\"")
            + "\n[enforcement]\nwarn = [\"policy.cap_exceeded\"]\n"
        let engine = try Self.startEngine(directory, policy: text)
        _ = Self.sign(engine, try Self.vectorText("sign", "create_v1.json", "req"))
        // V2 pays B 150, above max_allocation 100.
        guard
            case .signed(_, _, _, _, let seq, _, _) = Self.sign(
                engine, try Self.vectorText("sign", "close_v2.json", "req"))
        else {
            Issue.record("a warned close was not signed")
            return
        }
        engine.stop()
        var records: [AuditEntry] = []
        _ = AuditChain.read(
            try FileIO.readAll(directory.path + "/audit.log"), wants: { _, _, _ in true },
            visit: {
                records.append($0); return nil
            })
        let record = try #require(records.first { $0.seq == seq })
        #expect(record.string("decision") == "allow")
        let warnings = try #require(record.members.member("warnings")?.value.elements)
        #expect(warnings.count == 1)
        #expect(warnings.first?.value.members?.member("reason")?.value.string == "policy.cap_exceeded")
        #expect(warnings.first?.value.members?.member("figures")?.value.members?.member("cap")?.value.string == "100")
    }

    @Test("a clean stop writes a snapshot the log vouches for; starting from it equals a full replay, also after more")
    func snapshot() throws {
        let directory = try TemporaryDirectory()
        let logPath = directory.path + "/audit.log"
        let snapshotPath = directory.path + "/ledger.snapshot"
        let policy = try PolicyFile.parse(Array(Self.wide.utf8))
        let first = Engine(
            key: try signingKey(hex: keyAHex), policy: policy, state: LedgerState(),
            log: try AuditLog(path: logPath, chain: AuditChain()), checkpointEvery: 1000, snapshotPath: snapshotPath)
        try first.start(version: "test")
        let create = try Self.vectorText("sign", "create_v1.json", "req")
        _ = Self.sign(first, create)
        _ = Self.sign(first, try Self.vectorText("sign", "close_v2.json", "req"))
        first.stop()
        let bytes = try FileIO.readAll(logPath)
        let snapshot = try FileIO.readAll(snapshotPath)
        let (chain, full) = try Replay.ledger(from: bytes).get()
        let (_, fast) = try Replay.ledger(from: bytes, snapshot: snapshot).get()
        #expect(fast.sessions == full.sessions)
        #expect(fast.losses == full.losses)
        #expect(fast.counts.closed == 1)
        var stops: [AuditEntry] = []
        _ = AuditChain.read(
            bytes, wants: { _, event, _ in event == "stop" },
            visit: {
                stops.append($0); return nil
            })
        #expect(stops.last?.string("snapshot_sha256") == SHA256.hex(snapshot))

        // A snapshot the log does not vouch for (here: an empty ledger at the same seq) is not used.
        let forged = LedgerState().encodeSnapshot(seq: try #require(stops.last?.seq))
        let (_, fromForged) = try Replay.ledger(from: bytes, snapshot: forged).get()
        #expect(fromForged.sessions == full.sessions)

        // Start from the snapshot, sign more, crash (no new snapshot): snapshot + tail = a full replay.
        let second = Engine(
            key: try signingKey(hex: keyAHex), policy: policy, state: fast,
            log: try AuditLog(path: logPath, chain: chain), checkpointEvery: 1000, snapshotPath: snapshotPath)
        try second.start(version: "test")
        let another = String(decoding: create, as: UTF8.self)
            .replacingOccurrences(of: "\"nonce\":1733000000000}", with: "\"nonce\":1733000000001}")
        #expect(Array(another.utf8) != create)
        guard case .signed = Self.sign(second, Array(another.utf8)) else {
            Issue.record("the second create was refused")
            return
        }
        let crashed = try FileIO.readAll(logPath)
        second.stop()
        let (_, tail) = try Replay.ledger(from: crashed, snapshot: snapshot).get()
        let (_, everything) = try Replay.ledger(from: crashed).get()
        #expect(tail.sessions == everything.sessions)
        #expect(tail.counts.open == 1 && tail.counts.closed == 1)
    }

    @Test("many threads at once: each session closes once, records follow decisions, the log replays to the same state")
    func concurrentSubmitters() throws {
        let directory = try TemporaryDirectory()
        let engine = try Self.startEngine(directory)
        let create = String(decoding: try Self.vectorText("sign", "create_v1.json", "req"), as: UTF8.self)
        let close = String(decoding: try Self.vectorText("sign", "close_v2.json", "req"), as: UTF8.self)
        let sessions = 24
        var creates: [[UInt8]] = []
        var closes: [[UInt8]] = []
        var ids: [String] = []
        for index in 0..<sessions {
            let text = create.replacingOccurrences(
                of: "\"nonce\":1733000000000}", with: "\"nonce\":\(1_733_000_000_000 + index)}")
            guard case .success(let request) = NitroRPCv0Reader().read(Array(text.utf8)),
                case .create(let definition, _, _) = request.body
            else {
                Issue.record("the create does not read")
                return
            }
            creates.append(Array(text.utf8))
            ids.append(definition.appSessionID)
            let closing = close.replacingOccurrences(
                of: "0x3186abf9003acc50f21f6436ec0e92a3ca67e54bc77e07c0b0f44d841cb419af", with: definition.appSessionID)
            // Two conflicting final splits of the same funds.
            closes.append(Array(closing.utf8))
            closes.append(
                Array(
                    closing.replacingOccurrences(of: "\"amount\":\"0\"", with: "\"amount\":\"x\"")
                        .replacingOccurrences(of: "\"amount\":\"150\"", with: "\"amount\":\"0\"")
                        .replacingOccurrences(of: "\"amount\":\"x\"", with: "\"amount\":\"150\"").utf8))
        }
        let submit: @Sendable ([[UInt8]]) -> [SignOutcome?] = { messages in
            let replies = messages.map { _ in Reply<SignOutcome>() }
            DispatchQueue.concurrentPerform(iterations: messages.count) { index in
                engine.sign(message: messages[index], peer: nil) { replies[index].set($0) }
            }
            return replies.map { $0.wait() }
        }
        let created = submit(creates)
        #expect(created.allSatisfy { if case .signed = $0 { true } else { false } })
        let closed = submit(closes)
        var allowedSeqs: [String: UInt64] = [:]
        for index in 0..<sessions {
            var allowed = 0
            for outcome in [closed[2 * index], closed[2 * index + 1]] {
                switch outcome {
                case .signed(_, _, _, _, let seq, _, _):
                    allowed += 1
                    allowedSeqs[ids[index]] = seq
                case .refused(let denial, _):
                    #expect(denial.reason == .sessionClosed)
                default: Issue.record("a close got \(String(describing: outcome))")
                }
            }
            #expect(allowed == 1, "session \(index): \(allowed) closes signed")
        }
        let status = engine.status()
        engine.stop()

        // The log, read back: every allowed close after its session's create; the replay equals the live ledger.
        let bytes = try FileIO.readAll(directory.path + "/audit.log")
        var createSeq: [String: UInt64] = [:]
        _ = AuditChain.read(
            bytes, wants: { _, event, _ in event == "sign" },
            visit: { entry in
                if entry.string("method") == "create_app_session", entry.string("decision") == "allow",
                    let id = entry.string("app_session_id")
                {
                    createSeq[id] = entry.seq
                }
                return nil
            })
        for (id, seq) in allowedSeqs {
            #expect((createSeq[id] ?? .max) < seq)
        }
        let (_, replayed) = try Replay.ledger(from: bytes).get()
        #expect(replayed.counts.closed == sessions && replayed.counts.open == 0)
        #expect(status.closedSessions == sessions && status.openSessions == 0)
    }

    @Test("periodic snapshots: vouched for by a snapshot record; a start after a crash replays only the tail")
    func periodicSnapshots() throws {
        let directory = try TemporaryDirectory()
        let logPath = directory.path + "/audit.log"
        let snapshotPath = directory.path + "/ledger.snapshot"
        let engine = Engine(
            key: try signingKey(hex: keyAHex), policy: try PolicyFile.parse(Array(Self.wide.utf8)),
            state: LedgerState(), log: try AuditLog(path: logPath, chain: AuditChain()), checkpointEvery: 1000,
            snapshotPath: snapshotPath, snapshotEvery: 5)
        try engine.start(version: "test")
        let create = String(decoding: try Self.vectorText("sign", "create_v1.json", "req"), as: UTF8.self)
        var vouched: [AuditEntry] = []
        func readVouched() throws {
            vouched = []
            _ = AuditChain.read(
                try FileIO.readAll(logPath), wants: { _, event, _ in event == "snapshot" },
                visit: {
                    vouched.append($0)
                    return nil
                })
        }
        // Sign until two snapshots are vouched for (each is written once its records are durable, by a thread that
        // may run late on a loaded host); at least 24 creates.
        var signed = 0
        for index in 0..<400 {
            let text = create.replacingOccurrences(
                of: "\"nonce\":1733000000000}", with: "\"nonce\":\(1_733_000_000_000 + index)}")
            guard case .signed = Self.sign(engine, Array(text.utf8)) else {
                Issue.record("create \(index) was refused")
                return
            }
            signed += 1
            if index >= 24 {
                try readVouched()
                if vouched.count >= 2 { break }
                Thread.sleep(forTimeInterval: 0.01)
            }
        }
        #expect(vouched.count >= 2)
        Thread.sleep(forTimeInterval: 0.3)  // no snapshot is due any more; let the last one settle
        // As after a crash: no stop record, the files as they are.
        let bytes = try FileIO.readAll(logPath)
        vouched = []
        _ = AuditChain.read(
            bytes, wants: { _, event, _ in event == "snapshot" },
            visit: {
                vouched.append($0)
                return nil
            })
        let current = try FileIO.readAll(snapshotPath)
        let previous = try FileIO.readAll(snapshotPath + ".prev")
        let full = try Replay.ledger(from: bytes).get()
        let fast = try Replay.ledger(from: bytes, snapshots: [current, previous]).get()
        // The newest file, or (if a third was written but not yet vouched for as the sleep ended) the one before.
        #expect(
            fast.snapshotSeq != nil
                && [LedgerState.snapshotSeq(current), LedgerState.snapshotSeq(previous)].contains(fast.snapshotSeq))
        #expect(fast.snapshotSeq.map { seq in vouched.contains { $0.integer("snapshot_seq") == seq } } == true)
        #expect(fast.state.sessions == full.1.sessions && fast.state.sessions.count == signed)
        // A current file the log does not vouch for (torn, or written just before the crash): the previous one.
        var torn = current
        torn[torn.count - 1] ^= 1
        let fallback = try Replay.ledger(from: bytes, snapshots: [torn, previous]).get()
        #expect(fallback.snapshotSeq == LedgerState.snapshotSeq(previous))
        #expect(fallback.state.sessions == full.1.sessions)
        engine.stop()
    }

    @Test("an earlier build's snapshot (v2) is evidence of its seq, is not decoded, and a start replays the log")
    func olderSnapshot() throws {
        let older = Array("custodian ledger snapshot v2\n".utf8) + [0x85, 0x01] + [UInt8](repeating: 0, count: 16)
        #expect(LedgerState.snapshotSeq(older) == 133)
        #expect(LedgerState.decodeSnapshot(older) == nil)
        let directory = try TemporaryDirectory()
        let logPath = directory.path + "/audit.log"
        let snapshotPath = directory.path + "/ledger.snapshot"
        let engine = Engine(
            key: try signingKey(hex: keyAHex), policy: try PolicyFile.parse(Array(Self.wide.utf8)),
            state: LedgerState(), log: try AuditLog(path: logPath, chain: AuditChain()), checkpointEvery: 1000,
            snapshotPath: snapshotPath)
        try engine.start(version: "test")
        guard case .signed = Self.sign(engine, try Self.vectorText("sign", "create_v1.json", "req")) else {
            Issue.record("the create was not signed")
            return
        }
        engine.stop()
        let log = try FileIO.readAll(logPath)
        let current = try FileIO.readAll(snapshotPath)
        let full = try Replay.ledger(from: log).get()
        #expect(full.1.sessions.count == 1)
        let seq = try #require(LedgerState.snapshotSeq(current))
        var header = Array("custodian ledger snapshot v2\n".utf8)
        var value = seq
        repeat {
            header.append(UInt8(value & 0x7F) | (value > 0x7F ? 0x80 : 0))
            value >>= 7
        } while value > 0
        let rebuilt = try Replay.ledger(from: log, snapshots: [header + [UInt8](repeating: 0, count: 8)]).get()
        #expect(rebuilt.snapshotSeq == nil)
        #expect(rebuilt.state.sessions == full.1.sessions)
    }
}
