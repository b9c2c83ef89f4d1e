import CustodianCore
import CustodianCrypto
import Foundation

/// v1 home-channel states (PROTOCOL-v1-channels; CONTRACT §3 "v1 channel states"): `channels.v1.request_creation`
/// and `submit_state` frames decided from this key's own copy of each channel, the commit inside an app deposit,
/// the node's answers (`observe`) and an operator's resume of a stopped channel. Every one is decided under the
/// engine's lock with a ticket, like app-session requests, and its record is durable before its reply leaves.
///
/// A channel-bearing record names the token `decimals` right before `req` (so the log's fast readers, which expect
/// `req` after `request_hash`, pass it to the strict parser): from the record alone the verifier and replay rebuild
/// the 640-byte message that was signed.
extension Engine {
    /// The outflow window: the policy's `[velocity] window_s`, a day without one.
    var channelWindowSeconds: UInt64 { policy.policy.velocity?.windowSeconds ?? 86_400 }

    /// Decides a channel frame (``ChannelStateReader/isChannelFrame(_:)``) and replies once the decision is durable.
    func signChannel(
        _ message: [UInt8], peer: Peer?, deferWrite: Bool, reply: @escaping @Sendable (SignOutcome) -> Void
    ) {
        let read = ChannelStateReader().read(message)
        let method = (try? read.get()).map { Self.methodName($0.frame) } ?? ""
        let counted = counting(method: method, wire: WireProtocol.nitroliteV1.rawValue, reply: reply)
        submit(deferWrite: deferWrite, orElse: { counted(.unavailable("the agent is stopping")) }) { [self] now in
            planChannel(message, read: read, peer: peer, now: now, reply: counted)
        }
    }

    public static func methodName(_ frame: ChannelFrame) -> String {
        switch frame {
        case .submitState: "channels.v1.submit_state"
        case .requestCreation: "channels.v1.request_creation"
        case .submitSessionKeyState: "channels.v1.submit_session_key_state"
        }
    }

    /// `0x00` ‖ the signature: a channel state's `user_sig` (the default signer's type byte).
    static func userSig(_ signature: String) -> String {
        "0x" + ChannelState.defaultSignerType + signature.dropFirst(2)
    }

    func planChannel(
        _ message: [UInt8], read: Result<(requestID: UInt64, timestamp: UInt64, frame: ChannelFrame), Denial>,
        peer: Peer?, now: UInt64, reply: @escaping @Sendable (SignOutcome) -> Void
    ) -> Plan {
        let request: (requestID: UInt64, timestamp: UInt64, frame: ChannelFrame)
        switch read {
        case .failure(let denial):
            return refuseUnread(message, shape: .nitroliteV1, denial, peer: peer, now: now, reply: reply)
        case .success(let value): request = value
        }
        let dropped = { reply(.unavailable("the decision could not be recorded")) }
        let policyHash = policy.hash
        let method = Self.methodName(request.frame)
        let sent: ChannelStateWire? =
            switch request.frame {
            case .submitState(let state), .requestCreation(let state, _): state
            case .submitSessionKeyState: nil
            }
        // The decimals the message is built at: the channel's (custodian's copy), or for a new channel the policy's.
        let decimals = sent.flatMap { wire in
            wire.homeChannelID.flatMap { self.state.channels.channels[$0]?.copy.decimals }
                ?? policy.policy.channels?.assets[wire.asset]?.decimals
        }
        let sentMessage = decimals.flatMap { decimals in
            sent.flatMap { ChannelState.message(of: $0, decimals: decimals) }
        }
        let decision = state.channels.decide(
            request.frame, policy: policy.policy.channels, agent: address, nowMs: now,
            windowSeconds: channelWindowSeconds)
        let channelID = sent?.homeChannelID ?? ""
        let common: (inout JSONWriter, _ hashed: [UInt8]?, _ refused: Bool) -> Void = { writer, hashed, refused in
            writePeer(peer, &writer)
            writer.field("policy_hash", policyHash)
            writer.field("method", method)
            writer.field("protocol", WireProtocol.nitroliteV1.rawValue)
            writer.field("channel_id", channelID)
            if let hashed, let decimals {
                writer.field("request_hash", Hex.encode(Keccak256.hash(hashed), prefixed: true))
                writer.field("decimals", Int(decimals))
            }
            if refused && message.count > RefusalText.reqLimit {
                writer.field("req", utf8: RefusalText.prefix(message, RefusalText.reqLimit))
                writer.field("req_bytes", message.count)
            } else {
                writer.field("req", utf8: message)
            }
        }
        let signedMessage: [UInt8]
        switch decision {
        case .refuse(let denial):
            return .ready(
                stage: { [log] in
                    let seq = log.stage(event: "sign", timeMs: now) { writer in
                        common(&writer, sentMessage, true)
                        writer.field("decision", "deny")
                        writeDenial(denial, &writer)
                    }
                    return Completion(durable: { reply(.refused(denial, auditSeq: seq)) }, dropped: dropped)
                }, dropped: dropped)
        case .sign(let built, let effect):
            state.apply(channel: effect)
            signedMessage = built
        case .retry(let built):
            signedMessage = built
        }
        return .sign(
            digests: [ChannelState.eip191Digest(signedMessage)],
            stage: { [log] signatures in
                let signature = signatures.first ?? ""
                return {
                    let seq = log.stage(event: "sign", timeMs: now) { writer in
                        common(&writer, signedMessage, false)
                        writer.field("decision", "allow")
                        writer.field("signature", signature)
                    }
                    let userSig = Self.userSig(signature)
                    let outcome = SignOutcome.signed(
                        signature: signature, quorumSig: nil,
                        envelope: ChannelStateReader.filling(message, key: "state", userSig: userSig) ?? message,
                        requestHash: Hex.encode(Keccak256.hash(signedMessage), prefixed: true), auditSeq: seq,
                        userSig: userSig)
                    return Completion(durable: { reply(outcome) }, dropped: dropped)
                }
            }, dropped: dropped)
    }

