import CustodianCore
import CustodianTestSupport
import Foundation
import Testing

/// Tests/HostileCorpus: every message ClearNode's Go decoding could read differently from a naive parser, one
/// file each (written by its generate.py, the outcome stated by hand), refused with its stable reason code or
/// accepted with the exact span that is signed.
@Suite("The hostile-input corpus (Tests/HostileCorpus)")
struct HostileCorpusTests {
    static let folder = "../HostileCorpus"

    @Test("at least 60 cases") func size() {
        #expect(VectorFiles.names(Self.folder).count >= 60)
    }

    @Test(arguments: VectorFiles.names(folder))
    func hostile(_ name: String) throws {
        let vector = try VectorFiles.load(Self.folder, name)
        let message: [UInt8] =
            if let hex = vector["message_hex"] as? String {
                try VectorFiles.bytes(hex: hex)
            } else {
                Array(try #require(vector["message"] as? String).utf8)
            }
        // As the agent reads it: a 5-element array would go to the v1 reader, anything else to v0's.
        let result = RequestReader().read(message)
        switch (vector["expect"] as? String, result) {
        case ("reject", .failure(let denial)):
            #expect(denial.reason.rawValue == vector["reason"] as? String, "\(name): \(denial.detail)")
        case ("accept", .success(let request)):
            #expect(request.signedBytes == Array(try #require(vector["req_text"] as? String).utf8), "\(name)")
            #expect(request.requestID == (vector["request_id"] as? NSNumber)?.uint64Value)
            #expect(request.method.rawValue == vector["method"] as? String)
            #expect(request.digest == Keccak256.hash(request.signedBytes))
            #expect(request.wireProtocol == .nitroRPCv0)
        case (let expected, let got):
            Issue.record("\(name): expected \(expected ?? "?"), got \(got)")
        }
    }
}
