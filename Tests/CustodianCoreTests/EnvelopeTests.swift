import CustodianCore
import CustodianTestSupport
import Foundation
import Testing

@Suite("The v0 request reader against vectors/envelope")
struct EnvelopeTests {
    @Test("the folder holds the 31 cases") func folderIsComplete() {
        #expect(VectorFiles.names("envelope").count == 31)
    }

    static func message(_ vector: [String: Any]) throws -> [UInt8] {
        if let hex = vector["message_hex"] as? String { return try VectorFiles.bytes(hex: hex) }
        return Array(try #require(vector["message"] as? String).utf8)
    }

    @Test(arguments: VectorFiles.names("envelope"))
    func envelope(_ name: String) throws {
        let vector = try VectorFiles.load("envelope", name)
        let result = NitroRPCv0Reader().read(try Self.message(vector))
        switch vector["expect"] as? String {
        case "accept":
            let request = try result.get()
            let parsed = try #require(vector["parsed"] as? [String: Any])
            #expect(request.requestID == (parsed["request_id"] as? NSNumber)?.uint64Value)
            #expect(request.method.rawValue == parsed["method"] as? String)
            #expect(request.timestamp == (parsed["timestamp"] as? NSNumber)?.uint64Value)
            // What is checked is what is signed: the exact span, and its Keccak-256.
            #expect(request.signedBytes == Array(try #require(vector["req_text"] as? String).utf8))
            #expect(Hex.encode(request.digest, prefixed: true) == vector["request_hash"] as? String)
            let signature = try #require(vector["signature_a"] as? String)
            let envelope = NitroRPCv0Reader.envelope(for: request, appending: signature)
            #expect(String(decoding: envelope, as: UTF8.self) == vector["result_message"] as? String)
            let params = try #require(parsed["params"] as? [String: Any])
            let allocations = try #require(params["allocations"] as? [[String: Any]])
            #expect(request.body.allocations.count == allocations.count)
            for (ours, theirs) in zip(request.body.allocations, allocations) {
                #expect(ours.participant.checksummed == theirs["participant"] as? String)
                #expect(ours.asset.value == theirs["asset"] as? String)
                #expect(ours.amount == Amount(try #require(theirs["amount"] as? String)))
            }
        case "reject":
            let reason = try #require(vector["reason"] as? String)
            switch result {
            case .success: Issue.record("\(name) was accepted; expected \(reason)")
            case .failure(let denial): #expect(denial.reason.rawValue == reason)
            }
        default:
            Issue.record("\(name): unknown expectation")
        }
    }

    @Test("the payload reasons follow contract order whatever the order in the text")
    func firstReasonInContractOrder() {
        // An unknown field after a bad amount: unknown_field comes first in CONTRACT §4.
        let text =
            #"[1,"close_app_session",{"app_session_id":"0x01","allocations":[{"participant":"0xFdEc8F58fA4b3bf07DD11eAF4c562Ee674e2C638","asset":"usdc","amount":"1e2"}],"zzz":1},1]"#
        guard case .failure(let denial) = NitroRPCv0Reader().read(Array(text.utf8)) else {
            Issue.record("accepted")
            return
        }
        #expect(denial.reason == .payloadUnknownField)
    }

    @Test("bounds: request id 0, integers above 2^53 - 1, a string timestamp, a fifth element")
    func integerBounds() {
        let base = #"{"app_session_id":"0x01","allocations":[]}"#
        for text in [
            "[0,\"close_app_session\",\(base),1]", "[9007199254740992,\"close_app_session\",\(base),1]",
            "[1,\"close_app_session\",\(base),\"1733000060000\"]", "[1,\"close_app_session\",\(base),1,2]",
            "[-1,\"close_app_session\",\(base),1]", "[1e3,\"close_app_session\",\(base),1]",
        ] {
            guard case .failure(let denial) = NitroRPCv0Reader().read(Array(text.utf8)) else {
                Issue.record("accepted \(text)")
                continue
            }
            #expect(denial.reason == .payloadMalformed, "\(text)")
        }
        let largest = "[9007199254740991,\"close_app_session\",\(base),1]"
        #expect((try? NitroRPCv0Reader().read(Array(largest.utf8)).get())?.requestID == 9_007_199_254_740_991)
    }

    @Test("a malformed co-signature fails the request, as it fails the whole request at ClearNode")
    func badCoSignature() {
        let text = #"{"req":[1,"close_app_session",{"app_session_id":"0x01","allocations":[]},1],"sig":["0x1234"]}"#
        guard case .failure(let denial) = NitroRPCv0Reader().read(Array(text.utf8)) else {
            Issue.record("accepted")
            return
        }
        #expect(denial.reason == .payloadMalformed)
    }
}
