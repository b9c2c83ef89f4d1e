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

    @Test(
        "every file in policies/ has its documented examples, one it allows and one it refuses",
        arguments: policyFiles())
    func examples(_ name: String) throws {
        let stem = String(name.dropLast(".toml".count))
        let policy = try PolicyFile.load(path: Self.policies.appendingPathComponent(name).path).policy
        let folder = "../../policies/examples/" + stem
        let examples = VectorFiles.names(folder)
        #expect(examples.contains { $0.hasPrefix("allow_") }, "\(name) documents no allowed example")
        #expect(examples.contains { $0.hasPrefix("refuse_") }, "\(name) documents no refused example")
        for example in examples {
            let vector = try VectorFiles.load(folder, example)
            #expect((vector["expect"] as? String == "allow") == example.hasPrefix("allow_"), "\(example)")
            try PolicyCaseTests.check(vector, policy: policy, name: "\(stem)/\(example)")
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
