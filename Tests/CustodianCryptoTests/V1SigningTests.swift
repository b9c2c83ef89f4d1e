import CustodianCore
import CustodianCrypto
import CustodianTestSupport
import Foundation
import Testing

/// v1 quorum signatures (PROTOCOL-v1 §3.4) byte for byte against Tests/Vectors/v1: the key signs the EIP-191
/// digest of the hash custodian computed, and the quorum signature is `0xa1` ‖ that signature; the frame the agent
/// returns is the one it read with its quorum signature appended to `quorum_sigs`.
@Suite("Nitrolite v1 quorum signatures")
struct V1SigningTests {
    static let frames = [
        "amount_exponent_sdk_mismatch.json", "amount_normalisation_150_0.json", "close_two_party.json",
        "create_two_party.json", "deposit_two_party.json", "operate_two_party.json", "withdraw_two_party.json",
    ]

    @Test(arguments: frames)
    func quorumSignatures(_ name: String) throws {
        let vector = try VectorFiles.load("v1", name)
        var text = try #require(vector["frame_text"] as? String)
        if text.contains("submit_deposit_state") {
            text = text.replacingOccurrences(of: #""quorum_sigs":"#, with: #""user_state":{},"quorum_sigs":"#)
        }
        let signatures = try #require(vector["signatures"] as? [[String: Any]])
        #expect(signatures.count == 2, "\(name): A's and B's")
        let quorumSigs = try signatures.map { try #require($0["quorum_sig"] as? String) }
        for (index, entry) in signatures.enumerated() {
            let key = try signingKey(hex: try #require(entry["private_key"] as? String))
            #expect(key.address.checksummed == entry["signer_address"] as? String)
            // The frame as the other participant would hand it to this key: the other's signature only.
            let others = quorumSigs.enumerated().filter { $0.offset != index }.map(\.element)
            let given = text.replacingOccurrences(
                of: #""quorum_sigs":["# + quorumSigs.map { "\"\($0)\"" }.joined(separator: ",") + "]",
                with: #""quorum_sigs":["# + others.map { "\"\($0)\"" }.joined(separator: ",") + "]")
            #expect(given != text)
            let request = try NitroliteV1Reader().read(Array(given.utf8)).get()
            let signature = Hex.encode(try key.sign(digest: request.digest), prefixed: true)
            #expect(signature == entry["signature_65"] as? String, "\(name): signer \(index)")
            #expect(request.quorumSignature(signature) == entry["quorum_sig"] as? String)
            let expected = text.replacingOccurrences(
                of: #""quorum_sigs":["# + quorumSigs.map { "\"\($0)\"" }.joined(separator: ",") + "]",
                with: #""quorum_sigs":["# + (others + [quorumSigs[index]]).map { "\"\($0)\"" }.joined(separator: ",")
                    + "]")
            #expect(String(decoding: request.signedMessage(appending: signature), as: UTF8.self) == expected)
            // nitronode's recovery: the type byte stripped, v − 27, the signer's address.
            let raw = try VectorFiles.bytes(hex: try #require(entry["quorum_sig"] as? String))
            #expect(raw.first == 0xA1 && raw.count == 66)
            #expect(Recovery.address(digest: request.digest, signature: Array(raw.dropFirst())) == key.address)
        }
        // A frame that already holds A's quorum signature (a retry with the frame custodian returned) keeps it once.
        let a = try signingKey(hex: try #require(signatures.first?["private_key"] as? String))
        let withA = try NitroliteV1Reader().read(Array(text.utf8)).get()
        let signatureA = Hex.encode(try a.sign(digest: withA.digest), prefixed: true)
        #expect(withA.signedMessage(appending: signatureA) == Array(text.utf8))
        // With no signature yet, the frame gets just this one.
        let empty = text.replacingOccurrences(
            of: #""quorum_sigs":["# + quorumSigs.map { "\"\($0)\"" }.joined(separator: ",") + "]",
            with: #""quorum_sigs":[]"#)
        let request = try NitroliteV1Reader().read(Array(empty.utf8)).get()
        let signed = String(
            decoding: request.signedMessage(appending: "0x" + String(repeating: "ab", count: 65)), as: UTF8.self)
        #expect(signed.contains(#""quorum_sigs":["0xa1"# + String(repeating: "ab", count: 65) + "\"]"))
    }

    @Test("the accepted spellings of a quorum signature all recover to A; custodian emits only the canonical one")
    func forms() throws {
        let vector = try VectorFiles.load("v1", "quorum_sig_forms_accepted.json")
        let close = try VectorFiles.load("v1", "close_two_party.json")
        let digest = try VectorFiles.bytes(hex: try #require(close["eip191_digest"] as? String))
        let a = try #require(Address(eip55: "0xFdEc8F58fA4b3bf07DD11eAF4c562Ee674e2C638"))
        for key in ["canonical_quorum_sig", "v_0_1", "upper_case_hex", "high_s"] {
            let text = try #require(vector[key] as? String)
            let raw = try #require(Hex.decode(text))
            #expect(raw.count == 66 && raw[0] == 0xA1, "\(key)")
            #expect(Recovery.address(digest: digest, signature: Array(raw.dropFirst())) == a, "\(key)")
        }
        let signing = try signingKey(hex: "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01ac362b318")
        let signature = Hex.encode(try signing.sign(digest: digest), prefixed: true)
        #expect(NitroliteV1Reader.quorumSignature(signature) == vector["canonical_quorum_sig"] as? String)
    }
}