    /// The record and reply of a message that could not be read: its SHA-256 and length, never its text.
    func refuseUnread(
        _ message: [UInt8], shape: WireProtocol?, _ denial: Denial, peer: Peer?, now: UInt64,
        reply: @escaping @Sendable (SignOutcome) -> Void
    ) -> Plan {
        refuseUnread(
            message, event: "sign", shape: shape, denial, peer: peer, now: now,
            durable: { reply(.refused(denial, auditSeq: $0)) },
            dropped: { reply(.unavailable("the decision could not be recorded")) })
    }

    /// The record of a message (a `sign`, an `observe`) that could not be read; `durable` gets its seq.
    func refuseUnread(
        _ message: [UInt8], event: String, shape: WireProtocol?, _ denial: Denial, peer: Peer?, now: UInt64,
        durable: @escaping @Sendable (UInt64) -> Void, dropped: @escaping @Sendable () -> Void
    ) -> Plan {
        let policyHash = policy.hash
        return .ready(
            stage: { [log] in
                let seq = log.stage(event: event, timeMs: now) { writer in
                    writePeer(peer, &writer)
                    writer.field("policy_hash", policyHash)
                    // The protocol the message's shape names, where it is JSON at all.
                    if let shape { writer.field("protocol", shape.rawValue) }
                    writer.field("message_sha256", SHA256.hex(message))
                    writer.field("message_bytes", message.count)
                    writer.field("decision", "deny")
                    writeDenial(denial, &writer)
                }
                return Completion(durable: { durable(seq) }, dropped: dropped)
            }, dropped: dropped)
    }
}

/// The answer to an `observe`.
public enum ObserveOutcome: Sendable {
    /// Taken (or already known) and recorded: the channel, the state's version.
    case accepted(channel: String, version: UInt64, auditSeq: UInt64)
    case refused(Denial, auditSeq: UInt64)
    /// Nothing recorded: why, and whether the audit log or the ledger database is the cause.
    case unavailable(Denial)
}

extension Engine {
    /// The method of the node's answer custodian observes.
    static let observedMethod = "channels.v1.get_latest_state"

