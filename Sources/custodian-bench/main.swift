// custodian-bench: tools for bench/ (not part of the agent).
//   custodian-bench fill-log --key-file K --passphrase-file P --policy F --state-dir D --records N
//                            [--snapshot-every M --crash]
//       writes N real decisions (creates and closes of two-party sessions) through the engine into D's audit log
//       (segments of 256 MiB as the agent's default, or --segment-max-bytes N; 0 for one file);
//       with --snapshot-every, periodic ledger snapshots as the agent writes them; with --crash, exits without
//       a clean stop (no stop record, no final snapshot), as after a crash
//   custodian-bench replay --state-dir D
//       reads, verifies and replays D's audit log as the agent does at start; prints the seconds it took
//   custodian-bench requests --state-dir D [--records N] [--rounds R]
//       the first N allowances' requests of D's audit log, held in memory: prints microseconds per request to read
//       (the strict reader) and to replay (the policy, applied to a ledger built from them)
//   custodian-bench parse [--rounds R]
//       the strict reader on a 64 KiB line of as many distinct keys as fit against an ordinary 64 KiB request (600
//       allocations): microseconds per line and their ratio
//   custodian-bench read --message-file F [--rounds R]
//       microseconds per read of the message in F by the request reader (either protocol: parse, checks, hashes)
//   custodian-bench keccak --bytes B --iterations N
//       prints nanoseconds per Keccak-256 of B bytes
import CustodianAgent
import CustodianCore
import CustodianCrypto
import Dispatch
import Foundation

func option(_ name: String) -> String? {
    let arguments = CommandLine.arguments
    guard let index = arguments.firstIndex(of: name), index + 1 < arguments.count else { return nil }
    return arguments[index + 1]
}

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("custodian-bench: \(message)\n".utf8))
    exit(1)
}

/// VmRSS of this process, in KiB.
func residentKiB() -> Int {
    guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
    for line in status.split(separator: "\n") where line.hasPrefix("VmRSS:") {
        return Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "") ?? 0
    }
    return 0
}

/// The snapshot_seq of the newest `snapshot` record in the last 1 MiB of a log (0: none there).
func newestSnapshotSeq(_ path: String) -> UInt64 {
    guard let handle = FileHandle(forReadingAtPath: path) else { return 0 }
    defer { try? handle.close() }
    let size = (try? handle.seekToEnd()) ?? 0
    try? handle.seek(toOffset: size > 1 << 20 ? size - (1 << 20) : 0)
    let text = String(decoding: handle.readDataToEndOfFile(), as: UTF8.self)
    var newest: UInt64 = 0
    for line in text.split(separator: "\n") where line.contains("\"event\":\"snapshot\"") {
        if let range = line.range(of: "\"snapshot_seq\":") {
            newest = UInt64(line[range.upperBound...].prefix(while: { $0.isNumber })) ?? newest
        }
    }
    return newest
}

func seconds(since start: DispatchTime) -> Double {
    Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e9
}

let a = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"

