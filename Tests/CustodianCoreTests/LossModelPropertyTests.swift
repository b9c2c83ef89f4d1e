import CustodianCore
import CustodianTestSupport
import Foundation
import Testing

/// Random sequences of create, operate, deposit, withdraw, close and release over several sessions, with the
/// clock moving across the velocity window: every decision is checked against a model of committed loss,
/// velocity and exposure written here from CONTRACT §5's definitions, not from the implementation.
///
/// Fixed seed; `CUSTODIAN_PROPERTY_CASES=N` runs N sequences (CI runs 300; the long run 10,000 or more) and
/// `CUSTODIAN_PROPERTY_SEED` another seed.
@Suite("Loss, velocity and exposure against an independent model")
struct LossModelPropertyTests {
    static let agent = "0xFdEc8F58fA4b3bf07DD11eAF4c562Ee674e2C638"
    static let other = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"

    /// The model's session, in whole usdc: what A (this key) put in, what was paid out to A, the allocations of
    /// the latest signed state, the largest loss of A among the signed states.
    struct ModelSession {
        var funding: Int
        var withdrawnToA: Int
        var a: Int
        var b: Int
        var committed: Int
        var version: UInt64
        var open: Bool
        /// The states before the latest, for releases.
        var earlier: [ModelSession] = []

        /// CONTRACT §5: loss in a state = (funding − withdrawals paid to this key) − its allocation.
        func loss(a newA: Int) -> Int { funding - withdrawnToA - newA }
        var atRisk: Int { open ? max(funding - withdrawnToA, 0) : 0 }
    }

    struct Model {
        var sessions: [Int: ModelSession] = [:]
        /// (time, increase of committed loss) per signed state that raised one.
        var events: [(UInt64, Int)] = []
        var maxOwnLoss: Int
        var velocityCap: Int
        var windowMs: UInt64
        var maxOpenFunding: Int

        func velocityPrior(now: UInt64) -> Int {
            events.filter { $0.0 > now - windowMs }.map(\.1).reduce(0, +)
        }

        var openFunding: Int { sessions.values.map(\.atRisk).reduce(0, +) }

        /// The expected reason for signing `next` after `current` (nil: allowed), in CONTRACT order: the state's
        /// loss over max_own_loss, the increase of committed loss over the window's cap, funding at risk over
        /// max_open_funding (only when this state raises it).
        func judge(from current: ModelSession?, to next: ModelSession, now: UInt64) -> ReasonCode? {
            let loss = next.loss(a: next.a)
            if loss > maxOwnLoss { return .ownLossExceeded }
            let increase = max(0, loss - (current?.committed ?? 0))
            if increase > 0, velocityPrior(now: now) + increase > velocityCap { return .velocityExceeded }
            let before = current?.atRisk ?? 0
            if next.atRisk > before, openFunding - before + next.atRisk > maxOpenFunding { return .exposureExceeded }
            return nil
        }

        mutating func sign(_ index: Int, _ next: ModelSession, now: UInt64) {
            var next = next
            let loss = next.loss(a: next.a)
            if loss > next.committed {
                events.append((now, loss - next.committed))
                next.committed = loss
            }
            if let current = sessions[index] { next.earlier = current.earlier + [current] }
            sessions[index] = next
        }
    }

    static func definition(nonce: Int) -> String {
        "{\"application\":\"chess\",\"protocol\":\"NitroRPC/0.4\",\"participants\":[\"\(agent)\",\"\(other)\"],"
            + "\"weights\":[50,50],\"quorum\":100,\"challenge\":86400,\"nonce\":\(nonce)}"
    }

    static func allocations(_ a: Int, _ b: Int) -> String {
        "[{\"participant\":\"\(agent)\",\"asset\":\"usdc\",\"amount\":\"\(a)\"},"
            + "{\"participant\":\"\(other)\",\"asset\":\"usdc\",\"amount\":\"\(b)\"}]"
    }

