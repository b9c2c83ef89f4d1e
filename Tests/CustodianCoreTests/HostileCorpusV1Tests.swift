import CustodianCore
import CustodianTestSupport
import Foundation
import Testing

/// Tests/HostileCorpusV1: v1 frames that nitronode's Go decoding could read differently from a strict parser
/// (PROTOCOL-v1 §7, every row), and others custodian must refuse, one file each (written by its generate.py, the
/// outcome stated by hand): refused with the stable reason, or read with the ABI hash eth-abi computed from Python's
/// reading of the same frame (a differential: spellings of one state must give one hash).
@Suite("The v1 hostile-frame corpus (Tests/HostileCorpusV1)")
struct HostileCorpusV1Tests {
    static let folder = "../HostileCorpusV1"

    @Test("the corpus holds the 88 cases generate.py writes") func size() {
        #expect(VectorFiles.names(Self.folder).count == 88)
    }

    @Test(arguments: VectorFiles.names(folder))
    func hostile(_ name: String) throws {
        let vector = try VectorFiles.load(Self.folder, name)
        let frame: [UInt8] =
            if let hex = vector["frame_hex"] as? String {
                try VectorFiles.bytes(hex: hex)
            } else {
                Array(try #require(vector["frame_text"] as? String).utf8)
            }
        switch (vector["expect"] as? String, RequestReader().read(frame)) {
        case ("reject", .failure(let denial)):
            #expect(denial.reason.rawValue == vector["reason"] as? String, "\(name): \(denial.detail)")
        case ("accept", .success(let request)):
            #expect(request.wireProtocol == .nitroliteV1)
            #expect(Hex.encode(request.requestHash, prefixed: true) == vector["packed_hash"] as? String, "\(name)")
            #expect(request.signedBytes == frame, "\(name): the frame is kept as received")
        case (let expected, let got):
            Issue.record("\(name): expected \(expected ?? "?"), got \(got)")
        }
    }
}
