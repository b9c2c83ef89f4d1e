// libFuzzer entry point over the request reader and the policy evaluation (issue: hostile input).
// Built by fuzz/run.sh from CustodianCore's sources alone (Core does no I/O and imports no C).
//
// Each input is a message: it is read as custodian reads it (a NitroRPC v0 message, a Nitrolite v1 frame, or a v1
// channel frame, decided against the vectors' home channel) and, if
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

/// The vectors' home channel (vectors/v1-channels: A's usdc channel on Base with node N) at version 1, taken as its
/// record would be replayed, and a [channels] policy for it.
let channelPolicy: ChannelPolicy? = {
    guard let node = Address(eip55: "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"),
        let token = Address(eip55: "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913"),
        let b = Address(eip55: "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266")
    else { return nil }
    return ChannelPolicy(
        node: node,
        assets: [
            "usdc": ChannelPolicy.Asset(
                chainID: 8453, token: token, decimals: 6, maxTransfer: Amount("1000"), maxOutflow: Amount("5000"))
        ], transferRecipients: [b])
}()

let channels: ChannelLedger = {
    var ledger = ChannelLedger()
    let created =
        #"{"id":"0x0c3a4fc4185879800512bacbab3098cdba6192fa751438695abc995d750b69e5","transition":{"type":10,"#
        + #""tx_id":"0xf90f2bfc6edecbc76a969a82e73fff4eef984b95f097aee80c3589b5580b7e1c","#
        + #""account_id":"0x017f13816de5b43314eb79376aaa9d846e566cccb4a2ddacdf333549b9aca0c1","amount":"150"},"#
        + #""asset":"usdc","user_wallet":"0xfdec8f58fa4b3bf07dd11eaf4c562ee674e2c638","epoch":"0","version":"1","#
        + #""home_channel_id":"0x017f13816de5b43314eb79376aaa9d846e566cccb4a2ddacdf333549b9aca0c1","#
        + #""home_ledger":{"token_address":"0x833589fcd6edb6e08f4c7c32d4f71b54bda02913","blockchain_id":"8453","#
        + #""user_balance":"150","user_net_flow":"150","node_balance":"0","node_net_flow":"0"}}"#
    if case .success(let state) = ChannelStateReader().readState(Array(created.utf8)),
        let effect = ledger.replaySigned(state, decimals: 6, creation: true, nowMs: 1_752_580_000_000)
    {
        ledger.apply(effect)
    }
    precondition(ledger.channels.count == 1, "the fuzzer's channel")
    return ledger
}()

/// A channel frame: read strictly, decided from the copy; what is signed is the 640-byte message of the values
/// checked (the state sent, which must equal custodian's), and the frame returned with user_sig reads back to the
/// same state.
func fuzzChannel(_ message: [UInt8]) {
    guard case .success(let read) = ChannelStateReader().read(message), let agent else { return }
    let sent: ChannelStateWire
    let key = "state"
    switch read.frame {
    case .submitState(let state), .requestCreation(let state, _): sent = state
    case .submitSessionKeyState: return
    }
    switch channels.decide(read.frame, policy: channelPolicy, agent: agent, nowMs: read.timestamp, windowSeconds: 86_400)
    {
    case .sign(let signed, let effect):
        precondition(signed.count == 640 && signed == ChannelState.message(of: sent, decimals: 6))
        precondition(effect.entry.copy.version == sent.version && effect.entry.copy.ledger == sent.homeLedger)
        let userSig = "0x00" + String(repeating: "b", count: 130)
        guard let filled = ChannelStateReader.filling(message, key: key, userSig: userSig),
            case .success(let again) = ChannelStateReader().read(filled)
        else { preconditionFailure("the frame custodian returns does not read back") }
        switch again.frame {
        case .submitState(let state), .requestCreation(let state, _):
            var expected = sent
            expected.userSig = userSig
            precondition(state == expected)
        case .submitSessionKeyState: preconditionFailure("another frame")
        }
    case .retry(let signed): precondition(signed == ChannelState.message(of: sent, decimals: 6))
    case .refuse(let denial): precondition(!denial.detail.isEmpty)
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let message = Array(UnsafeBufferPointer(start: data, count: size))
    if ChannelStateReader.isChannelFrame(message) {
        fuzzChannel(message)
        return 0
    }
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