    /// Reads a nitronode answer to `channels.v1.get_latest_state`: `[2, id, method, {"state": {…}}, ts]`, strictly.
    static func readObserved(_ message: [UInt8]) -> Result<ChannelStateWire, Denial> {
        let root: StrictJSON.Node
        switch StrictJSON.parse(message) {
        case .success(let value): root = value
        case .failure(let failure): return .failure(RequestReader.denial(failure))
        }
        guard let frame = root.value.elements, frame.count == 5, frame[0].value.numberToken == "2",
            frame[1].value.numberToken != nil, frame[4].value.numberToken != nil
        else {
            return .failure(Denial(.payloadMalformed, "an answer is a v1 frame [2, id, method, payload, ts]"))
        }
        guard let method = frame[2].value.string, method.hasSameBytes(as: observedMethod) else {
            return .failure(Denial(.payloadMethodNotAllowed, "only answers to \(observedMethod) are observed"))
        }
        guard let payload = frame[3].value.members, payload.count == 1, let state = payload.member("state") else {
            return .failure(Denial(.payloadMalformed, "the answer's payload is {\"state\": {…}} and nothing else"))
        }
        return ChannelStateReader().readState(Array(message[state.span]))
    }

    /// Checks a state the node answered with (PROTOCOL-v1-channels §7.3: its signature, and for a node-issued state
    /// the rules for a new base) and records the decision. A refusal changes nothing, except that a state the node
    /// itself signed and custodian cannot take stops signing on that channel until an operator resumes it (the
    /// node lies, or custodian missed a state).
    public func observe(message: [UInt8], peer: Peer?, reply: @escaping @Sendable (ObserveOutcome) -> Void) {
        let read = Self.readObserved(message)
        let dropCause = dropCause
        submit(orElse: { reply(.unavailable(dropCause.denial(orElse: "the agent is stopping"))) }) { [self] now in
            let policyHash = policy.hash
            let dropped: @Sendable () -> Void = {
                reply(.unavailable(dropCause.denial(orElse: "the observation could not be recorded")))
            }
            let observed: ChannelStateWire
            switch read {
            case .failure(let denial):
                return refuseUnread(
                    message, event: "observe", shape: nil, denial, peer: peer, now: now,
                    durable: { reply(.refused(denial, auditSeq: $0)) }, dropped: dropped)
            case .success(let state): observed = state
            }
            let entry = observed.homeChannelID.flatMap { state.channels.channels[$0] }
            let decimals = entry?.copy.decimals
            let signed = decimals.flatMap { ChannelState.message(of: observed, decimals: $0) }
            var nodeSigner: Address?
            if let signed, let text = observed.nodeSig, text.utf8.count == 134, text.hasPrefix("0x00"),
                let signature = Hex.decode(text.dropFirst(4))
            {
                nodeSigner = Recovery.strictAddress(digest: ChannelState.eip191Digest(signed), signature: signature)
            }
            let outcome = state.channels.observe(
                observed, message: signed, nodeSigner: nodeSigner, policy: policy.policy.channels)
            var kind = "known"
            var refusal: Denial?
            var halted: String?
            switch outcome {
            case .cosigned(let taken):
                kind = "cosigned"
                state.accept(channel: taken)
            case .newBase(let taken):
                kind = "node_issued"
                state.accept(channel: taken)
            case .known: break
            case .refused(let denial, let halt):
                refusal = denial
                if let halt {
                    halted = halt.halted
                    state.accept(channel: halt)
                }
            }
            let channelID = observed.homeChannelID ?? ""
            return .ready(
                stage: { [log] in
                    let seq = log.stage(event: "observe", timeMs: now) { writer in
                        writePeer(peer, &writer)
                        writer.field("policy_hash", policyHash)
                        writer.field("method", Self.observedMethod)
                        writer.field("protocol", WireProtocol.nitroliteV1.rawValue)
                        writer.field("channel_id", channelID)
                        writer.field("version", observed.version)
                        if let signed, let decimals {
                            writer.field("request_hash", Hex.encode(Keccak256.hash(signed), prefixed: true))
                            writer.field("decimals", Int(decimals))
                        }
                        writer.field("req", utf8: RefusalText.prefix(message, RefusalText.reqLimit))
                        if let refusal {
                            writer.field("decision", "deny")
                            writeDenial(refusal, &writer)
                            if let halted { writer.field("halted", halted) }
                        } else {
                            writer.field("decision", "accept")
                            writer.field("observed", kind)
                            if let nodeSigner { writer.field("node", nodeSigner.checksummed) }
                        }
                    }
                    let result: ObserveOutcome =
                        refusal.map { .refused($0, auditSeq: seq) }
                        ?? .accepted(channel: channelID, version: observed.version, auditSeq: seq)
                    return Completion(durable: { reply(result) }, dropped: dropped)
                }, dropped: dropped)
        }
    }

