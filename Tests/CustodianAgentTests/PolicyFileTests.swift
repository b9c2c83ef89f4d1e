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

    /// The smallest policy that reads: every table, one asset.
    static let minimal = """
        version = 1
        [requests]
        methods = ["close_app_session"]
        [sessions]
        [assets.usdc]
        decimals = 6
        [counterparties]
        allow = []
        [velocity]
        window_s = 86400
        max_own_loss = {}

        """

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

    @Test("fail closed: unknown keys, wrong types, bad amounts, no assets, other versions, missing tables")
    func refusals() {
        let base = Self.minimal
        #expect((try? PolicyFile.parse(Array(base.utf8))) != nil)
        var broken: [String] = []
        func add(_ text: String) { broken.append(text) }
        add(
            base.replacingOccurrences(of: "version = 1", with: "version = 2"))
        add(
            base.replacingOccurrences(of: "version = 1", with: ""))
        add(
            base + "[extra]\n")
        add(
            base.replacingOccurrences(of: "decimals = 6", with: "decimals = 6\nmax_alocation = \"1\""))
        add(
            base.replacingOccurrences(of: "decimals = 6", with: "decimals = 6\nmax_allocation = 100"))
        add(
            base.replacingOccurrences(of: "decimals = 6", with: "decimals = 6\nmax_allocation = \"1e2\""))
        add(
            base.replacingOccurrences(of: "decimals = 6", with: "decimals = \"6\""))
        add(
            base.replacingOccurrences(of: "\"close_app_session\"", with: "\"transfer\""))
        add(
            base.replacingOccurrences(of: "[assets.usdc]\ndecimals = 6\n", with: ""))
        add(
            base.replacingOccurrences(
                of: "allow = []", with: "allow = [\"0xfdec8f58fa4b3bf07dd11eaf4c562ee674e2c638\"]"))
        add(
            base.replacingOccurrences(of: "max_own_loss = {}", with: "max_own_loss = { eth = \"1\" }"))
        add(
            "version = 1\nversion = 1\n")
        // Every table is required, and the keys whose absence would loosen it.
        add(
            base.replacingOccurrences(of: "[sessions]\n", with: ""))
        add(
            base.replacingOccurrences(of: "[counterparties]\nallow = []\n", with: ""))
        add(
            base.replacingOccurrences(of: "allow = []\n", with: ""))
        add(
            base.replacingOccurrences(of: "[velocity]\nwindow_s = 86400\nmax_own_loss = {}\n", with: ""))
        add(
            base.replacingOccurrences(of: "max_own_loss = {}\n", with: ""))
        // Cut off in the middle of its last line.
        add(
            String(base.dropLast()))
        for text in broken {
            #expect((try? PolicyFile.parse(Array(text.utf8))) == nil, "\(text)")
        }
    }

    @Test(
        "every policy in policies/ cut off at each line boundary and at random points is refused",
        arguments: policyFiles())
    func cutOff(_ name: String) throws {
        let bytes = Array(try Data(contentsOf: Self.policies.appendingPathComponent(name)))
        #expect((try? PolicyFile.parse(bytes)) != nil)
        var cuts = Set(bytes.indices.filter { bytes[$0] == 0x0A }.map { $0 + 1 })
        cuts.remove(bytes.count)
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<200 { cuts.insert(Int.random(in: 0..<bytes.count, using: &generator)) }
        #expect(cuts.count > 20)
        for cut in cuts.sorted() {
            let prefix = Array(bytes[0..<cut])
            // A cut inside the trailing comment lines or blank lines changes nothing the policy says.
            let rest = String(decoding: bytes[cut...], as: UTF8.self)
            let onlyComments = rest.split(separator: "\n").allSatisfy {
                $0.trimmingCharacters(in: .whitespaces).isEmpty
                    || $0.trimmingCharacters(in: .whitespaces).hasPrefix("#")
            }
            if onlyComments && prefix.last == 0x0A { continue }
            #expect((try? PolicyFile.parse(prefix)) == nil, "\(name) cut at byte \(cut) of \(bytes.count)")
        }
    }

    @Test("a policy file others can write is refused, with the chmod that fixes it")
    func writableByOthers() throws {
        let directory = try TemporaryDirectory()
        let path = directory.path + "/policy.toml"
        try DefaultPolicy.text.write(toFile: path, atomically: false, encoding: .utf8)
        chmod(path, 0o646)
        #expect(throws: PolicyFileError.self) { try PolicyFile.load(path: path) }
        do {
            _ = try PolicyFile.load(path: path)
        } catch {
            #expect(error.message.contains("chmod o-w \(path)"), "\(error)")
        }
        chmod(path, 0o644)
        #expect((try? PolicyFile.load(path: path)) != nil)
    }
}

/// `[channels]` (CONTRACT §5): read and checked as every table is; the agent does not sign channel states yet.
@Suite("Policy files: [channels]")
struct ChannelPolicyFileTests {
    static let base = PolicyFileTests.minimal

    static let channels = """
        [channels]
        node = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"
        min_challenge_s = 86400
        [channels.assets.usdc]
        blockchain_id = 8453
        token = "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913"
        max_transfer = "1000"
        max_outflow = "5000"
        [channels.transfers]
        allow = ["0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"]

        """

    @Test("the CONTRACT's example reads into the values it gives; absent, channels are refused")
    func reads() throws {
        #expect(try PolicyFile.parse(Array(Self.base.utf8)).policy.channels == nil)
        let policy = try PolicyFile.parse(Array((Self.base + Self.channels).utf8)).policy
        let channels = try #require(policy.channels)
        #expect(channels.node.checksummed == "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC")
        #expect(channels.minChallengeSeconds == 86_400)
        let usdc = try #require(channels.assets["usdc"])
        #expect(usdc.chainID == 8453 && usdc.decimals == 6)
        #expect(usdc.token == Address(anyCase: "0x833589fcd6edb6e08f4c7c32d4f71b54bda02913"))
        #expect(usdc.maxTransfer == Amount("1000") && usdc.maxOutflow == Amount("5000"))
        #expect(channels.transferRecipients.map(\.checksummed) == ["0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"])
    }

    @Test("fail closed: an unknown key, no node, an asset [assets] lacks, a token not in EIP-55, a short challenge")
    func refusals() {
        let cases: [(String, String)] = [
            ("unknown key", Self.channels.replacingOccurrences(of: "min_challenge_s", with: "min_challenge")),
            (
                "no node",
                Self.channels.replacingOccurrences(
                    of: "node = \"0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC\"\n", with: "")
            ),
            (
                "unlisted asset",
                Self.channels.replacingOccurrences(of: "channels.assets.usdc", with: "channels.assets.eth")
            ),
            (
                "token case",
                Self.channels.replacingOccurrences(
                    of: "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913", with: "0x833589FCD6EDB6E08F4C7C32D4F71B54BDA02913"
                )
            ),
            ("short challenge", Self.channels.replacingOccurrences(of: "= 86400", with: "= 60")),
            (
                "recipient",
                Self.channels.replacingOccurrences(
                    of: "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266", with: "0xf39fd6e51aad88f6f4ce6ab8827279cfffb9226")
            ),
            ("amount", Self.channels.replacingOccurrences(of: "\"1000\"", with: "1000")),
        ]
        for (what, text) in cases {
            #expect(throws: PolicyFileError.self, "\(what)") { try PolicyFile.parse(Array((Self.base + text).utf8)) }
        }
    }
}