switch CommandLine.arguments.dropFirst().first {
case "fill-log":
    guard let keyFile = option("--key-file"), let passphraseFile = option("--passphrase-file"),
        let policyFile = option("--policy"), let stateDir = option("--state-dir"),
        let records = option("--records").flatMap({ Int($0) })
    else { fail("fill-log --key-file K --passphrase-file P --policy F --state-dir D --records N") }
    do {
        let key = try KeyFile.open(try FileIO.readAll(keyFile), passphrase: try SecretFile.read(passphraseFile))
        let agent = key.address.checksummed
        try FileIO.ensurePrivateDirectory(stateDir)
        let log = try AuditLog(path: stateDir + "/audit.log", chain: AuditChain())
        let start: UInt64 = 1_733_000_000_000
        final class Clock: @unchecked Sendable { var now: UInt64 = 1_733_000_000_000 }
        let clock = Clock()
        let snapshotEvery = option("--snapshot-every").flatMap { UInt64($0) } ?? 0
        // Segments as the agent's default (256 MiB) unless given; 0 keeps one file.
        let segmentBytes = option("--segment-max-bytes").flatMap { Int($0) } ?? SegmentLimits().maxBytes
        let engine = Engine(
            key: key, policy: try PolicyFile.load(path: policyFile), state: LedgerState(), log: log,
            checkpointEvery: 1000, snapshotPath: snapshotEvery > 0 ? stateDir + "/ledger.snapshot" : nil,
            snapshotEvery: snapshotEvery, segmentLimits: SegmentLimits(maxBytes: segmentBytes), clock: { clock.now })
        try engine.start(version: "bench")
        let group = DispatchGroup()
        var pending = 0
        let began = DispatchTime.now()
        for index in 0..<(records / 2) {
            let nonce = start + UInt64(index)
            let definition =
                "{\"application\":\"chess\",\"protocol\":\"NitroRPC/0.4\",\"participants\":[\"\(agent)\",\"\(a)\"],"
                + "\"weights\":[50,50],\"quorum\":100,\"challenge\":86400,\"nonce\":\(nonce)}"
            let create =
                "{\"req\":[\(2 * index + 1),\"create_app_session\",{\"definition\":\(definition),\"allocations\":["
                + "{\"participant\":\"\(agent)\",\"asset\":\"usdc\",\"amount\":\"100\"},"
                + "{\"participant\":\"\(a)\",\"asset\":\"usdc\",\"amount\":\"50\"}]},\(clock.now)],\"sig\":[]}"
            let id = Hex.encode(
                Keccak256.hash(
                    Array(
                        ("{\"application\":\"chess\",\"protocol\":\"NitroRPC/0.4\",\"participants\":[\"\(agent)\",\"\(a)\"],"
                            + "\"weights\":[50,50],\"quorum\":100,\"challenge\":86400,\"nonce\":\(nonce)}").utf8)),
                prefixed: true)
            let close =
                "{\"req\":[\(2 * index + 2),\"close_app_session\",{\"app_session_id\":\"\(id)\",\"allocations\":["
                + "{\"participant\":\"\(agent)\",\"asset\":\"usdc\",\"amount\":\"75.5\"},"
                + "{\"participant\":\"\(a)\",\"asset\":\"usdc\",\"amount\":\"74.5\"}]},\(clock.now)],\"sig\":[]}"
            for message in [create, close] {
                group.enter()
                pending += 1
                // Staged in runs and written together, as the server does with lines that arrive together.
                engine.sign(message: Array(message.utf8), peer: nil, deferWrite: true) { outcome in
                    if case .signed = outcome {} else { fail("a fill request was not signed: \(outcome)") }
                    group.leave()
                }
            }
            if pending % 200 == 0 { engine.writeStaged() }
            if pending >= 2000 {
                engine.writeStaged()
                group.wait()
                pending = 0
            }
        }
        engine.writeStaged()
        group.wait()
        let filled = seconds(since: began)
        if CommandLine.arguments.contains("--crash") {
            // Let the last periodic snapshot due be written and vouched for (a crash at a moment when none is being
            // written), then go without a stop record.
            let due = engine.status().auditSeq - snapshotEvery
            let deadline = DispatchTime.now().uptimeNanoseconds + 120_000_000_000
            while snapshotEvery > 0, newestSnapshotSeq(stateDir + "/audit.log") <= due,
                DispatchTime.now().uptimeNanoseconds < deadline
            {
                Thread.sleep(forTimeInterval: 0.1)
            }
            print(String(format: "fill-log: %d records in %.1f s, then no clean stop", records, filled))
            exit(0)
        }
        engine.stop()
        print(String(format: "fill-log: %d records in %.1f s", records, filled))
    } catch {
        fail("\(error)")
    }
case "replay":
    guard let stateDir = option("--state-dir") else { fail("replay --state-dir D") }
    let began = DispatchTime.now()
    do {
        let rebuilt = try StateDirectory.readHistory(stateDir)
        print(
            String(
                format: "replay: %d records, %d sessions; verify and replay (streamed) %.2f s",
                rebuilt.chain.count, rebuilt.state.sessions.count, seconds(since: began)))
    } catch {
        fail("\(error)")
    }
case "verify":
    // The start's verification alone (no replay), and the ledger's own memory: the snapshot decoded alone.
    guard let stateDir = option("--state-dir") else { fail("verify --state-dir D") }
    let began = DispatchTime.now()
    var source = LineSource.log((try? Segments.list(directory: stateDir)) ?? [])
    switch AuditVerifier.verify(&source, address: nil) {
    case .success(let verified):
        print(
            String(
                format: "verify: %d records, %d decisions, %.2f s", verified.chain.count, verified.decisions,
                seconds(since: began)))
    case .failure(let error): fail("\(error)")
    }
    let before = residentKiB()
    let decodeBegan = DispatchTime.now()
    do {
        var bytes: [UInt8]? = try FileIO.readAll(stateDir + "/ledger.snapshot")
        let decoded = bytes.flatMap { LedgerState.decodeSnapshot($0) }
        bytes = nil
        let after = residentKiB()
        print(
            String(
                format: "snapshot: %d sessions decoded in %.2f s; the ledger holds %d MiB",
                decoded?.state.sessions.count ?? 0,
                seconds(since: decodeBegan), (after - before) / 1024))
        withExtendedLifetime(decoded) {}
    } catch {
        fail("\(error)")
    }
case "requests":
    guard let stateDir = option("--state-dir") else { fail("requests --state-dir D [--records N]") }
    let limit = option("--records").flatMap { Int($0) } ?? 200_000
    var requests: [(req: [UInt8], timeMs: UInt64)] = []
    var agent: Address?
    var source = LineSource.log((try? Segments.list(directory: stateDir)) ?? [])
    do {
        _ = try source.forEachLine { line, _ in
            guard requests.count < limit,
                let object = try? JSONSerialization.jsonObject(with: Data(line)) as? [String: Any]
            else { return requests.count < limit ? nil : AuditError.broken(line: 0, why: "enough") }
            if agent == nil, object["event"] as? String == "start" {
                agent = (object["address"] as? String).flatMap(Address.init(eip55:))
            }
            if object["decision"] as? String == "allow", let req = object["req"] as? String,
                let time = object["time_ms"] as? NSNumber
            {
                requests.append((Array(req.utf8), time.uint64Value))
            }
            return nil
        }
    } catch {
        fail("\(error)")
    }
    guard let agent else { fail("no start record names the agent") }
    let rounds = option("--rounds").flatMap { Int($0) } ?? 1
    let reader = RequestReader()
    var readSeconds = 0.0
    var replaySeconds = 0.0
    for _ in 0..<rounds {
        let readBegan = DispatchTime.now()
        var parsed: [SignableRequest] = []
        parsed.reserveCapacity(requests.count)
        for (req, _) in requests {
            guard case .success(let request) = reader.read(req) else { fail("a request does not read") }
            parsed.append(request)
        }
        readSeconds += seconds(since: readBegan)
        let replayBegan = DispatchTime.now()
        var state = LedgerState()
        for (index, request) in parsed.enumerated() {
            guard let effect = Policy.replay(request, state: state, agent: agent) else {
                fail("a request does not apply")
            }
            state.apply(effect, atMs: requests[index].timeMs)
        }
        replaySeconds += seconds(since: replayBegan)
    }
    let count = Double(requests.count * rounds)
    print(
        String(
            format: "requests: %d × %d; read %.2f µs, replay %.2f µs per request", requests.count, rounds,
            readSeconds * 1e6 / count, replaySeconds * 1e6 / count))
case "parse":
    let rounds = option("--rounds").flatMap { Int($0) } ?? 2000
    let participant = "0xFdEc8F58fA4b3bf07DD11eAF4c562Ee674e2C638"
    var allocations: [String] = []
    while allocations.joined(separator: ",").utf8.count < 60_000 {
        allocations.append("{\"participant\":\"\(participant)\",\"asset\":\"usdc\",\"amount\":\"1\"}")
    }
    let ordinary = Array(
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"status\",\"params\":{\"allocations\":[\(allocations.joined(separator: ","))]}}"
            .utf8)
    var keys: [String] = []
    while keys.joined(separator: ",").utf8.count < 60_000 { keys.append("\"k\(keys.count)\":0") }
    let manyKeys = Array(
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"status\",\"params\":{\(keys.joined(separator: ","))}}".utf8)
    func perLine(_ line: [UInt8]) -> Double {
        var best = Double.infinity
        for _ in 0..<5 {
            let began = DispatchTime.now()
            for _ in 0..<(rounds / 5) {
                guard case .success = StrictJSON.parse(line) else { fail("the line does not parse") }
            }
            best = min(best, seconds(since: began) / Double(rounds / 5))
        }
        return best
    }
    let ordinaryTime = perLine(ordinary)
    let manyKeysTime = perLine(manyKeys)
    print(
        String(
            format: "parse: ordinary %d-byte request %.1f µs; %d-byte line of %d keys %.1f µs: %.2f ×",
            ordinary.count, ordinaryTime * 1e6, manyKeys.count, keys.count, manyKeysTime * 1e6,
            manyKeysTime / ordinaryTime))
case "read":
    guard let path = option("--message-file"), let text = try? String(contentsOfFile: path, encoding: .utf8) else {
        fail("read --message-file F [--rounds R]")
    }
    let message = Array(text.utf8)
    let rounds = option("--rounds").flatMap { Int($0) } ?? 20_000
    let reader = RequestReader()
    guard case .success = reader.read(message) else { fail("the message is refused") }
    var best = Double.infinity
    for _ in 0..<5 {
        let began = DispatchTime.now()
        for _ in 0..<(rounds / 5) {
            guard case .success = reader.read(message) else { fail("the message is refused") }
        }
        best = min(best, seconds(since: began) / Double(rounds / 5))
    }
    print(String(format: "%.2f", best * 1e6))
case "keccak":
    let size = option("--bytes").flatMap { Int($0) } ?? 500
    let iterations = option("--iterations").flatMap { Int($0) } ?? 200_000
    var input = [UInt8](repeating: 0xA3, count: size)
    let began = DispatchTime.now()
    for index in 0..<iterations {
        input[index % size] &+= 1
        let digest = Keccak256.hash(input)
        input[0] ^= digest[0]
    }
    print(String(format: "keccak: %d bytes, %.0f ns per hash", size, seconds(since: began) * 1e9 / Double(iterations)))
default:
    fail("usage: custodian-bench fill-log|replay|keccak …")
}
