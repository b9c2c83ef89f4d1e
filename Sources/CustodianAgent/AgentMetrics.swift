import CoreMetrics
import CustodianCore
import Foundation
import Prometheus

/// The agent's metrics (swift-metrics, kept by swift-prometheus in a registry of the agent's own). The agent opens
/// no network socket: they are read through the Unix socket (`metrics`) in the Prometheus text format, for
/// node_exporter's textfile collector.
///
/// Counters and histograms are updated where things happen; gauges that describe the ledger (open sessions, funding
/// at risk, velocity use) are set from the engine when the metrics are read.
public final class AgentMetrics: Sendable {
    public let registry: PrometheusCollectorRegistry
    private let factory: PrometheusMetricsFactory
    // Made once: the signing path then touches only each metric's own atomics, never the registry's lock.
    private let decisions: [String: CounterHandler]
    private let refusals: [ReasonCode: CounterHandler]
    private let batchRecords: RecorderHandler
    private let syncTime: TimerHandler
    private let openConnections: MeterHandler

    /// Buckets: a durable sync takes from tens of microseconds (tmpfs) to tens of milliseconds (a slow disk).
    static let syncBuckets: [Double] = [
        0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1,
    ]
    static let batchBuckets: [Double] = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]

    public init() {
        registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.defaultDurationHistogramBuckets = Self.syncBuckets.map { Duration.nanoseconds(Int64($0 * 1e9)) }
        factory.defaultValueHistogramBuckets = Self.batchBuckets
        self.factory = factory
        var decisions: [String: CounterHandler] = [:]
        for method in RequestMethod.allCases.map(\.rawValue) + ["unreadable"] {
            for outcome in ["allow", "deny", "unavailable"] {
                decisions[Self.key(method, WireProtocol.nitroRPCv0.rawValue, outcome)] = factory.makeCounter(
                    label: "custodian_decisions_total",
                    dimensions: [
                        ("method", method), ("protocol", WireProtocol.nitroRPCv0.rawValue), ("outcome", outcome),
                    ])
            }
        }
        self.decisions = decisions
        var refusals: [ReasonCode: CounterHandler] = [:]
        for reason in ReasonCode.allCases {
            refusals[reason] = factory.makeCounter(
                label: "custodian_refusals_total", dimensions: [("reason", reason.rawValue)])
        }
        self.refusals = refusals
        batchRecords = factory.makeRecorder(label: "custodian_commit_batch_records", dimensions: [], aggregate: true)
        syncTime = factory.makeTimer(label: "custodian_sync_seconds", dimensions: [])
        openConnections = factory.makeMeter(label: "custodian_connections", dimensions: [])
    }

    private static func key(_ method: String, _ wire: String, _ outcome: String) -> String {
        method + " " + wire + " " + outcome
    }

    /// A decision on a `sign` request: by method (empty when the request could not be read), protocol and outcome
    /// (`allow`, `deny`, `unavailable`), and for a refusal its reason code.
    public func decision(method: String, protocol wire: String, outcome: String, reason: ReasonCode?) {
        let method = method.isEmpty ? "unreadable" : method
        if let counter = decisions[Self.key(method, wire, outcome)] {
            counter.increment(by: 1)
        } else {
            factory.makeCounter(
                label: "custodian_decisions_total",
                dimensions: [("method", method), ("protocol", wire), ("outcome", outcome)]
            ).increment(by: 1)
        }
        if let reason { refusals[reason]?.increment(by: 1) }
    }

    /// One group-commit write: how many records, and how long the write and fdatasync took.
    public func batch(records: Int, nanoseconds: UInt64) {
        batchRecords.record(Int64(records))
        syncTime.recordNanoseconds(Int64(clamping: nanoseconds))
    }

    /// A caller refused by its credentials, or a request answered -32005 (`kind`: `requests`, `refusals`,
    /// `connections`).
    public func callerRefused() {
        factory.makeCounter(label: "custodian_callers_refused_total", dimensions: []).increment(by: 1)
    }

    public func rateLimited(_ kind: String) {
        factory.makeCounter(label: "custodian_rate_limited_total", dimensions: [("kind", kind)]).increment(by: 1)
    }

    public func connections(_ delta: Int) {
        openConnections.increment(by: Double(delta))
    }

    /// A periodic snapshot written: how long encoding and writing took.
    public func snapshot(nanoseconds: UInt64) {
        factory.makeTimer(label: "custodian_snapshot_seconds", dimensions: []).recordNanoseconds(
            Int64(clamping: nanoseconds))
    }

    /// The audit log rolled over to a new segment (`reason`: `size`, `records`, `operator`).
    public func rollover(_ reason: String) {
        factory.makeCounter(label: "custodian_audit_rollovers_total", dimensions: [("reason", reason)]).increment(
            by: 1)
    }

    public func started(seconds: Double) {
        factory.makeMeter(label: "custodian_start_seconds", dimensions: []).set(seconds)
    }

    /// The ledger's gauges, then the whole text exposition.
    public func exposition(_ ledger: LedgerGauges) -> [UInt8] {
        factory.makeMeter(label: "custodian_open_sessions", dimensions: []).set(Double(ledger.openSessions))
        factory.makeMeter(label: "custodian_closed_sessions", dimensions: []).set(Double(ledger.closedSessions))
        factory.makeMeter(label: "custodian_audit_seq", dimensions: []).set(Double(ledger.auditSeq))
        for (asset, amount) in ledger.openFunding {
            factory.makeMeter(label: "custodian_open_funding", dimensions: [("asset", asset)]).set(amount)
        }
        for (asset, used) in ledger.velocityUsed {
            factory.makeMeter(label: "custodian_velocity_used", dimensions: [("asset", asset)]).set(used)
        }
        for (asset, cap) in ledger.velocityCap {
            factory.makeMeter(label: "custodian_velocity_cap", dimensions: [("asset", asset)]).set(cap)
        }
        var bytes: [UInt8] = []
        registry.emit(into: &bytes)
        return bytes
    }
}

/// What the ledger gauges show, read from the engine under its lock.
public struct LedgerGauges: Sendable {
    public var openSessions: Int
    public var closedSessions: Int
    public var auditSeq: UInt64
    /// Per asset, in the asset's units (a Double: a gauge is a float; the ledger itself stays exact).
    public var openFunding: [String: Double]
    public var velocityUsed: [String: Double]
    public var velocityCap: [String: Double]
}
