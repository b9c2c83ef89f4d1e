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
        #expect(checkpoints.allSatisfy { AuditChain.verifyCheckpoint($0, address: address) == nil })
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
        guard case .signed(_, _, _, let seq) = Self.sign(engine, try Self.vectorText("sign", "close_v2.json", "req"))
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
}