    /// An operator's resume of a channel whose signing stopped (`custodian channel resume`): recorded with who asked;
    /// `reply` gets nil once it is recorded, else why not: `session.unknown` (no such stopped channel), or
    /// `audit.unavailable` / `ledger.unavailable` (not recorded).
    public func resumeChannel(_ channelID: String, peer: Peer?, reply: @escaping @Sendable (Denial?) -> Void) {
        let dropCause = dropCause
        let dropped: @Sendable () -> Void = { reply(dropCause.denial(orElse: "the resume could not be recorded")) }
        submit(orElse: { reply(dropCause.denial(orElse: "the agent is stopping")) }) { [self] now in
            let policyHash = policy.hash
            guard var entry = state.channels.channels[channelID], let reason = entry.halted else {
                return refuseOperator(
                    "channel_resume", channelID,
                    Denial(.sessionUnknown, "custodian holds no stopped channel \(channelID)"), peer: peer, now: now,
                    reply: reply)
            }
            entry.halted = nil
            state.accept(channel: entry)
            return .ready(
                stage: { [log] in
                    log.stage(event: "operator", timeMs: now) { writer in
                        writePeer(peer, &writer)
                        writer.field("policy_hash", policyHash)
                        writer.field("action", "channel_resume")
                        writer.field("channel_id", channelID)
                        writer.field("halted", reason)
                    }
                    return Completion(durable: { reply(nil) }, dropped: dropped)
                }, dropped: dropped)
        }
    }

    /// An operator's challenge (`custodian channel challenge`): this key's EIP-191 signature over the 672-byte
    /// challenge of its latest state the node co-signed (PROTOCOL-v1-channels §3.2, §7.9), recorded with who asked.
    /// `reply` gets the version and the challenger signature (`0x00` ‖ signature), or why not.
    public func challengeChannel(
        _ channelID: String, peer: Peer?,
        reply: @escaping @Sendable (Result<(version: UInt64, signature: String), Denial>) -> Void
    ) {
        let dropCause = dropCause
        let dropped: @Sendable () -> Void = {
            reply(.failure(dropCause.denial(orElse: "the challenge could not be recorded")))
        }
        submit(orElse: { reply(.failure(dropCause.denial(orElse: "the agent is stopping"))) }) { [self] now in
            let policyHash = policy.hash
            let challenge: (message: [UInt8], version: UInt64)
            switch state.channels.challenge(channelID) {
            case .failure(let denial):
                return refuseOperator(
                    "channel_challenge", channelID, denial, peer: peer, now: now, reply: { reply(.failure($0)) })
            case .success(let value): challenge = value
            }
            return .sign(
                digests: [ChannelState.eip191Digest(challenge.message)],
                stage: { [log] signatures in
                    let signature = signatures.first ?? ""
                    return {
                        log.stage(event: "operator", timeMs: now) { writer in
                            writePeer(peer, &writer)
                            writer.field("policy_hash", policyHash)
                            writer.field("action", "channel_challenge")
                            writer.field("channel_id", channelID)
                            writer.field("version", challenge.version)
                            writer.field(
                                "challenge_hash", Hex.encode(Keccak256.hash(challenge.message), prefixed: true))
                            writer.field("signature", signature)
                        }
                        return Completion(
                            durable: { reply(.success((challenge.version, Self.userSig(signature)))) },
                            dropped: dropped)
                    }
                }, dropped: dropped)
        }
    }

    /// The record of an operator's channel command that was refused (nothing changed); `reply` gets the refusal
    /// once it is durable (or the audit failure).
    func refuseOperator(
        _ action: String, _ channelID: String, _ denial: Denial, peer: Peer?, now: UInt64,
        reply: @escaping @Sendable (Denial) -> Void
    ) -> Plan {
        let policyHash = policy.hash
        let dropCause = dropCause
        let dropped: @Sendable () -> Void = {
            reply(dropCause.denial(orElse: "the refusal could not be recorded"))
        }
        return .ready(
            stage: { [log] in
                log.stage(event: "operator", timeMs: now) { writer in
                    writePeer(peer, &writer)
                    writer.field("policy_hash", policyHash)
                    writer.field("action", action)
                    writer.field("channel_id", channelID)
                    writer.field("decision", "deny")
                    writeDenial(denial, &writer)
                }
                return Completion(durable: { reply(denial) }, dropped: dropped)
            }, dropped: dropped)
    }
}
