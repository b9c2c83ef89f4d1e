import CustodianCore
import Foundation

/// `custodian audit report`: one self-contained HTML page (no script, no network fetch: inline CSS and SVG) of what
/// the agent did, read from its audit logs after verifying them: decisions over time by outcome, refusals by reason,
/// the largest committed losses, velocity use per asset, this key's funding at risk per counterparty, operator
/// actions, and the verification with the checkpoints it relied on. Every plotted number is also in a table; the
/// totals carry `data-` attributes so that a program can read them back.
public enum AuditReport {
    /// What the report covers: decisions and operator actions with `since ≤ time_ms < until` (nil: unbounded); the
    /// ledger figures (committed loss, funding at risk) are those at the end of the logs.
    public struct Options: Sendable {
        public var sinceMs: UInt64?
        public var untilMs: UInt64?
        /// The velocity window and caps to show use against (from `--policy`); nil: a 24-hour window, no caps.
        public var velocity: Policy.Velocity?
        public var generatedAtMs: UInt64

        public init(
            sinceMs: UInt64? = nil, untilMs: UInt64? = nil, velocity: Policy.Velocity? = nil, generatedAtMs: UInt64
        ) {
            self.sinceMs = sinceMs
            self.untilMs = untilMs
            self.velocity = velocity
            self.generatedAtMs = generatedAtMs
        }
    }

    /// One log's reading: its verification (or why it failed) and what the report counts from it.
    struct LogReading {
        var path: String
        var verified: Result<AuditVerification, AuditError>
        var state: LedgerState
        var decisions: [Decision] = []
        var operators: [OperatorAction] = []
    }

    struct Decision {
        var timeMs: UInt64
        var allowed: Bool
        var reason: String?
        var method: String
        var wire: String
    }

    struct OperatorAction {
        var timeMs: UInt64
        var action: String
        var session: String
        var reason: String
        var uid: String
    }

    /// The totals the page shows (what a test compares with its own count of the logs).
    public struct Totals: Sendable, Equatable {
        public var allowed = 0
        public var refused = 0
        public var byReason: [String: Int] = [:]
        public var operatorActions = 0
    }

    /// Reads and verifies each path (a log file, or a state directory with its anchor and snapshots) and renders the
    /// page. A log that does not verify is reported as such, with the records read before the first bad one.
    public static func render(paths: [String], options: Options) -> (html: [UInt8], totals: Totals) {
        let readings = paths.map { read($0, options: options) }
        return page(readings, options: options)
    }