    @Test("committed loss, velocity and exposure agree with the model over random sequences")
    func againstModel() throws {
        let environment = ProcessInfo.processInfo.environment
        let count = environment["CUSTODIAN_PROPERTY_CASES"].flatMap { Int($0) } ?? 300
        var random = SplitMix64(state: environment["CUSTODIAN_PROPERTY_SEED"].flatMap { UInt64($0) } ?? 0x1055_0DE1)
        let reader = NitroRPCv0Reader()
        let agent = try #require(Address(eip55: Self.agent))
        var decisions = 0
        var refusals: [ReasonCode: Int] = [:]
        for sequence in 0..<count {
            var model = Model(
                maxOwnLoss: Int.random(in: 20...120, using: &random),
                velocityCap: Int.random(in: 30...250, using: &random),
                windowMs: UInt64(Int.random(in: 10...60, using: &random)) * 1000,
                maxOpenFunding: Int.random(in: 50...300, using: &random))
            let policy = Policy(
                maxAgeMs: 1 << 40,
                assets: [
                    "usdc": Policy.AssetRule(
                        decimals: 6, maxOwnLoss: Amount("\(model.maxOwnLoss)"),
                        maxOpenFunding: Amount("\(model.maxOpenFunding)"))
                ],
                velocity: Policy.Velocity(
                    windowSeconds: model.windowMs / 1000,
                    maxOwnLoss: ["usdc": try #require(Amount("\(model.velocityCap)"))])
            )
            var state = LedgerState()
            var ids: [Int: String] = [:]
            var records: [Int: [SessionRecord]] = [:]  // the implementation's states, for releases
            var now: UInt64 = 1_733_000_000_000
            var requestID = 1
            for _ in 0..<Int.random(in: 10...40, using: &random) {
                now += UInt64(Int.random(in: 0...(Int(model.windowMs) / 3), using: &random))
                requestID += 1
                let index = Int.random(in: 0..<4, using: &random)
                let session = model.sessions[index]
                // A release now and then: of the latest state (a create only with its forgetting).
                if let session, let id = ids[index], Int.random(in: 0..<8, using: &random) == 0 {
                    if let before = session.earlier.last {
                        var restored = before
                        restored.committed = max(before.committed, session.committed)
                        model.sessions[index] = restored
                        let stack = records[index] ?? []
                        let current = try #require(state.session(id))
                        state.restore(id, to: current.released(to: try #require(stack.last)))
                        records[index] = Array(stack.dropLast())
                    } else {
                        model.sessions[index] = nil
                        state.restore(id, to: nil)
                        records[index] = []
                    }
                    #expect(
                        state.session(id)?.version == model.sessions[index]?.version,
                        "sequence \(sequence): release of session \(index)")
                    continue
                }
                var message: String
                var expected: ReasonCode?
                var next: ModelSession
                if session == nil || session?.open == false {
                    guard session == nil else { continue }  // closed: nothing more to sign for it
                    let a = Int.random(in: 0...120, using: &random)
                    let b = Int.random(in: 0...60, using: &random)
                    next = ModelSession(funding: a, withdrawnToA: 0, a: a, b: b, committed: 0, version: 1, open: true)
                    // Each session index has its own nonce, so a forgotten session's create can be signed again.
                    message =
                        "{\"req\":[\(requestID),\"create_app_session\",{\"definition\":\(Self.definition(nonce: 1000 + index)),"
                        + "\"allocations\":\(Self.allocations(a, b))},\(now)],\"sig\":[]}"
                    expected = model.judge(from: nil, to: next, now: now)
                } else if let session, let id = ids[index] {
                    let total = session.a + session.b
                    next = session
                    next.earlier = []
                    next.version = session.version + 1
                    let kind = Int.random(in: 0..<4, using: &random)
                    var intent: String?
                    switch kind {
                    case 0:  // operate: the same total, redistributed
                        next.a = Int.random(in: 0...total, using: &random)
                        next.b = total - next.a
                        intent = "operate"
                    case 1:  // deposit by A or B
                        if Bool.random(using: &random) {
                            let more = Int.random(in: 1...60, using: &random)
                            next.a += more
                            next.funding += more
                        } else {
                            next.b += Int.random(in: 1...60, using: &random)
                        }
                        intent = "deposit"
                    case 2:  // withdraw by A (paid to A) or B (paid to B)
                        if Bool.random(using: &random), session.a > 0 {
                            let less = Int.random(in: 1...session.a, using: &random)
                            next.a -= less
                            next.withdrawnToA += less
                        } else if session.b > 0 {
                            next.b -= Int.random(in: 1...session.b, using: &random)
                        } else {
                            continue
                        }
                        intent = "withdraw"
                    default:  // close: the total, split at random
                        next.a = Int.random(in: 0...total, using: &random)
                        next.b = total - next.a
                        next.open = false
                    }
                    if let intent {
                        message =
                            "{\"req\":[\(requestID),\"submit_app_state\",{\"app_session_id\":\"\(id)\",\"intent\":\"\(intent)\","
                            + "\"version\":\(next.version),\"allocations\":\(Self.allocations(next.a, next.b))},\(now)],\"sig\":[]}"
                    } else {
                        message =
                            "{\"req\":[\(requestID),\"close_app_session\",{\"app_session_id\":\"\(id)\","
                            + "\"allocations\":\(Self.allocations(next.a, next.b))},\(now)],\"sig\":[]}"
                    }
                    expected = model.judge(from: session, to: next, now: now)
                } else {
                    continue
                }
                let request = try reader.read(Array(message.utf8)).get()
                let decision = policy.evaluate(request, state: state, agent: agent, nowMs: now)
                decisions += 1
                switch (decision, expected) {
                case (.allow(let effect), nil):
                    if let before = ids[index].flatMap({ state.session($0) }) {
                        records[index, default: []].append(before)
                    }
                    state.apply(effect, atMs: now)
                    model.sign(index, next, now: now)
                    if let created = effect.session { ids[index] = created.appSessionID }
                    let id = try #require(ids[index])
                    #expect(
                        state.session(id)?.committedLoss["usdc"] ?? .zero
                            == Amount("\(model.sessions[index]?.committed ?? 0)"),
                        "sequence \(sequence): committed loss of session \(index)")
                    #expect(
                        state.openFunding(asset: "usdc") == Amount("\(model.openFunding)"),
                        "sequence \(sequence): funding at risk")
                case (.deny(let denial), let reason?):
                    #expect(denial.reason == reason, "sequence \(sequence): \(message) → \(denial.detail)")
                    refusals[reason, default: 0] += 1
                case (.allow, let reason?):
                    Issue.record("sequence \(sequence): allowed, the model refuses with \(reason): \(message)")
                case (.deny(let denial), nil):
                    Issue.record(
                        "sequence \(sequence): refused \(denial.reason) (\(denial.detail)), the model allows: \(message)"
                    )
                }
            }
        }
        // The sequences reach every rule, and mostly allow.
        print("loss model: \(count) sequences, \(decisions) decisions, refusals \(refusals)")
        #expect(refusals[.ownLossExceeded, default: 0] > 0)
        #expect(refusals[.velocityExceeded, default: 0] > 0)
        #expect(refusals[.exposureExceeded, default: 0] > 0)
    }
}
