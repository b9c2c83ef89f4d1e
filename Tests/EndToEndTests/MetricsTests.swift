import Foundation
import Testing

/// `custodian metrics` after a scripted run: each value against what the run did, the text read by Prometheus'
/// own Python parser (prometheus-client).
@Suite("Metrics", .serialized)
struct MetricsTests {
    /// The samples of a Prometheus text exposition, as prometheus-client's parser reads them: name, labels, value.
    static func samples(_ text: String, in workspace: Workspace) throws -> [(String, [String: String], Double)] {
        let file = try workspace.write("metrics-\(UUID().uuidString).prom", text)
        let script = """
            import json, sys
            from prometheus_client.parser import text_string_to_metric_families
            text = open(sys.argv[1]).read()
            print(json.dumps([[s.name, s.labels, s.value] for f in text_string_to_metric_families(text) for s in f.samples]))
            """
        let output = try Harness.run(try Harness.python(), ["-c", script, file])
        guard output.status == 0 else { throw HarnessError("the Prometheus parser refused the text: \(output.stderr)") }
        guard let rows = try JSONSerialization.jsonObject(with: Data(output.stdout.utf8)) as? [[Any]] else {
            throw HarnessError("no samples")
        }
        return rows.compactMap { row in
            guard row.count == 3, let name = row[0] as? String, let labels = row[1] as? [String: String],
                let value = (row[2] as? NSNumber)?.doubleValue
            else { return nil }
            return (name, labels, value)
        }
    }

    static func value(
        _ samples: [(String, [String: String], Double)], _ name: String, _ labels: [String: String] = [:]
    ) -> Double? {
        samples.first { sample in sample.0 == name && labels.allSatisfy { key, value in sample.1[key] == value } }?.2
    }

    @Test("a scripted run's decisions, refusals, batches and ledger gauges are what custodian metrics reports")
    func scriptedRun() throws {
        let workspace = try Workspace()
        let key = try EndToEndTests.importKeyA(workspace)
        let policy = try workspace.write("policy.toml", EndToEndTests.policy)
        let socket = workspace.path + "/agent.sock"
        let agent = try RunningAgent(
            arguments: [
                "--key-file", key.0, "--policy", policy, "--state-dir", workspace.path + "/state",
                "--passphrase-file", key.1,
            ], socket: socket, logFile: workspace.path + "/agent.log")
        let before = try Self.samples(
            try Harness.custodian(["metrics", "--socket", socket]).stdout, in: workspace)

        // Three creates and two closes signed; two closes of unknown sessions and one unreadable message refused.
        let nonce = Messages.nowMs()
        var ids: [String] = []
        for offset in 0..<3 {
            let create = Messages.create(nonce: nonce + UInt64(offset))
            let signed = try EndToEndTests.sign(agent, create, in: workspace)
            #expect(signed.status == 0, "\(signed.stderr)")
            ids.append(try DurabilityTests.sessionID(of: create))
        }
        for id in ids.prefix(2) {
            #expect(try EndToEndTests.sign(agent, Messages.close(id: id, "75", "75"), in: workspace).status == 0)
        }
        let unknown = "0x" + String(repeating: "ab", count: 32)
        for _ in 0..<2 {
            let refused = try EndToEndTests.sign(agent, Messages.close(id: unknown, "75", "75"), in: workspace)
            #expect(refused.stderr.contains("policy.session_unknown"), "\(refused.stderr)")
        }
        #expect(try EndToEndTests.sign(agent, "{\"req\":[1,", in: workspace).stderr.contains("payload.malformed"))
        // A v1 frame this policy does not allow: counted under its own protocol.
        let frame = V1Messages.create(nonce: nonce)
        #expect(try EndToEndTests.sign(agent, frame, in: workspace).stderr.contains("payload.method_not_allowed"))
        // Two rollovers asked for: counted by reason.
        for _ in 0..<2 { #expect(try Harness.custodian(["audit", "rotate", "--socket", socket]).status == 0) }

        let output = try Harness.custodian(["metrics", "--socket", socket])
        #expect(output.status == 0, "\(output.stderr)")
        let after = try Self.samples(output.stdout, in: workspace)
        func decisions(_ method: String, _ outcome: String, _ wire: String = "nitrorpc/v0") -> Double? {
            Self.value(after, "custodian_decisions_total", ["method": method, "outcome": outcome, "protocol": wire])
        }
        #expect(decisions("create_app_session", "allow") == 3)
        #expect(decisions("close_app_session", "allow") == 2)
        #expect(decisions("close_app_session", "deny") == 2)
        #expect(decisions("unreadable", "deny", "unknown") == 1, "not JSON: no protocol")
        #expect(decisions("app_sessions.v1.create_app_session", "deny", "nitrolite/v1") == 1)
        #expect(Self.value(after, "custodian_refusals_total", ["reason": "policy.session_unknown"]) == 2)
        #expect(Self.value(after, "custodian_refusals_total", ["reason": "payload.malformed"]) == 1)
        // Every record went through a group-commit batch: the histogram's sum grew by the 9 decisions and the 3
        // records of each rollover (rotate, the sealing checkpoint, the next segment's first record), its count by
        // the batches (one sync each), and the sync-latency histogram counted the same batches.
        let recordsBefore = Self.value(before, "custodian_commit_batch_records_sum") ?? 0
        let batchesBefore = Self.value(before, "custodian_commit_batch_records_count") ?? 0
        let records = (Self.value(after, "custodian_commit_batch_records_sum") ?? 0) - recordsBefore
        let batches = (Self.value(after, "custodian_commit_batch_records_count") ?? 0) - batchesBefore
        #expect(records == 9 + 2 * 3, "records in batches: \(records)")
        #expect(batches >= 1 && batches <= 11)
        let syncs =
            (Self.value(after, "custodian_sync_seconds_count") ?? 0)
            - (Self.value(before, "custodian_sync_seconds_count") ?? 0)
        #expect(syncs == batches, "one sync per batch")
        #expect(
            Self.value(after, "custodian_sync_seconds_bucket", ["le": "+Inf"])
                == Self.value(after, "custodian_sync_seconds_count"))
        // The ledger's gauges: one session open, two closed; A's funding at risk is the open session's 100 usdc.
        #expect(Self.value(after, "custodian_open_sessions") == 1)
        #expect(Self.value(after, "custodian_closed_sessions") == 2)
        #expect(Self.value(after, "custodian_open_funding", ["asset": "usdc"]) == 100)
        #expect((Self.value(after, "custodian_start_seconds") ?? 0) > 0)
        #expect(Self.value(after, "custodian_audit_rollovers_total", ["reason": "operator"]) == 2)
        #expect(Self.value(after, "custodian_connections") ?? -1 >= 1, "the metrics call's own connection")
        #expect(agent.stop() == 0)
    }
}