    static func read(_ path: String, options: Options) -> LogReading {
        var isDirectory: ObjCBool = false
        let directory = FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) && isDirectory.boolValue
        let logPath = directory ? path + "/audit.log" : path
        var reading: LogReading
        if directory {
            do {
                // The ledger as a start rebuilds it (from the newest snapshot's segment on); the verification over
                // every segment in the directory, which a start does not read.
                let rebuilt = try StateDirectory.readHistory(path, databaseLedger: true)
                var all = LineSource.log((try? Segments.list(directory: path)) ?? [])
                let verified = AuditVerifier.verify(&all, address: rebuilt.verification.address)
                reading = LogReading(path: logPath, verified: verified, state: rebuilt.state)
            } catch {
                reading = LogReading(
                    path: logPath, verified: .failure(.broken(line: 0, why: error.description)), state: LedgerState())
            }
        } else {
            switch Replay.ledger(LineSource.log([Segments.File(path: logPath)]), snapshots: []) {
            case .success(let rebuilt):
                reading = LogReading(path: logPath, verified: .success(rebuilt.verification), state: rebuilt.state)
            case .failure(let error):
                reading = LogReading(path: logPath, verified: .failure(error), state: LedgerState())
            }
        }
        var source =
            directory
            ? LineSource.log((try? Segments.list(directory: path)) ?? []) : LineSource.log([Segments.File(path: path)])
        _ = AuditChain.read(&source) { record in
            guard record.event == "sign" || record.event == "operator", case .success(let entry) = record.parse(),
                let time = entry.integer("time_ms")
            else { return nil }
            if let since = options.sinceMs, time < since { return nil }
            if let until = options.untilMs, time >= until { return nil }
            if record.event == "sign" {
                reading.decisions.append(
                    Decision(
                        timeMs: time, allowed: entry.string("decision") == "allow", reason: entry.string("reason"),
                        method: entry.string("method") ?? "(unreadable)",
                        wire: entry.string("protocol") ?? "nitrorpc/v0"))
            } else {
                let uid = entry.members.member("peer")?.value.members?.member("uid")?.value.numberToken ?? ""
                reading.operators.append(
                    OperatorAction(
                        timeMs: time, action: entry.string("action") ?? "",
                        session: entry.string("app_session_id") ?? "",
                        reason: entry.string("reason_text") ?? "", uid: uid))
            }
            return nil
        }
        return reading
    }

    // MARK: - the page

    static func page(_ readings: [LogReading], options: Options) -> (html: [UInt8], totals: Totals) {
        var totals = Totals()
        let decisions = readings.flatMap(\.decisions).sorted { $0.timeMs < $1.timeMs }
        for decision in decisions {
            if decision.allowed {
                totals.allowed += 1
            } else {
                totals.refused += 1
                totals.byReason[decision.reason ?? "(none)", default: 0] += 1
            }
        }
        let operators = readings.flatMap(\.operators).sorted { $0.timeMs < $1.timeMs }
        totals.operatorActions = operators.count
        let agents = Set(readings.compactMap { (try? $0.verified.get())?.address?.checksummed })

        var html = HTML()
        html.raw("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">")
        html.raw("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">")
        html.raw("<title>custodian audit report</title><style>\(style)</style></head><body>")
        html.raw("<h1>custodian audit report</h1><p class=\"meta\">")
        html.text("Agent \(agents.sorted().joined(separator: ", ")) · ")
        html.text(
            "period \(options.sinceMs.map { RFC3339.format(ms: $0) } ?? "the beginning") to "
                + "\(options.untilMs.map { RFC3339.format(ms: $0) } ?? "the end") · generated "
                + RFC3339.format(ms: options.generatedAtMs))
        html.raw("</p>")

        // Totals.
        html.raw(
            "<section><h2>Decisions</h2><table class=\"totals\"><tr><th>allowed</th><th>refused</th><th>total</th>")
        html.raw("<th>operator actions</th></tr><tr>")
        html.raw("<td data-total-allowed=\"\(totals.allowed)\">\(totals.allowed)</td>")
        html.raw("<td data-total-refused=\"\(totals.refused)\">\(totals.refused)</td>")
        html.raw("<td data-total=\"\(totals.allowed + totals.refused)\">\(totals.allowed + totals.refused)</td>")
        html.raw("<td data-total-operator=\"\(totals.operatorActions)\">\(totals.operatorActions)</td></tr></table>")
        decisionsOverTime(decisions, options: options, &html)
        html.raw("</section>")

        // Refusals by reason.
        html.raw("<section><h2>Refusals by reason</h2>")
        let reasons = totals.byReason.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }
        if reasons.isEmpty {
            html.raw("<p>No refusals in the period.</p>")
        } else {
            html.raw(horizontalBars(reasons.map { ($0.key, Double($0.value), "\($0.value)") }, color: "#c0392b"))
            html.raw("<table><tr><th>reason</th><th>refusals</th></tr>")
            for (reason, count) in reasons {
                html.raw("<tr><td><code>")
                html.text(reason)
                html.raw("</code></td><td data-reason=\"")
                html.text(reason)
                html.raw("\">\(count)</td></tr>")
            }
            html.raw("</table>")
        }
        html.raw("</section>")

        let states = readings.map(\.state)
        committedLosses(states, &html)
        velocity(states, options: options, &html)
        exposure(states, agents: readings.compactMap { (try? $0.verified.get())?.address }, &html)

        // Operator actions.
        html.raw("<section><h2>Operator actions</h2>")
        if operators.isEmpty {
            html.raw("<p>None in the period.</p>")
        } else {
            html.raw("<table><tr><th>time</th><th>action</th><th>session</th><th>reason</th><th>uid</th></tr>")
            for action in operators {
                html.raw("<tr><td>")
                html.text(RFC3339.format(ms: action.timeMs))
                html.raw("</td><td>")
                html.text(action.action)
                html.raw("</td><td><code>")
                html.text(short(action.session))
                html.raw("</code></td><td>")
                html.text(action.reason)
                html.raw("</td><td>")
                html.text(action.uid)
                html.raw("</td></tr>")
            }
            html.raw("</table>")
        }
        html.raw("</section>")

        // Verification.
        html.raw("<section><h2>Verification</h2><table><tr><th>log</th><th>result</th><th>records</th>")
        html.raw("<th>decisions</th><th>checkpoints</th><th>last checkpoint</th><th>signed by</th></tr>")
        for reading in readings {
            html.raw("<tr><td><code>")
            html.text(reading.path)
            html.raw("</code></td>")
            switch reading.verified {
            case .success(let verification):
                html.raw("<td class=\"ok\" data-verified=\"ok\">verified</td>")
                html.raw("<td>\(verification.chain.count)</td><td>\(verification.decisions)</td>")
                html.raw("<td>\(verification.checkpoints)</td><td>")
                if let last = verification.lastCheckpoint {
                    html.text("seq \(last.seq), head \(short(last.head))")
                } else {
                    html.text("none")
                }
                html.raw("</td><td><code title=\"")
                html.text(verification.address?.checksummed ?? "nobody")
                html.raw("\">")
                html.text(short(verification.address?.checksummed ?? "nobody"))
                html.raw("</code></td>")
            case .failure(let error):
                html.raw("<td class=\"bad\" data-verified=\"failed\" colspan=\"6\">does not verify: ")
                html.text("\(error)")
                html.raw("</td>")
            }
            html.raw("</tr>")
        }
        html.raw("</table><p class=\"meta\">Checked as every start checks: the hash chain, every checkpoint's ")
        html.raw("signature (the records before the last checkpoint are covered by it), every decision's request ")
        html.raw("hash, and the signatures of the allowances after the last checkpoint.</p></section>")
        html.raw("</body></html>\n")
        return (html.bytes, totals)
    }

    /// Stacked bars of allowances and refusals per day (per hour when the decisions span two days or less).
    static func decisionsOverTime(_ decisions: [Decision], options: Options, _ html: inout HTML) {
        guard let first = decisions.first?.timeMs, let last = decisions.last?.timeMs else {
            html.raw("<p>No decisions in the period.</p>")
            return
        }
        let hourly = last - first <= 2 * 86_400_000
        // Per hour or per day; a longer span (or a log with odd times) in at most about 400 bars of whole days.
        let day: UInt64 = 86_400_000
        let days = (last - first) / day + 1
        let width: UInt64 = hourly ? 3_600_000 : (days <= 400 ? day : (days / 400 + 1) * day)
        var buckets: [UInt64: (Int, Int)] = [:]
        for decision in decisions {
            let key = decision.timeMs / width * width
            var bucket = buckets[key] ?? (0, 0)
            if decision.allowed { bucket.0 += 1 } else { bucket.1 += 1 }
            buckets[key] = bucket
        }
        var keys: [UInt64] = []
        var key = first / width * width
        while key <= last {
            keys.append(key)
            let (next, overflow) = key.addingReportingOverflow(width)
            if overflow { break }
            key = next
        }
        let unit = hourly ? "hour" : (width == day ? "day" : "\(width / day) days")
        html.raw("<h3>Over time (per \(unit), UTC)</h3>")
        let maximum = max(1, keys.map { (buckets[$0]?.0 ?? 0) + (buckets[$0]?.1 ?? 0) }.max() ?? 1)
        let chartWidth = 760.0
        let chartHeight = 180.0
        let step = chartWidth / Double(max(keys.count, 1))
        var svg = "<svg class=\"chart\" viewBox=\"0 0 \(Int(chartWidth) + 50) \(Int(chartHeight) + 30)\" "
        svg += "xmlns=\"http://www.w3.org/2000/svg\" role=\"img\" aria-label=\"decisions over time\">"
        svg += "<line x1=\"40\" y1=\"\(chartHeight)\" x2=\"\(chartWidth + 40)\" y2=\"\(chartHeight)\" stroke=\"#999\"/>"
        svg +=
            "<text x=\"0\" y=\"12\" class=\"axis\">\(maximum)</text><text x=\"0\" y=\"\(chartHeight)\" class=\"axis\">0</text>"
        for (index, key) in keys.enumerated() {
            let (allowed, refused) = buckets[key] ?? (0, 0)
            let x = 40 + Double(index) * step
            let allowHeight = chartHeight * Double(allowed) / Double(maximum)
            let denyHeight = chartHeight * Double(refused) / Double(maximum)
            let barWidth = max(step * 0.8, 1)
            svg += "<rect x=\"\(format(x))\" y=\"\(format(chartHeight - allowHeight))\" width=\"\(format(barWidth))\" "
            svg += "height=\"\(format(allowHeight))\" fill=\"#2e8b57\"><title>\(RFC3339.format(ms: key)): "
            svg += "\(allowed) allowed</title></rect>"
            svg += "<rect x=\"\(format(x))\" y=\"\(format(chartHeight - allowHeight - denyHeight))\" "
            svg += "width=\"\(format(barWidth))\" height=\"\(format(denyHeight))\" fill=\"#c0392b\"><title>"
            svg += "\(RFC3339.format(ms: key)): \(refused) refused</title></rect>"
        }
        svg += "<text x=\"40\" y=\"\(Int(chartHeight) + 20)\" class=\"axis\">\(label(keys[0], hourly: hourly))</text>"
        svg += "<text x=\"\(Int(chartWidth) - 60)\" y=\"\(Int(chartHeight) + 20)\" class=\"axis\">"
        svg += "\(label(keys[keys.count - 1], hourly: hourly))</text></svg>"
        html.raw(svg)
        html.raw(
            "<p class=\"legend\"><span class=\"swatch allow\"></span>allowed <span class=\"swatch deny\"></span>refused</p>"
        )
        html.raw("<details><summary>The numbers</summary><table><tr><th>\(hourly ? "hour" : "from")</th>")
        html.raw("<th>allowed</th><th>refused</th></tr>")
        for key in keys {
            let (allowed, refused) = buckets[key] ?? (0, 0)
            html.raw("<tr><td>")
            html.text(label(key, hourly: hourly))
            html.raw("</td><td>\(allowed)</td><td>\(refused)</td></tr>")
        }
        html.raw("</table></details>")
    }

    /// The sessions with the largest committed loss of this key, per asset.
    static func committedLosses(_ states: [LedgerState], _ html: inout HTML) {
        html.raw("<section><h2>Largest committed losses</h2>")
        var rows: [(String, String, Amount, String)] = []
        for state in states {
            for session in state.sessions.values {
                for (asset, loss) in session.committedLoss where !loss.isZero {
                    rows.append((session.appSessionID, asset.value, loss, session.status.rawValue))
                }
            }
        }
        rows.sort { $0.2 != $1.2 ? $1.2 < $0.2 : $0.0 < $1.0 }
        guard !rows.isEmpty else {
            html.raw("<p>No session has committed a loss of this key.</p></section>")
            return
        }
        let top = Array(rows.prefix(10))
        html.raw(
            horizontalBars(
                top.map { ("\(short($0.0)) \($0.1)", Double("\($0.2)") ?? 0, "\($0.2) \($0.1)") }, color: "#d35400"))
        html.raw("<table><tr><th>session</th><th>asset</th><th>committed loss</th><th>status</th></tr>")
        for row in top {
            html.raw("<tr><td><code>")
            html.text(row.0)
            html.raw("</code></td><td>")
            html.text(row.1)
            html.raw("</td><td>\(row.2)</td><td>")
            html.text(row.3)
            html.raw("</td></tr>")
        }
        html.raw("</table></section>")
    }

    /// Per asset: the increases of committed loss in the period, and the largest sum within any window.
    static func velocity(_ states: [LedgerState], options: Options, _ html: inout HTML) {
        let windowMs = (options.velocity?.windowSeconds ?? 86_400).multipliedReportingOverflow(by: 1000)
        let window = windowMs.overflow ? UInt64.max : windowMs.partialValue
        html.raw("<section><h2>Velocity use</h2>")
        var byAsset: [ExactString: [LossEvent]] = [:]
        for state in states {
            for loss in state.losses {
                if let since = options.sinceMs, loss.timeMs < since { continue }
                if let until = options.untilMs, loss.timeMs >= until { continue }
                byAsset[loss.asset, default: []].append(loss)
            }
        }
        guard !byAsset.isEmpty else {
            html.raw("<p>No loss was committed in the period.</p></section>")
            return
        }
        html.raw(
            "<table><tr><th>asset</th><th>committed in the period</th><th>largest in any \(window / 1000) s window</th>"
        )
        html.raw("<th>cap</th><th>use of the cap</th></tr>")
        for (asset, events) in byAsset.sorted(by: { $0.key < $1.key }) {
            let sorted = events.sorted { $0.timeMs < $1.timeMs }
            var peak = Amount.zero
            var start = 0
            var running = Amount.zero
            for event in sorted {
                running = running + event.amount
                while event.timeMs - sorted[start].timeMs >= window {
                    running = running - sorted[start].amount
                    start += 1
                }
                if peak < running { peak = running }
            }
            let cap = options.velocity?.maxOwnLoss[asset]
            html.raw("<tr><td>")
            html.text(asset.value)
            html.raw("</td><td>\(sorted.map(\.amount).sum())</td><td>\(peak)</td><td>")
            html.text(cap.map { "\($0)" } ?? "(give --policy)")
            html.raw("</td><td>")
            if let cap, !cap.isZero, let used = Double("\(peak)"), let limit = Double("\(cap)") {
                let share = min(used / limit, 1)
                html.raw(
                    "<svg class=\"gauge\" viewBox=\"0 0 200 16\" xmlns=\"http://www.w3.org/2000/svg\"><rect width=\"200\" "
                        + "height=\"16\" fill=\"#eee\"/><rect width=\"\(format(200 * share))\" height=\"16\" "
                        + "fill=\"#d35400\"/></svg> \(percent(used / limit)) %")
            } else {
                html.raw("–")
            }
            html.raw("</td></tr>")
        }
        html.raw("</table></section>")
    }

    /// This key's funding at risk in open sessions, per counterparty (a session with several counterparties counts
    /// for each of them).
    static func exposure(_ states: [LedgerState], agents: [Address], _ html: inout HTML) {
        html.raw("<section><h2>Funding at risk per counterparty</h2>")
        var rows: [String: [ExactString: Amount]] = [:]
        var sessions: [String: Int] = [:]
        for state in states {
            for session in state.sessions.values where session.status == .open {
                let atRisk = session.fundingAtRisk
                guard !atRisk.isEmpty else { continue }
                for participant in session.definition.participants where !agents.contains(participant) {
                    sessions[participant.checksummed, default: 0] += 1
                    for (asset, amount) in atRisk {
                        rows[participant.checksummed, default: [:]][asset] =
                            (rows[participant.checksummed]?[asset] ?? .zero) + amount
                    }
                }
            }
        }
        guard !rows.isEmpty else {
            html.raw("<p>No funding of this key is at risk in an open session.</p></section>")
            return
        }
        var bars: [(String, Double, String)] = []
        html.raw("<table><tr><th>counterparty</th><th>open sessions</th><th>funding at risk</th></tr>")
        for (counterparty, amounts) in rows.sorted(by: { $0.key < $1.key }) {
            let text = amounts.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", ")
            bars.append((short(counterparty), amounts.values.compactMap { Double("\($0)") }.reduce(0, +), text))
            html.raw("<tr><td><code>")
            html.text(counterparty)
            html.raw("</code></td><td>\(sessions[counterparty] ?? 0)</td><td>")
            html.text(text)
            html.raw("</td></tr>")
        }
        html.raw("</table>")
        html.raw(horizontalBars(bars.sorted { $0.1 > $1.1 }, color: "#2c6fbb"))
        html.raw("</section>")
    }

    /// A horizontal bar chart: one labelled bar per item, scaled to the largest.
    static func horizontalBars(_ items: [(label: String, value: Double, text: String)], color: String) -> String {
        let maximum = max(items.map(\.value).max() ?? 1, 1e-18)
        let rowHeight = 22
        var svg = "<svg class=\"chart\" viewBox=\"0 0 800 \(items.count * rowHeight + 4)\" "
        svg += "xmlns=\"http://www.w3.org/2000/svg\" role=\"img\">"
        for (index, item) in items.enumerated() {
            let y = index * rowHeight + 2
            let width = max(420 * item.value / maximum, 1)
            svg += "<text x=\"0\" y=\"\(y + 15)\" class=\"label\">\(escape(item.label))</text>"
            svg += "<rect x=\"260\" y=\"\(y + 3)\" width=\"\(format(width))\" height=\"16\" fill=\"\(color)\"/>"
            svg += "<text x=\"\(format(266 + width))\" y=\"\(y + 15)\" class=\"label\">\(escape(item.text))</text>"
        }
        return svg + "</svg>"
    }

    /// A bucket's start: `YYYY-MM-DD`, or `YYYY-MM-DD HH:00` for hours.
    static func label(_ ms: UInt64, hourly: Bool) -> String {
        let text = RFC3339.format(ms: ms)
        return hourly ? text.prefix(10) + " " + text.dropFirst(11).prefix(2) + ":00" : String(text.prefix(10))
    }

    /// A share as a whole percentage, for any double (never a trap on an odd figure).
    static func percent(_ share: Double) -> String {
        guard share.isFinite else { return "–" }
        return String(format: "%.0f", min(max(share * 100, 0), 1e12))
    }

    static func short(_ hex: String) -> String {
        hex.count > 18 ? String(hex.prefix(10)) + "…" + String(hex.suffix(6)) : hex
    }

    static func format(_ value: Double) -> String { String(format: "%.1f", value) }

    static func escape(_ text: String) -> String {
        var out = ""
        out.reserveCapacity(text.utf8.count)
        for character in text.unicodeScalars {
            switch character {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default: out.unicodeScalars.append(character)
            }
        }
        return out
    }

    static let style = """
        body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:880px;color:#222}
        h1{font-size:1.6em}h2{font-size:1.2em;margin-top:1.8em;border-bottom:1px solid #ddd}
        table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #ddd;padding:3px 8px;text-align:left}
        th{background:#f4f4f4}.meta{color:#666}.ok{color:#2e8b57;font-weight:bold}.bad{color:#c0392b;font-weight:bold}
        .chart{width:100%;height:auto}.axis,.label{font:11px system-ui,sans-serif;fill:#333}
        .gauge{width:200px;height:16px;vertical-align:middle}.swatch{display:inline-block;width:12px;height:12px}
        .allow{background:#2e8b57}.deny{background:#c0392b}code{font-size:12px}
        """

    /// HTML text built by appending, escaping where asked.
    struct HTML {
        var bytes: [UInt8] = []

        mutating func raw(_ text: String) { bytes.append(contentsOf: text.utf8) }

        mutating func text(_ text: String) { bytes.append(contentsOf: AuditReport.escape(text).utf8) }
    }
}
