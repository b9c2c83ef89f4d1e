extension Policy {
    /// Decides whether `agent` may sign `request`, given what it signed before (`state`) and the agent's clock.
    ///
    /// Every rule is evaluated over the whole request and the first failure in contract order is reported, so the
    /// reason does not depend on the order of the allocations. Reasons the policy marks as warnings do not refuse:
    /// they ride along in the allowance's effect.
    public func evaluate(_ request: SignableRequest, state: some LedgerView, agent: Address, nowMs: UInt64) -> Decision
    {
        var findings = Findings(enforcing: enforcing)
        if enforcing {
            if request.timestamp < nowMs, nowMs - request.timestamp > maxAgeMs {
                findings.note(
                    .payloadStale,
                    "timestamp \(request.timestamp) is \(nowMs - request.timestamp) ms old; the policy allows \(maxAgeMs)",
                    ["timestamp": "\(request.timestamp)", "now_ms": "\(nowMs)", "max_age_ms": "\(maxAgeMs)"])
            }
            if request.timestamp > nowMs, request.timestamp - nowMs > maxFutureMs {
                findings.note(
                    .payloadFuture,
                    "timestamp \(request.timestamp) is \(request.timestamp - nowMs) ms ahead; the policy allows \(maxFutureMs)",
                    ["timestamp": "\(request.timestamp)", "now_ms": "\(nowMs)", "max_future_ms": "\(maxFutureMs)"])
            }
            guard methods.contains(request.method) else {
                findings.note(
                    .payloadMethodNotAllowed, "the policy does not allow \(request.method.rawValue)",
                    ["method": request.method.rawValue])
                return conclude(findings, effect: nil)
            }
        }
        switch request.body {
        case .create(let definition, let allocations, let sessionData):
            return evaluateCreate(definition, allocations, sessionData, state: state, agent: agent, &findings)
        case .submit(let id, let intent, let version, let allocations, let sessionData):
            guard let session = trackedSession(id, for: request, state: state, &findings) else {
                return conclude(findings, effect: nil)
            }
            return evaluateSubmit(
                session, intent, version, allocations, sessionData, state: state, agent: agent, nowMs: nowMs, &findings)
        case .close(let id, let allocations, let sessionData, let version):
            guard let session = trackedSession(id, for: request, state: state, &findings) else {
                return conclude(findings, effect: nil)
            }
            return evaluateClose(
                session, allocations, sessionData, version, state: state, agent: agent, nowMs: nowMs, &findings)
        }
    }

    /// The session a submit or close names, if this key signed its creation under the request's protocol: a v0
    /// request for a v1 session (or the reverse) names a session that protocol's node does not hold.
    private func trackedSession(
        _ id: String, for request: SignableRequest, state: some LedgerView, _ findings: inout Findings
    ) -> SessionRecord? {
        guard let session = state.session(id) else {
            findings.note(
                .sessionUnknown, "custodian has not signed the creation of session \(id)", ["app_session_id": id])
            return nil
        }
        guard session.definition.wire == request.wireProtocol else {
            findings.note(
                .sessionUnknown,
                "session \(id) was created under \(session.definition.wire.rawValue), not \(request.wireProtocol.rawValue)",
                ["app_session_id": id, "protocol": session.definition.wire.rawValue])
            return nil
        }
        return session
    }

    /// The effect of a request that was allowed before, applied again when the ledger is rebuilt from the audit
    /// log: no rule is checked (the policy in force then allowed it), only the state transition is computed.
    public static func replay(_ request: SignableRequest, state: some LedgerView, agent: Address) -> Effect? {
        var permissive = Policy()
        permissive.enforcing = false
        guard
            case .allow(let effect) = permissive.evaluate(request, state: state, agent: agent, nowMs: request.timestamp)
        else { return nil }
        return effect
    }

    /// Refuses with the first enforced finding, or allows with `effect` and the warnings. Callers pass a nil effect
    /// only after noting a reason that always refuses.
    private func conclude(_ findings: Findings, effect: Effect?) -> Decision {
        let (denial, warnings) = findings.verdict(warn: warn)
        if let denial { return .deny(denial) }
        guard var effect else {
            return .deny(findings.denial ?? Denial(.payloadMalformed, "request could not be evaluated"))
        }
        effect.warnings = warnings
        return .allow(effect)
    }

    // MARK: - close_app_session

    private func evaluateClose(
        _ session: SessionRecord, _ allocations: [Allocation], _ sessionData: String?, _ version: UInt64?,
        state: some LedgerView, agent: Address, nowMs: UInt64, _ findings: inout Findings
    ) -> Decision {
        if session.status == .closed {
            // A retry of the very close already signed is harmless (clients retry after a timeout); anything else
            // would be a second, conflicting close.
            if session.allocations == allocations && session.sessionData == sessionData
                && (version == nil || version == session.version)
            {
                return conclude(findings, effect: Effect(session: nil))
            }
            findings.note(
                .sessionClosed, "session \(session.appSessionID) was already closed with other allocations",
                ["app_session_id": session.appSessionID])
            return conclude(findings, effect: nil)
        }
        if let version, version != session.version &+ 1 {
            findings.note(
                .versionConflict, "version \(version) is not the next one; custodian signed up to \(session.version)",
                ["expected": "\(session.version &+ 1)", "got": "\(version)"])
        }
        if session.definition.wire.closeIsValueNeutral {
            // v1: value moves in an operate; a close must list exactly the current state (nitronode refuses any
            // other), so it can neither redistribute nor be signed twice with different contents.
            checkCloseIsCurrent(allocations, session, &findings)
        } else if allocations.isEmpty {
            // ClearNode refuses it ("missing required parameters"): signed, it would only block the real close.
            findings.note(.payloadMalformed, "a close needs at least one allocation")
        }
        checkSums(allocations, expected: session.totals, &findings)
        checkMembership(allocations, requiredPairs(session, held: session.heldAssets), session.definition, &findings)
        checkAssets(allocations, &findings)
        var closed = session
        let increases = checkLoss(
            &closed, own: allocations.amounts(of: agent), state: state, nowMs: nowMs, &findings)
        checkCounterparties(session.definition, agent: agent, &findings)
        closed.status = .closed
        closed.version = session.version &+ 1
        closed.allocations = allocations
        closed.sessionData = sessionData
        return conclude(findings, effect: Effect(session: closed, realizedLoss: increases))
    }

    /// The loss rules of a state this key signs (an operate, deposit, withdraw or close): its loss within
    /// `max_own_loss`, and the increase of the session's committed loss (the largest loss among the states signed
    /// for it) within the `[velocity]` window's cap. Raises `next.committedLoss`; returns the increases, which the
    /// window counts from now on.
    private func checkLoss(
        _ next: inout SessionRecord, own: [ExactString: Amount], state: some LedgerView, nowMs: UInt64,
        _ findings: inout Findings
    ) -> [ExactString: Amount] {
        var increases: [ExactString: Amount] = [:]
        for asset in Set(next.funding.keys).union(next.withdrawn.keys).union(own.keys).sorted() {
            let loss = loss(next, asset: asset, newOwn: own[asset] ?? .zero)
            checkOwnLoss(loss, asset: asset, &findings)
            let committed = next.committedLoss[asset] ?? .zero
            if committed < loss {
                increases[asset] = loss - committed
                next.committedLoss[asset] = loss
            }
        }
        if let velocity, enforcing {
            let window = velocity.windowSeconds.multipliedReportingOverflow(by: 1000)
            let since = window.overflow || window.partialValue > nowMs ? 0 : nowMs - window.partialValue
            for (asset, increase) in increases.sorted(by: { $0.key < $1.key }) {
                guard let cap = velocity.maxOwnLoss[asset] else { continue }
                let prior = state.realizedLoss(asset: asset, sinceMs: since)
                if cap < prior + increase {
                    findings.note(
                        .velocityExceeded,
                        "this state commits \(increase) \(asset) more loss after \(prior) in the last "
                            + "\(velocity.windowSeconds) s; the cap is \(cap)",
                        [
                            "asset": asset.value, "loss": "\(increase)", "prior_losses": "\(prior)", "cap": "\(cap)",
                            "window_s": "\(velocity.windowSeconds)", "since_ms": "\(since)",
                        ])
                }
            }
        }
        return increases
    }

    /// `max_open_funding`: this key's funding at risk over all its open sessions, with `next` in place of `old`.
    private func checkExposure(
        old: SessionRecord?, next: SessionRecord, state: some LedgerView, _ findings: inout Findings
    ) {
        let before = old?.fundingAtRisk ?? [:]
        for (asset, atRisk) in next.fundingAtRisk.sorted(by: { $0.key < $1.key }) {
            guard let cap = assets[asset]?.maxOpenFunding else { continue }
            let was = before[asset] ?? .zero
            guard was < atRisk else { continue }
            let total = state.openFunding(asset: asset) - was + atRisk
            if cap < total {
                findings.note(
                    .exposureExceeded,
                    "this key's funding at risk in open sessions would be \(total) \(asset); max_open_funding is \(cap)",
                    [
                        "asset": asset.value, "open_funding": "\(total)", "this_session": "\(atRisk)",
                        "cap": "\(cap)",
                    ])
            }
        }
    }

    // MARK: - submit_app_state

    private func evaluateSubmit(
        _ session: SessionRecord, _ intent: Intent?, _ version: UInt64?, _ allocations: [Allocation],
        _ sessionData: String?, state: some LedgerView, agent: Address, nowMs: UInt64, _ findings: inout Findings
    ) -> Decision {
        if session.status == .closed {
            findings.note(
                .sessionClosed, "session \(session.appSessionID) is closed", ["app_session_id": session.appSessionID])
            return conclude(findings, effect: nil)
        }
        // A v0 definition's protocol says whether its states carry intent and version (0.4) or not (0.2); the v1
        // reader requires both.
        if session.definition.wire.definitionNamesProtocol {
            if session.definition.protocolName == "NitroRPC/0.4" {
                if intent == nil { findings.note(.payloadMalformed, "NitroRPC/0.4 submit_app_state requires intent") }
                if version == nil {
                    findings.note(.payloadMalformed, "NitroRPC/0.4 submit_app_state requires version")
                }
            } else {
                if intent != nil { findings.note(.payloadUnknownField, "intent is not defined in NitroRPC/0.2") }
                if version != nil { findings.note(.payloadUnknownField, "version is not defined in NitroRPC/0.2") }
            }
        }
        if let version, version != session.version &+ 1 {
            if version == session.version && allocations == session.allocations && sessionData == session.sessionData {
                return conclude(findings, effect: Effect(session: nil))  // the very state already signed: a retry
            }
            findings.note(
                .versionConflict, "version \(version) is not the next one; custodian signed up to \(session.version)",
                ["expected": "\(session.version &+ 1)", "got": "\(version)"])
        }
        let intent = intent ?? .operate
        let old = session.allocations
        var newTotals = allocations.totals()
        switch intent {
        case .operate:
            checkSums(allocations, expected: session.totals, &findings)
            newTotals = session.totals
        case .deposit, .withdraw:
            var moved = false
            for participant in session.definition.participants {
                let before = old.amounts(of: participant)
                let after = allocations.amounts(of: participant)
                for asset in Set(before.keys).union(after.keys).sorted() {
                    let was = before[asset] ?? .zero
                    let now = after[asset] ?? .zero
                    if intent == .deposit && now < was || intent == .withdraw && was < now {
                        findings.note(
                            .sumMismatch,
                            "a \(intent.rawValue) may not move \(participant)'s \(asset) from \(was) to \(now)",
                            [
                                "participant": participant.checksummed, "asset": asset.value, "was": "\(was)",
                                "got": "\(now)",
                            ])
                    }
                    if was != now { moved = true }
                }
            }
            if !moved { findings.note(.sumMismatch, "a \(intent.rawValue) that changes no allocation") }
            if intent == .deposit, session.definition.wire.depositsOneAsset {
                checkV1Deposit(allocations, session, &findings)
            }
        }
        let held = Set(session.heldAssets).union(newTotals.filter { !$0.value.isZero }.map(\.key)).sorted()
        checkMembership(allocations, requiredPairs(session, held: held), session.definition, &findings)
        checkAssets(allocations, &findings)
        var next = session
        let ownBefore = old.amounts(of: agent)
        let ownAfter = allocations.amounts(of: agent)
        for asset in Set(ownBefore.keys).union(ownAfter.keys).sorted() {
            let change = (ownAfter[asset] ?? .zero) - (ownBefore[asset] ?? .zero)
            if intent == .deposit, change > .zero { next.funding[asset] = (next.funding[asset] ?? .zero) + change }
            if intent == .withdraw, change < .zero {
                next.withdrawn[asset] = (next.withdrawn[asset] ?? .zero) - change
            }
        }
        next.totals = newTotals
        checkFunding(next, &findings)
        checkExposure(old: session, next: next, state: state, &findings)
        let increases = checkLoss(&next, own: ownAfter, state: state, nowMs: nowMs, &findings)
        checkCounterparties(session.definition, agent: agent, &findings)
        next.version = session.version &+ 1
        next.allocations = allocations
        next.sessionData = sessionData
        return conclude(findings, effect: Effect(session: next, realizedLoss: increases))
    }

    // MARK: - create_app_session

    private func evaluateCreate(
        _ definition: AppDefinition, _ allocations: [Allocation], _ sessionData: String?, state: some LedgerView,
        agent: Address, _ findings: inout Findings
    ) -> Decision {
        let id = definition.appSessionID
        checkMembership(allocations, [], definition, &findings)
        checkAssets(allocations, &findings)
        let totals = allocations.totals()
        let record = SessionRecord(
            appSessionID: id, definition: definition, status: .open, version: 1, allocations: allocations,
            sessionData: sessionData, totals: totals, funding: allocations.amounts(of: agent), withdrawn: [:],
            creation: allocations, creationSessionData: sessionData)
        checkFunding(record, &findings)
        if state.session(id) == nil { checkExposure(old: nil, next: record, state: state, &findings) }
        checkCounterparties(definition, agent: agent, &findings)
        if let applications {
            let application = ExactString(definition.application ?? "")
            if !applications.contains(application) {
                findings.note(
                    .applicationNotAllowed,
                    "application \"\(application)\" is not in the policy's sessions.applications",
                    ["application": application.value])
            }
        }
        if definition.wire.definitionNamesProtocol, !protocols.contains(ExactString(definition.protocolName)) {
            findings.note(
                .applicationNotAllowed, "protocol \"\(definition.protocolName)\" is not allowed",
                ["protocol": definition.protocolName])
        }
        if !definition.participants.contains(agent) {
            findings.note(
                .notParticipant, "\(agent) is not a participant of this definition", ["agent": agent.checksummed])
        }
        checkDefinition(definition, &findings)
        if let existing = state.session(id) {
            if existing.creation == allocations && existing.creationSessionData == sessionData {
                return conclude(findings, effect: Effect(session: nil))  // a retry of the signed create
            }
            findings.note(
                .sessionExists, "custodian already signed the creation of \(id) with other content",
                ["app_session_id": id])
        }
        if !allowQuorumWithoutUs, definition.weights.count == definition.participants.count {
            let ourWeight = saturatingSum(
                zip(definition.participants, definition.weights).filter { $0.0 == agent }.map(\.1))
            let others = saturatingSum(definition.weights.filter { $0 > 0 }) - max(ourWeight, 0)
            if others >= 0, UInt64(others) >= definition.quorum {
                findings.note(
                    .quorumWithoutUs,
                    "the other participants' weights (\(others)) reach the quorum (\(definition.quorum)) without this key",
                    ["others_weight": "\(others)", "quorum": "\(definition.quorum)"])
            }
        }
        return conclude(findings, effect: Effect(session: record))
    }

    // MARK: - rules shared by the methods

    /// Per asset, the amounts must sum exactly to the tracked total (0 for an asset the session does not hold).
    private func checkSums(_ allocations: [Allocation], expected: [ExactString: Amount], _ findings: inout Findings) {
        let sums = allocations.totals()
        for asset in Set(sums.keys).union(expected.keys).sorted() {
            let got = sums[asset] ?? .zero
            let want = expected[asset] ?? .zero
            if got != want {
                findings.note(
                    .sumMismatch, "allocations for \(asset) sum to \(got), session total is \(want)",
                    ["asset": asset.value, "expected": "\(want)", "got": "\(got)"])
            }
        }
    }

    /// The (participant, asset) pairs a state must list: v0 every participant × held asset; v1 every pair whose
    /// current amount is not zero (zero pairs may be omitted, as nitronode reads them).
    private func requiredPairs(_ session: SessionRecord, held: [ExactString]) -> [(Address, ExactString)] {
        if session.definition.wire.omitsZeroPairs {
            return session.allocations.filter { !$0.amount.isZero }.map { ($0.participant, $0.asset) }
        }
        return session.definition.participants.flatMap { participant in held.map { (participant, $0) } }
    }

    /// v1: a close lists exactly the current non-zero pairs, each with its current amount (zero pairs may be listed
    /// or omitted).
    private func checkCloseIsCurrent(_ allocations: [Allocation], _ session: SessionRecord, _ findings: inout Findings)
    {
        let current = session.allocations.nonZeroPairs()
        let given = allocations.nonZeroPairs()
        guard current != given else { return }
        let differing = Set(current.keys).union(given.keys).filter { current[$0] != given[$0] }
        if let key = differing.min(by: {
            ($0.asset, $0.participant.checksummed) < ($1.asset, $1.participant.checksummed)
        }) {
            let was = current[key] ?? .zero
            let got = given[key] ?? .zero
            findings.note(
                .closeNotCurrent,
                "a close must equal the current state: \(key.participant) holds \(was) \(key.asset), the close lists \(got)",
                [
                    "participant": key.participant.checksummed, "asset": key.asset.value, "current": "\(was)",
                    "got": "\(got)",
                ])
            return
        }
        findings.note(.closeNotCurrent, "a close must equal the current state")
    }

    /// v1's deposit (nitronode's rules, PROTOCOL-v1 §5): the increase is the depositor's one commit, so in one
    /// asset; a zero entry for a pair with no balance is refused.
    private func checkV1Deposit(_ allocations: [Allocation], _ session: SessionRecord, _ findings: inout Findings) {
        let before = session.allocations.nonZeroPairs()
        var raised = Set<ExactString>()
        for allocation in allocations {
            let key = PairKey(allocation.participant, allocation.asset)
            let was = before[key] ?? .zero
            if allocation.amount.isZero && was.isZero {
                findings.note(
                    .sumMismatch,
                    "a deposit lists a zero \(allocation.asset) entry for \(allocation.participant), who holds none",
                    ["participant": allocation.participant.checksummed, "asset": allocation.asset.value])
            }
            if was < allocation.amount { raised.insert(allocation.asset) }
        }
        if raised.count > 1 {
            findings.note(
                .sumMismatch,
                "a deposit raises \(raised.count) assets; it commits one (\(raised.map(\.value).sorted().joined(separator: ", ")))"
            )
        }
    }

    /// No unknown recipients, no omissions (the `required` pairs), no duplicates.
    private func checkMembership(
        _ allocations: [Allocation], _ required: [(Address, ExactString)], _ definition: AppDefinition,
        _ findings: inout Findings
    ) {
        let participants = definition.participants
        var seen = Set<[UInt8]>()
        for allocation in allocations {
            if !participants.contains(allocation.participant) {
                findings.note(
                    .participantUnknown, "\(allocation.participant) is not a participant of the session",
                    ["participant": allocation.participant.checksummed, "amount": "\(allocation.amount)"])
            }
            let key = allocation.participant.bytes + Array(allocation.asset.value.utf8)
            if !seen.insert(key).inserted {
                findings.note(
                    .duplicateAllocation, "\(allocation.participant) is listed twice for \(allocation.asset)",
                    ["participant": allocation.participant.checksummed, "asset": allocation.asset.value])
            }
        }
        for (participant, asset) in required
        where !allocations.contains(where: { $0.participant == participant && $0.asset == asset }) {
            findings.note(
                .participantMissing, "no \(asset) allocation for participant \(participant)",
                ["participant": participant.checksummed, "asset": asset.value])
        }
    }

    /// Each asset listed by the policy, within its decimals and `max_allocation`.
    private func checkAssets(_ allocations: [Allocation], _ findings: inout Findings) {
        for allocation in allocations {
            guard let rule = assets[allocation.asset] else {
                findings.note(
                    .assetNotAllowed, "the policy does not list the asset \"\(allocation.asset)\"",
                    ["asset": allocation.asset.value])
                continue
            }
            if allocation.amount.fractionDigits > rule.decimals {
                findings.note(
                    .precision,
                    "\(allocation.amount) \(allocation.asset) has \(allocation.amount.fractionDigits) fractional digits; the asset has \(rule.decimals)",
                    ["asset": allocation.asset.value, "amount": "\(allocation.amount)", "decimals": "\(rule.decimals)"])
            }
            if let cap = rule.maxAllocation, cap < allocation.amount {
                findings.note(
                    .capExceeded,
                    "\(allocation.amount) \(allocation.asset) to \(allocation.participant) is above max_allocation \(cap)",
                    [
                        "asset": allocation.asset.value, "participant": allocation.participant.checksummed,
                        "amount": "\(allocation.amount)", "cap": "\(cap)",
                    ])
            }
        }
    }

    /// This key's loss in a state: (funding − withdrawals paid to it) − its allocation.
    private func loss(_ session: SessionRecord, asset: ExactString, newOwn: Amount) -> Amount {
        (session.funding[asset] ?? .zero) - (session.withdrawn[asset] ?? .zero) - newOwn
    }

    private func checkOwnLoss(_ loss: Amount, asset: ExactString, _ findings: inout Findings) {
        if let cap = assets[asset]?.maxOwnLoss, cap < loss {
            findings.note(
                .ownLossExceeded, "this key would lose \(loss) \(asset); max_own_loss is \(cap)",
                ["asset": asset.value, "loss": "\(loss)", "cap": "\(cap)"])
        }
    }

    private func checkFunding(_ session: SessionRecord, _ findings: inout Findings) {
        for (asset, funding) in session.funding.sorted(by: { $0.key < $1.key }) {
            if let cap = assets[asset]?.maxOwnFunding, cap < funding {
                findings.note(
                    .fundingExceeded, "this key's funding of \(funding) \(asset) is above max_own_funding \(cap)",
                    ["asset": asset.value, "funding": "\(funding)", "cap": "\(cap)"])
            }
        }
        for (asset, total) in session.totals.sorted(by: { $0.key < $1.key }) {
            if let cap = assets[asset]?.maxSessionTotal, cap < total {
                findings.note(
                    .fundingExceeded, "the session total of \(total) \(asset) is above max_session_total \(cap)",
                    ["asset": asset.value, "total": "\(total)", "cap": "\(cap)"])
            }
        }
    }

    private func checkCounterparties(_ definition: AppDefinition, agent: Address, _ findings: inout Findings) {
        guard !counterparties.isEmpty else { return }
        for participant in definition.participants where participant != agent && !counterparties.contains(participant) {
            findings.note(
                .counterpartyNotAllowed, "\(participant) is not in [counterparties] allow",
                ["participant": participant.checksummed])
        }
    }

    /// The definitions ClearNode would refuse, and more participants than the policy allows.
    private func checkDefinition(_ definition: AppDefinition, _ findings: inout Findings) {
        let count = definition.participants.count
        if count < 2 { findings.note(.definitionInvalid, "a session needs at least 2 participants, not \(count)") }
        if count > maxParticipants {
            findings.note(
                .definitionInvalid, "\(count) participants; the policy allows \(maxParticipants)",
                ["participants": "\(count)", "max_participants": "\(maxParticipants)"])
        }
        if Set(definition.participants).count != count {
            findings.note(.definitionInvalid, "a participant is listed twice")
        }
        if definition.weights.count != count {
            findings.note(.definitionInvalid, "\(definition.weights.count) weights for \(count) participants")
        }
        if definition.weights.contains(where: { $0 < 0 }) { findings.note(.definitionInvalid, "a weight is negative") }
        let total = saturatingSum(definition.weights.filter { $0 > 0 })
        if definition.quorum > UInt64(max(total, 0)) {
            findings.note(
                .definitionInvalid, "quorum \(definition.quorum) is above the sum of weights \(total)",
                ["quorum": "\(definition.quorum)", "weights": "\(total)"])
        }
        if definition.nonce == 0 { findings.note(.definitionInvalid, "nonce is 0") }
        for problem in definition.wire.nodeRefusals(of: definition) { findings.note(.definitionInvalid, problem) }
    }

    private func saturatingSum(_ values: [Int64]) -> Int64 {
        var sum: Int64 = 0
        for value in values {
            let (next, overflow) = sum.addingReportingOverflow(value)
            sum = overflow ? (value > 0 ? .max : .min) : next
        }
        return sum
    }
}
