import CustodianAgent
import CustodianCore
import CustodianTestSupport
import Foundation
import Testing

@Suite("Policy files")
struct PolicyFileTests {
    static let policies = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("policies")

    static func policyFiles() -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: policies.path)) ?? []).filter { $0.hasSuffix(".toml") }
            .sorted()
    }

    @Test("policies/ is not empty") func notEmpty() {
        #expect(Self.policyFiles().contains("default.toml"))
    }

    @Test("every file in policies/ loads", arguments: policyFiles())
    func loads(_ name: String) throws {
        let loaded = try PolicyFile.load(path: Self.policies.appendingPathComponent(name).path)
        #expect(loaded.hash.count == 64)
        #expect(!loaded.policy.assets.isEmpty)
    }

    @Test("the default policy compiled into the binary is policies/default.toml")
    func embeddedDefault() throws {
        let file = try String(contentsOf: Self.policies.appendingPathComponent("default.toml"), encoding: .utf8)
        #expect(DefaultPolicy.text == file)
    }

    @Test("the default policy's documented examples: allow_exact_sum allowed, reject_sum_off_by_one_unit refused")
    func defaultExamples() throws {
        let policy = try PolicyFile.parse(Array(DefaultPolicy.text.utf8)).policy
        let agent = try #require(Address(eip55: "0xFdEc8F58fA4b3bf07DD11eAF4c562Ee674e2C638"))
        for (name, allowed) in [("allow_exact_sum.json", true), ("reject_sum_off_by_one_unit.json", false)] {
            let vector = try VectorFiles.load("close_policy", name)
            let session = try #require(vector["session"] as? [String: Any])
            var state = LedgerState()
            let create = try NitroRPCv0Reader().read(Array(try #require(session["create_message"] as? String).utf8))
                .get()
            let createNow = try #require((session["create_now_ms"] as? NSNumber)?.uint64Value)
            guard case .allow(let effect) = policy.evaluate(create, state: state, agent: agent, nowMs: createNow) else {
                Issue.record("create refused by the default policy")
                return
            }
            state.apply(effect, atMs: createNow)
            let close = try NitroRPCv0Reader().read(Array(try #require(vector["message"] as? String).utf8)).get()
            let now = try #require((vector["now_ms"] as? NSNumber)?.uint64Value)
            if case .allow = policy.evaluate(close, state: state, agent: agent, nowMs: now) {
                #expect(allowed, "\(name)")
            } else {
                #expect(!allowed, "\(name)")
            }
        }
    }

    @Test("fail closed: unknown keys, wrong types, bad amounts, no assets, other versions")
    func refusals() {
        let base = """
            version = 1
            [requests]
            methods = ["close_app_session"]
            [assets.usdc]
            decimals = 6

            """
        #expect((try? PolicyFile.parse(Array(base.utf8))) != nil)
        let broken = [
            base.replacingOccurrences(of: "version = 1", with: "version = 2"),
            base.replacingOccurrences(of: "version = 1", with: ""),
            base + "[extra]\n",
            base.replacingOccurrences(of: "decimals = 6", with: "decimals = 6\nmax_alocation = \"1\""),
            base.replacingOccurrences(of: "decimals = 6", with: "decimals = 6\nmax_allocation = 100"),
            base.replacingOccurrences(of: "decimals = 6", with: "decimals = 6\nmax_allocation = \"1e2\""),
            base.replacingOccurrences(of: "decimals = 6", with: "decimals = \"6\""),
            base.replacingOccurrences(of: "\"close_app_session\"", with: "\"transfer\""),
            base.replacingOccurrences(of: "[assets.usdc]\ndecimals = 6\n", with: ""),
            base + "[counterparties]\nallow = [\"0xfdec8f58fa4b3bf07dd11eaf4c562ee674e2c638\"]\n",
            base + "[velocity]\nwindow_s = 10\nmax_own_loss = { eth = \"1\" }\n",
            "version = 1\nversion = 1\n",
        ]
        for text in broken {
            #expect((try? PolicyFile.parse(Array(text.utf8))) == nil, "\(text)")
        }
    }
}
