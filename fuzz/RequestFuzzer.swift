// libFuzzer entry point over the request reader and the policy evaluation (issue: hostile input).
// Built by fuzz/run.sh from CustodianCore's sources alone (Core does no I/O and imports no C).
//
// Each input is a message: it is read as custodian reads it (a NitroRPC v0 message or a Nitrolite v1 frame) and, if
// accepted, evaluated against a policy and a ledger that already tracks the vectors' v0 session and a v1 session
// played to version 4, at a clock one second after the message's own timestamp. Nothing reachable from the input
// may crash; the checks below also hold for every accepted request.

let policy: Policy = {
    var policy = Policy()
    policy.maxAgeMs = 100_000_000_000_000
    policy.maxFutureMs = 100_000_000_000_000
    policy.assets = [
        "usdc": Policy.AssetRule(decimals: 6, maxAllocation: Amount("10000"), maxOwnLoss: Amount("1000")),
        "eth": Policy.AssetRule(decimals: 18),
    ]
    policy.velocity = Policy.Velocity(windowSeconds: 86_400, maxOwnLoss: ["usdc": Amount("5000") ?? .zero])
    return policy
}()

let agent = Address(eip55: "0xFdEc8F58fA4b3bf07DD11eAF4c562Ee674e2C638")

let v1Session = "0xad01a19bf0d985fb39a902d0ca3ea6943f7c0349214054516bd0c112ab690fde"

let state: LedgerState = {
    var state = LedgerState()
    let a = "0xFdEc8F58fA4b3bf07DD11eAF4c562Ee674e2C638"
    let b = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
    func update(_ method: String, _ intent: Int, _ version: Int, _ amounts: String, _ extra: String = "") -> String {
        #"[1,\#(version),"app_sessions.v1.\#(method)",{"app_state_update":{"app_session_id":"\#(v1Session)","#
            + #""intent":\#(intent),"version":"\#(version)","allocations":\#(amounts),"session_data":""}\#(extra),"#
            + #""quorum_sigs":[]},1733000000000]"#
    }
    func pair(_ amountA: String, _ amountB: String) -> String {
        #"[{"participant":"\#(a)","asset":"usdc","amount":"\#(amountA)"},"#
            + #"{"participant":"\#(b)","asset":"usdc","amount":"\#(amountB)"}]"#
    }
    let messages = [
        #"[1001,"create_app_session",{"definition":{"application":"chess","protocol":"NitroRPC/0.4","participants":["\#(a)","\#(b)"],"weights":[50,50],"quorum":100,"challenge":86400,"nonce":1733000000000},"allocations":\#(pair("100", "50"))},1733000000000]"#,
        #"[1,1,"app_sessions.v1.create_app_session",{"definition":{"application_id":"chess","participants":[{"wallet_address":"\#(a)","signature_weight":1},{"wallet_address":"\#(b)","signature_weight":1}],"quorum":2,"nonce":"1733000000000"},"session_data":"","quorum_sigs":[]},1733000000000]"#,
        update("submit_deposit_state", 1, 2, #"[{"participant":"\#(a)","asset":"usdc","amount":"100"}]"#, #","user_state":{}"#),
        update("submit_deposit_state", 1, 3, pair("100", "50"), #","user_state":{}"#),
        update("submit_app_state", 0, 4, pair("70", "80")),
    ]
    for message in messages {
        if let agent, case .success(let request) = RequestReader().read(Array(message.utf8)),
            case .allow(let effect) = policy.evaluate(request, state: state, agent: agent, nowMs: 1_733_000_001_000)
        {
            state.apply(effect, atMs: 1_733_000_001_000)
        }
    }
    precondition(state.sessions.count == 2 && state.session(v1Session)?.version == 4, "the fuzzer's ledger")
    return state
}()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let message = Array(UnsafeBufferPointer(start: data, count: size))
    guard case .success(let request) = RequestReader().read(message), let agent else { return 0 }
    let signature = "0x" + String(repeating: "a", count: 130)
    let signed = request.signedMessage(appending: signature)
    guard case .success(let again) = RequestReader().read(signed) else {
        preconditionFailure("the message custodian returns does not read back")
    }
    switch request.wireProtocol {
    case .nitroRPCv0:
        // What is signed is a span of what was received, and its digest is Keccak-256 of exactly that span.
        precondition(request.signedBytes.count <= message.count)
        precondition(request.digest == Keccak256.hash(request.signedBytes))
        precondition(again.signedBytes == request.signedBytes)
    case .nitroliteV1:
        // What is signed is the EIP-191 digest of the hash of the values read; the returned frame, with the quorum
        // signature appended, holds the same values (the same hash), and reading the kept text gives it again.
        precondition(request.digest == NitroliteV1Reader.eip191Digest(request.requestHash))
        precondition(again.requestHash == request.requestHash && again.wireProtocol == .nitroliteV1)
        guard case .success(let reread) = RequestReader().read(request.signedBytes) else {
            preconditionFailure("the frame the log keeps does not read back")
        }
        precondition(reread.requestHash == request.requestHash)
        precondition(request.quorumSignature(signature) == "0xa1" + String(repeating: "a", count: 130))
    }
    let now = request.timestamp &+ 1000
    switch policy.evaluate(request, state: state, agent: agent, nowMs: now) {
    case .allow(let effect):
        // An allowed close pays out exactly the tracked totals.
        if case .close(let id, let allocations, _, _) = request.body, let session = state.session(id),
            session.status == .open
        {
            precondition(allocations.totals().filter { !$0.value.isZero } == session.totals.filter { !$0.value.isZero })
            // A v1 close is the current state itself.
            if session.definition.wire.closeIsValueNeutral {
                precondition(allocations.nonZeroPairs() == session.allocations.nonZeroPairs())
            }
        }
        _ = effect
    case .deny(let denial):
        precondition(!denial.detail.isEmpty)
    }
    return 0
}
