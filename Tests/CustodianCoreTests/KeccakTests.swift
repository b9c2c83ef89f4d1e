import CustodianCore
import CustodianTestSupport
import Testing

@Suite("Keccak-256 against vectors/keccak")
struct KeccakTests {
    @Test("the folder holds the 7 cases") func folderIsComplete() {
        #expect(VectorFiles.names("keccak").count == 7)
    }

    @Test(arguments: VectorFiles.names("keccak"))
    func digest(_ name: String) throws {
        let vector = try VectorFiles.load("keccak", name)
        let input = try VectorFiles.bytes(hex: try #require(vector["input_hex"] as? String))
        #expect(input.count == vector["input_len"] as? Int)
        let expected = try #require(vector["keccak256"] as? String)
        #expect(Hex.encode(Keccak256.hash(input), prefixed: true) == expected)
        if let nist = vector["nist_sha3_256_NOT_this"] as? String {
            #expect(Hex.encode(Keccak256.hash(input), prefixed: true) != nist)
        }
    }

    @Test("every length around the 136-byte rate hashes like a byte-at-a-time split does")
    func noncontiguousInputAgrees() {
        for length in [0, 1, 135, 136, 137, 271, 272, 273] {
            let bytes = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
            // A lazy collection is not contiguous: it takes the copying path.
            #expect(Keccak256.hash(bytes.lazy.map { $0 }) == Keccak256.hash(bytes))
        }
    }
}
