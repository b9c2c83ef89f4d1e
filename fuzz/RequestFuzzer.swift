// libFuzzer entry point over the request reader and the policy evaluation (issue: hostile input).
// Built by fuzz/run.sh from CustodianCore's sources alone (Core does no I/O and imports no C).
//
// Each input is a message: it is read as NitroRPC v0 and, if accepted, evaluated against a policy and a ledger
// that already tracks the vectors' session, at a clock one second after the message's own timestamp. Nothing
// reachable from the input may crash; the checks below also hold for every accepted request.

let policy: Policy = {
    var policy = Policy()
    policy.maxAgeMs = 100_000_000_000_000
    policy.assets = [
        "usdc": Policy.AssetRule(decimals: 6, maxAllocation: Amount("10000"), maxOwnLoss: Amount("1000")),
        "eth": Policy.AssetRule(decimals: 18),
    ]
    policy.velocity = Policy.Velocity(windowSeconds: 86_400, maxOwnLoss: ["usdc": Amount("5000") ?? .zero])
    return policy
}()

let agent = Address(eip55: "0xFdEc8F58fA4b3bf07DD11eAF4c562Ee674e2C638")

let state: LedgerState = {
    var state = LedgerState()
    let create = #"[1001,"create_app_session",{"definition":{"application":"chess","protocol":"NitroRPC/0.4","participants":["0xFdEc8F58fA4b3bf07DD11eAF4c562Ee674e2C638","0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"],"weights":[50,50],"quorum":100,"challenge":86400,"nonce":1733000000000},"allocations":[{"participant":"0xFdEc8F58fA4b3bf07DD11eAF4c562Ee674e2C638","asset":"usdc","amount":"100"},{"participant":"0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266","asset":"usdc","amount":"50"}]},1733000000000]"#
    if let agent, case .success(let request) = NitroRPCv0Reader().read(Array(create.utf8)),
        case .allow(let effect) = policy.evaluate(request, state: state, agent: agent, nowMs: 1_733_000_001_000)
    {
        state.apply(effect, atMs: 1_733_000_001_000)
    }
    return state
}()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let message = Array(UnsafeBufferPointer(start: data, count: size))
    guard case .success(let request) = NitroRPCv0Reader().read(message), let agent else { return 0 }
    // What is signed is a span of what was received, and its digest is Keccak-256 of exactly that span.
    precondition(request.signedBytes.count <= message.count)
    precondition(request.digest == Keccak256.hash(request.signedBytes))
    let envelope = NitroRPCv0Reader.envelope(for: request, appending: "0x" + String(repeating: "a", count: 130))
    guard case .success(let again) = NitroRPCv0Reader().read(envelope) else {
        preconditionFailure("the envelope custodian returns does not read back")
    }
    precondition(again.signedBytes == request.signedBytes)
    let now = request.timestamp &+ 1000
    switch policy.evaluate(request, state: state, agent: agent, nowMs: now) {
    case .allow(let effect):
        // An allowed close pays out exactly the tracked totals.
        if case .close(let id, let allocations, _) = request.body, let session = state.session(id),
            session.status == .open
        {
            precondition(allocations.totals().filter { !$0.value.isZero } == session.totals.filter { !$0.value.isZero })
        }
        _ = effect
    case .deny(let denial):
        precondition(!denial.detail.isEmpty)
    }
    return 0
}
