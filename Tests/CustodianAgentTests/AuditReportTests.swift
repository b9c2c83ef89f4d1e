import CustodianAgent
import CustodianCore
import CustodianCrypto
import CustodianTestSupport
import Foundation
import Testing

/// `custodian audit report` over a scripted month of decisions (v0 and v1 sessions, losses, refusals of several
/// reasons, an operator release): its totals equal a count made here from the log's lines, and the page renders in
/// a real browser (headless Chromium from Debian's packages) with no error, no script and nothing fetched.
@Suite("The audit report", .serialized)
struct AuditReportTests {
    static let a = "0xFdEc8F58fA4b3bf07DD11eAF4c562Ee674e2C638"
    static let b = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
    static let c = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
    static let start: UInt64 = 1_793_491_200_000  // 2026-11-01T00:00:00Z
    static let policy = """
        version = 1
        [requests]
        methods = ["create_app_session", "submit_app_state", "close_app_session", "app_sessions.v1.create_app_session", "app_sessions.v1.submit_app_state", "app_sessions.v1.submit_deposit_state"]
        max_age_ms = 30000
        [sessions]
        [assets.usdc]
        decimals = 6
        max_own_loss = "40"
        [counterparties]
        allow = []
        [velocity]
        window_s = 86400
        max_own_loss = { usdc = "150" }

        """

    final class Clock: @unchecked Sendable {
        var now: UInt64 = AuditReportTests.start
    }

