import CustodianCore
import CustodianTestSupport
import Foundation
import Testing

/// Tests/Vectors/v1 (a copy of ../shared/vectors/v1): every app_session_id, create and state-update hash and
/// EIP-191 digest that custodian computes from the values it reads must equal the vector's, byte for byte; and
/// every frame nitronode's decoder reads differently from a strict parser (go_decode/) is refused with its reason.
@Suite("Nitrolite v1 vectors")
struct V1VectorTests {
    static let folder = "v1"
    /// The state-update and create cases: a frame, its packed hash and EIP-191 digest.
    static let frames = [
        "amount_exponent_sdk_mismatch.json", "amount_normalisation_150_0.json", "close_two_party.json",
        "create_two_party.json", "deposit_two_party.json", "operate_two_party.json", "session_key_quorum_sig.json",
        "withdraw_two_party.json",
    ]

    @Test("the folder holds the 12 cases these suites read, and 18 go_decode frames")
    func counts() {
        #expect(VectorFiles.names(Self.folder).count == 12)
        #expect(VectorFiles.names(Self.folder + "/go_decode").count == 18)
    }

    /// The frame of a case, completed where the vector leaves it incomplete: a deposit's `user_state` (the
    /// depositor's channel state, which custodian passes through unread) is not in the vector.
    static func frame(_ vector: [String: Any]) throws -> [UInt8] {
        var text = try #require(vector["frame_text"] as? String)
        if text.contains("app_sessions.v1.submit_deposit_state") {
            text = text.replacingOccurrences(of: #""quorum_sigs":"#, with: #""user_state":{},"quorum_sigs":"#)
        }
        return Array(text.utf8)
    }

    @Test(arguments: frames)
    func hashes(_ name: String) throws {
        let vector = try VectorFiles.load(Self.folder, name)
        let request = try NitroliteV1Reader().read(Self.frame(vector)).get()
        let packed = try VectorFiles.bytes(hex: try #require(vector["packed_hash"] as? String))
        #expect(request.requestHash == packed, "\(name)")
        #expect(request.digest == (try VectorFiles.bytes(hex: try #require(vector["eip191_digest"] as? String))))
        if let preimage = vector["eip191_preimage_hex"] as? String {
            // Keccak against the vector, not against itself: the preimage's hash is the digest.
            #expect(Keccak256.hash(try VectorFiles.bytes(hex: preimage)) == request.digest)
        }
        if let words = vector["abi_encoding_words"] as? [String] {
            #expect(Keccak256.hash(try VectorFiles.bytes(hex: words.joined())) == packed)
        }
        if let id = vector["app_session_id"] as? String {
            #expect(request.namedSessionID == id)
        }
        if name == "create_two_party.json", case .create(let definition, let allocations, _) = request.body {
            #expect(definition.appSessionID == "0xad01a19bf0d985fb39a902d0ca3ea6943f7c0349214054516bd0c112ab690fde")
            #expect(allocations.isEmpty)
        }
    }

    @Test(arguments: ["app_session_id_two_party.json", "app_session_id_three_party.json"])
    func appSessionID(_ name: String) throws {
        let vector = try VectorFiles.load(Self.folder, name)
        let text = try #require(vector["definition_text"] as? String)
        let frame = #"[1,1,"app_sessions.v1.create_app_session",{"definition":"# + text + #","quorum_sigs":[]},1]"#
        let request = try NitroliteV1Reader().read(Array(frame.utf8)).get()
        guard case .create(let definition, _, _) = request.body else {
            Issue.record("not a create")
            return
        }
        #expect(definition.appSessionID == vector["app_session_id"] as? String)
        #expect(definition.appSessionID == vector["app_session_id_with_lower_case_participants"] as? String)
        var reversed = definition
        reversed.participants.reverse()
        reversed.weights.reverse()
        #expect(reversed.appSessionID == vector["app_session_id_with_participants_reversed_NOT_this"] as? String)
        let words = try #require(vector["abi_encoding_words"] as? [String])
        #expect(
            Keccak256.hash(try VectorFiles.bytes(hex: words.joined()))
                == (try VectorFiles.bytes(hex: definition.appSessionID)))
    }

    @Test("150.0 hashes as 150, and the text as written is not what is signed")
    func normalisation() throws {
        let vector = try VectorFiles.load(Self.folder, "amount_normalisation_150_0.json")
        let request = try NitroliteV1Reader().read(Self.frame(vector)).get()
        let wrong = try VectorFiles.bytes(
            hex: try #require(vector["packed_hash_if_hashed_as_written_NOT_this"] as? String))
        #expect(request.requestHash != wrong)
        let canonical = try #require(vector["same_hash_as_canonical_text"] as? [String: Any])
        let update = String(decoding: try JSONSerialization.data(withJSONObject: canonical), as: UTF8.self)
        let frame =
            #"[1,1,"app_sessions.v1.submit_app_state",{"app_state_update":"# + update + #","quorum_sigs":[]},1]"#
        #expect(try NitroliteV1Reader().read(Array(frame.utf8)).get().requestHash == request.requestHash)
    }

    @Test("an 18-decimal amount below 1e-6 hashes in plain notation, as Go does, not as the SDK's decimal.js")
    func exponent() throws {
        let vector = try VectorFiles.load(Self.folder, "amount_exponent_sdk_mismatch.json")
        let request = try NitroliteV1Reader().read(Self.frame(vector)).get()
        let sdk = try VectorFiles.bytes(
            hex: try #require(vector["packed_hash_as_typescript_sdk_computes_NOT_this"] as? String))
        #expect(request.requestHash != sdk)
    }

    /// upstream_drift_reproduced.json: the hashes Go's packers give (pinned upstream), reproduced by reading frames
    /// of the same values (the inputs are those of generate_v1.py's UPSTREAM_CASES).
    @Test func upstreamDrift() throws {
        let vector = try VectorFiles.load(Self.folder, "upstream_drift_reproduced.json")
        let cases = try #require(vector["cases"] as? [[String: Any]])
        #expect(cases.count == 9)
        var pinned: [String: String] = [:]
        for entry in cases {
            pinned[try #require(entry["name"] as? String)] = entry["hash"] as? String
        }
        let user = "0x1111111111111111111111111111111111111111"
        let store = "0x2222222222222222222222222222222222222222"
        func definition(nonce: String) -> String {
            #"{"application_id":"store-v1","participants":[{"wallet_address":"\#(user)","signature_weight":1},"#
                + #"{"wallet_address":"\#(store)","signature_weight":1}],"quorum":2,"nonce":"\#(nonce)"}"#
        }
        func create(nonce: String, data: String) throws -> SignableRequest {
            let sessionData = String(
                decoding: try JSONSerialization.data(withJSONObject: [data], options: .withoutEscapingSlashes),
                as: UTF8.self
            ).dropFirst().dropLast()
            let frame =
                #"[1,1,"app_sessions.v1.create_app_session",{"definition":"# + definition(nonce: nonce)
                + #","session_data":"# + sessionData + #","quorum_sigs":[]},1]"#
            return try NitroliteV1Reader().read(Array(frame.utf8)).get()
        }
        let created = try create(nonce: "123456789", data: #"{"cart":"demo"}"#)
        #expect(Hex.encode(created.requestHash, prefixed: true) == pinned["create_session"])
        guard case .create(let storeDefinition, _, _) = created.body else { throw VectorError("not a create") }
        #expect(storeDefinition.appSessionID == pinned["app_session_id"])
        let maxNonce = try create(nonce: "18446744073709551615", data: #"{"cart":"max-nonce"}"#)
        #expect(Hex.encode(maxNonce.requestHash, prefixed: true) == pinned["max_uint64_nonce_create_session"])
        func update(_ intent: Int, _ version: String, _ amounts: (String, String), _ data: String) throws -> String {
            let method = intent == 1 ? "app_sessions.v1.submit_deposit_state" : "app_sessions.v1.submit_app_state"
            let sessionData = String(decoding: try JSONSerialization.data(withJSONObject: [data]), as: UTF8.self)
                .dropFirst().dropLast()
            let frame =
                #"[1,1,"\#(method)",{"app_state_update":{"app_session_id":"\#(storeDefinition.appSessionID)","#
                + #""intent":\#(intent),"version":"\#(version)","allocations":["#
                + #"{"participant":"\#(user)","asset":"YUSD","amount":"\#(amounts.0)"},"#
                + #"{"participant":"\#(store)","asset":"YUSD","amount":"\#(amounts.1)"}],"session_data":"# + sessionData
                + "}," + (intent == 1 ? #""user_state":{},"# : "") + #""quorum_sigs":[]},1]"#
            return Hex.encode(try NitroliteV1Reader().read(Array(frame.utf8)).get().requestHash, prefixed: true)
        }
        #expect(try update(1, "2", ("1.25", "0"), #"{"intent":"deposit"}"#) == pinned["deposit"])
        #expect(
            try update(0, "3", ("0.35", "0.90"), #"{"intent":"purchase","item_id":1,"item_price":"0.90"}"#)
                == pinned["operate_purchase (amount written 0.90, Go hashes 0.9)"])
        #expect(try update(2, "4", ("0.10", "0.90"), #"{"intent":"withdraw"}"#) == pinned["withdraw (0.10 -> 0.1)"])
        #expect(
            try update(1, "5", ("1.23456789", "0"), #"{"intent":"deposit","note":"fractional"}"#)
                == pinned["fractional_deposit"])
        #expect(
            try update(
                2, "18446744073709551615", ("0", "1.25"), #"{"intent":"withdraw","boundary":"max_uint64_version"}"#)
                == pinned["max_uint64_version"])
        // The session-key state's packer: bytes32[] of each id's Keccak-256 (PROTOCOL-v1 §3.5).
        let keyState = ABI.encode([
            .address(try #require(Address(anyCase: user))), .address(try #require(Address(anyCase: store))), .uint(1),
            .array([
                .bytes32(
                    Keccak256.hash(Array("0x00000000000000000000000000000000000000000000000000000000000000a1".utf8)))
            ]),
            .array([
                .bytes32(
                    Keccak256.hash(Array("0x00000000000000000000000000000000000000000000000000000000000000b1".utf8)))
            ]),
            .uint(1_739_812_234),
        ])
        #expect(Hex.encode(Keccak256.hash(keyState), prefixed: true) == pinned["session_key_state"])
    }

    @Test(arguments: VectorFiles.names("v1/go_decode"))
    func goDecode(_ name: String) throws {
        let vector = try VectorFiles.load("v1/go_decode", name)
        let frame: [UInt8] =
            if let hex = vector["frame_hex"] as? String {
                try VectorFiles.bytes(hex: hex)
            } else {
                Array(try #require(vector["frame_text"] as? String).utf8)
            }
        #expect(vector["agent_expect"] as? String == "reject")
        switch RequestReader().read(frame) {
        case .failure(let denial):
            #expect(denial.reason.rawValue == vector["reason"] as? String, "\(name): \(denial.detail)")
        case .success:
            Issue.record("\(name): read, but nitronode reads it otherwise (\(vector["go_reads"] ?? ""))")
        }
    }
}

/// The state-update encoder nitronode's hash needs, written in one pass, against the general ABI encoder.
@Suite("ABI encoding")
struct ABITests {
    static func text(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }

    @Test func stateUpdateLayoutEqualsTheGeneralEncoder() throws {
        var random = SplitMix64(state: 0xAB1)
        for _ in 0..<500 {
            let id = (0..<32).map { _ in UInt8.random(in: 0...255, using: &random) }
            let count = Int.random(in: 0...5, using: &random)
            var allocations: [(Address, String, String)] = []
            for _ in 0..<count {
                let address = try #require(
                    Address(bytes: (0..<20).map { _ in UInt8.random(in: 0...255, using: &random) }))
                let asset =
                    Self.text(
                        (0..<Int.random(in: 0...70, using: &random)).map { _ in
                            UInt8.random(in: 32...126, using: &random)
                        }) + (Bool.random(using: &random) ? "ü😀" : "")
                let amount = Self.text(
                    (0..<Int.random(in: 1...40, using: &random)).map { _ in
                        UInt8.random(in: 48...57, using: &random)
                    })
                allocations.append((address, asset, amount))
            }
            let data = Self.text(
                (0..<Int.random(in: 0...100, using: &random)).map { _ in
                    UInt8.random(in: 0...127, using: &random)
                })
            let intent = UInt64.random(in: 0...255, using: &random)
            let version = random.next()
            let general = ABI.encode([
                .bytes32(id), .uint(intent), .uint(version),
                .array(
                    allocations.map { .tuple([.address($0.0), .string(Array($0.1.utf8)), .string(Array($0.2.utf8))]) }),
                .string(Array(data.utf8)),
            ])
            #expect(
                ABI.encodeStateUpdate(id: id, intent: intent, version: version, allocations: allocations, data: data)
                    == general)
        }
    }
}