    /// Thirty days of decisions through the engine, at times the clock gives; the log and the v1 session ids.
    static func month(in directory: TemporaryDirectory) throws -> [String] {
        let clock = Clock()
        let log = try AuditLog(path: directory.path + "/audit.log", chain: AuditChain())
        let engine = Engine(
            key: try signingKey(hex: keyAHex), policy: try PolicyFile.parse(Array(Self.policy.utf8)),
            state: LedgerState(), log: log, checkpointEvery: 50, clock: { clock.now })
        try engine.start(version: "test")
        func sign(_ text: String) { _ = EngineTests.sign(engine, Array(text.utf8)) }
        func pair(_ x: String, _ y: String, counterparty: String = b) -> String {
            #"[{"participant":"\#(a)","asset":"usdc","amount":"\#(x)"},{"participant":"\#(counterparty)","asset":"usdc","amount":"\#(y)"}]"#
        }
        var random = SplitMix64(state: 0x2E9)
        var v1Sessions: [String] = []
        for day in 0..<30 {
            for game in 0..<Int.random(in: 2...6, using: &random) {
                clock.now =
                    start + UInt64(day) * 86_400_000 + UInt64(game) * 3_600_000
                    + UInt64.random(in: 0..<3_000_000, using: &random)
                let counterparty = game % 3 == 0 ? c : b
                let nonce = clock.now
                let definition =
                    #"{"application":"chess","protocol":"NitroRPC/0.4","participants":["\#(a)","\#(counterparty)"],"weights":[50,50],"quorum":100,"challenge":86400,"nonce":\#(nonce)}"#
                let create =
                    #"[1,"create_app_session",{"definition":\#(definition),"allocations":\#(pair("50", "50", counterparty: counterparty))},\#(clock.now)]"#
                sign(create)
                guard case .create(let created, _, _) = try RequestReader().read(Array(create.utf8)).get().body else {
                    throw VectorError("not a create")
                }
                let id = created.appSessionID
                clock.now += 60_000
                switch Int.random(in: 0..<6, using: &random) {
                case 0:  // left open
                    break
                case 1:  // a close one unit short, refused, then the right one
                    sign(
                        #"[2,"close_app_session",{"app_session_id":"\#(id)","allocations":\#(pair("50", "49.999999", counterparty: counterparty))},\#(clock.now)]"#
                    )
                    sign(
                        #"[3,"close_app_session",{"app_session_id":"\#(id)","allocations":\#(pair("40", "60", counterparty: counterparty))},\#(clock.now)]"#
                    )
                case 2:  // a loss above max_own_loss, refused
                    sign(
                        #"[2,"close_app_session",{"app_session_id":"\#(id)","allocations":\#(pair("0", "100", counterparty: counterparty))},\#(clock.now)]"#
                    )
                case 3:  // a stale request
                    sign(
                        #"[2,"close_app_session",{"app_session_id":"\#(id)","allocations":\#(pair("50", "50", counterparty: counterparty))},\#(clock.now - 60_000)]"#
                    )
                case 4:  // malformed
                    sign(#"[2,"close_app_session",{"app_session_id":"\#(id)","allocations":"none"},\#(clock.now)]"#)
                default:
                    sign(
                        #"[2,"close_app_session",{"app_session_id":"\#(id)","allocations":\#(pair("45", "55", counterparty: counterparty))},\#(clock.now)]"#
                    )
                }
            }
            if day % 5 == 0 {
                clock.now += 600_000
                let create =
                    #"[1,1,"app_sessions.v1.create_app_session",{"definition":{"application_id":"chess","participants":[{"wallet_address":"\#(a)","signature_weight":1},{"wallet_address":"\#(b)","signature_weight":1}],"quorum":2,"nonce":"\#(clock.now)"},"session_data":"","quorum_sigs":[]},\#(clock.now)]"#
                sign(create)
                guard case .create(let definition, _, _) = try RequestReader().read(Array(create.utf8)).get().body
                else {
                    throw VectorError("not a create")
                }
                let id = definition.appSessionID
                v1Sessions.append(id)
                func update(_ intent: Int, _ version: Int, _ allocations: String) -> String {
                    let method = intent == 1 ? "submit_deposit_state" : "submit_app_state"
                    let extra = intent == 1 ? #","user_state":{}"# : ""
                    return
                        #"[1,\#(version),"app_sessions.v1.\#(method)",{"app_state_update":{"app_session_id":"\#(id)","intent":\#(intent),"version":"\#(version)","allocations":\#(allocations),"session_data":""}\#(extra),"quorum_sigs":[]},\#(clock.now)]"#
                }
                sign(
                    update(
                        1, 2,
                        pair("100", "0").replacingOccurrences(
                            of: #",{"participant":"\#(b)","asset":"usdc","amount":"0"}"#, with: "")))
                sign(update(0, 3, pair("70", "30")))
                sign(update(3, 4, pair("60", "40")))  // refused: a close must equal the current state
                sign(update(3, 4, pair("70", "30")))
            }
        }
        engine.stop()
        return v1Sessions
    }

    /// What the log says, counted here from its lines.
    static func count(_ path: String, since: UInt64? = nil, until: UInt64? = nil) throws
        -> (allowed: Int, refused: Int, reasons: [String: Int], operators: Int)
    {
        var result = (allowed: 0, refused: 0, reasons: [String: Int](), operators: 0)
        for line in try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n") {
            let record = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            let time = try #require((record["time_ms"] as? NSNumber)?.uint64Value)
            if let since, time < since { continue }
            if let until, time >= until { continue }
            switch record["event"] as? String {
            case "sign":
                if record["decision"] as? String == "allow" {
                    result.allowed += 1
                } else {
                    result.refused += 1
                    result.reasons[record["reason"] as? String ?? "(none)", default: 0] += 1
                }
            case "operator": result.operators += 1
            default: break
            }
        }
        return result
    }

    static func attribute(_ name: String, in html: String) -> Int? {
        guard let range = html.range(of: "\(name)=\"") else { return nil }
        return Int(html[range.upperBound...].prefix { $0 != "\"" })
    }

    @Test("a month of decisions: the totals equal the log's, and Chromium renders the page")
    func month() throws {
        let directory = try TemporaryDirectory()
        let v1Sessions = try Self.month(in: directory)
        // An operator action: the last v1 close released (with the agent stopped).
        let last = try #require(v1Sessions.last)
        _ = try StateDirectory.release(
            directory.path, id: last, version: 4, forgetSession: false, reason: "the close was never sent")
        let velocity = try PolicyFile.parse(Array(Self.policy.utf8)).policy.velocity
        let (bytes, totals) = AuditReport.render(
            paths: [directory.path],
            options: AuditReport.Options(velocity: velocity, generatedAtMs: Self.start + 40 * 86_400_000))
        let html = String(decoding: bytes, as: UTF8.self)
        let counted = try Self.count(directory.path + "/audit.log")
        #expect(counted.allowed > 150 && counted.refused > 30, "a month of decisions: \(counted)")
        #expect(
            Set(counted.reasons.keys).isSuperset(of: [
                "policy.sum_mismatch", "policy.own_loss_exceeded", "payload.stale", "payload.malformed",
                "policy.close_not_current",
            ]))
        #expect(totals.allowed == counted.allowed && totals.refused == counted.refused)
        #expect(totals.byReason == counted.reasons)
        #expect(totals.operatorActions == 1 && counted.operators == 1)
        #expect(Self.attribute("data-total-allowed", in: html) == counted.allowed)
        #expect(Self.attribute("data-total-refused", in: html) == counted.refused)
        #expect(Self.attribute("data-total", in: html) == counted.allowed + counted.refused)
        for (reason, number) in counted.reasons {
            #expect(html.contains("data-reason=\"\(reason)\">\(number)</td>"), "\(reason): \(number)")
        }
        #expect(html.contains("data-verified=\"ok\""))
        #expect(html.contains("class=\"gauge\""), "velocity use against the policy's cap")
        // Self-contained: no script, no stylesheet or image fetched, no link out.
        for forbidden in ["<script", "<link", "src=", "href=", "url(", "@import"] {
            #expect(!html.contains(forbidden), "\(forbidden)")
        }
        // A period: the second week only.
        let since = Self.start + 7 * 86_400_000
        let until = Self.start + 14 * 86_400_000
        let (_, week) = AuditReport.render(
            paths: [directory.path],
            options: AuditReport.Options(sinceMs: since, untilMs: until, generatedAtMs: Self.start))
        let weekCounted = try Self.count(directory.path + "/audit.log", since: since, until: until)
        #expect(week.allowed == weekCounted.allowed && week.refused == weekCounted.refused)
        #expect(week.allowed < totals.allowed && week.operatorActions == 0)

        try Self.renderInBrowser(bytes)
    }

    @Test(
        "a log with odd times (1970 and year 2500) is drawn in a few hundred bars, and one that does not verify says so"
    )
    func oddTimes() throws {
        let directory = try TemporaryDirectory()
        let log = try AuditLog(path: directory.path + "/audit.log", chain: AuditChain())
        for time: UInt64 in [1, 2, 16_725_225_600_000, 16_725_225_600_001] {
            log.stage(event: "sign", timeMs: time) { writer in
                writer.field("decision", time.isMultiple(of: 2) ? "deny" : "allow")
                writer.field("reason", "policy.sum_mismatch")
            }
        }
        try log.commit()
        let (bytes, totals) = AuditReport.render(
            paths: [directory.path + "/audit.log"], options: AuditReport.Options(generatedAtMs: 0))
        let html = String(decoding: bytes, as: UTF8.self)
        #expect(totals.allowed == 2 && totals.refused == 2)
        #expect(html.components(separatedBy: "<rect").count - 1 <= 2 * 402, "bars")
        #expect(html.contains("data-verified=\"failed\""), "allowances without req do not verify")
    }

    /// Renders `html` with headless Chromium: the DOM it built holds every section and chart, its log shows no
    /// console error, and the screenshot is a PNG (copied to `CUSTODIAN_REPORT_SCREENSHOT` when set).
    static func renderInBrowser(_ html: [UInt8]) throws {
        let environment = ProcessInfo.processInfo.environment
        let browser =
            environment["CUSTODIAN_CHROMIUM"]
            ?? ["/usr/bin/chromium", "/usr/bin/chromium-browser"].first {
                FileManager.default.isExecutableFile(atPath: $0)
            }
        guard let browser else {
            Issue.record("no Chromium: scripts/setup --browser installs Debian's chromium (scripts/test does)")
            return
        }
        let directory = try TemporaryDirectory()
        let page = directory.path + "/report.html"
        try Data(html).write(to: URL(fileURLWithPath: page))
        let common = [
            "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars",
            "--enable-logging=stderr", "--v=0", "--user-data-dir=\(directory.path)/profile",
        ]
        let dom = try run(browser, common + ["--dump-dom", "file://\(page)"])
        #expect(dom.status == 0, "\(dom.stderr)")
        for section in [
            "Decisions", "Refusals by reason", "Largest committed losses", "Velocity use",
            "Funding at risk per counterparty", "Operator actions", "Verification",
        ] {
            #expect(dom.stdout.contains("<h2>\(section)</h2>"), "\(section)")
        }
        #expect(dom.stdout.components(separatedBy: "<svg").count - 1 >= 4, "the charts are in the DOM")
        for line in (dom.stderr + "\n").split(separator: "\n")
        where line.contains("CONSOLE") || line.contains("Uncaught") {
            Issue.record("the browser reported: \(line)")
        }
        let png = directory.path + "/report.png"
        let shot = try run(browser, common + ["--window-size=1000,3400", "--screenshot=\(png)", "file://\(page)"])
        #expect(shot.status == 0, "\(shot.stderr)")
        let image = try Data(contentsOf: URL(fileURLWithPath: png))
        #expect(image.starts(with: [0x89, 0x50, 0x4E, 0x47]) && image.count > 20_000, "a PNG of the page")
        if let keep = environment["CUSTODIAN_REPORT_SCREENSHOT"] {
            try? FileManager.default.removeItem(atPath: keep)
            try image.write(to: URL(fileURLWithPath: keep))
        }
    }

    static func run(_ executable: String, _ arguments: [String]) throws -> ProcessOutput {
        try ProcessRunner.run(executable, arguments)
    }
}
