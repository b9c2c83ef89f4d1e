import CustodianCore
import CustodianCrypto
import CustodianTestSupport
import Testing

/// A signing key from a vector's `0x` private key, through guarded memory.
func signingKey(hex: String) throws -> SigningKey {
    let bytes = try VectorFiles.bytes(hex: hex)
    let secret = try SecureBytes(copying: bytes)
    return try SigningKey(secret: secret)
}

@Suite("Signing against vectors/sign and vectors/keys")
struct SigningTests {
    @Test("the folder holds the 6 cases") func folderIsComplete() {
        #expect(VectorFiles.names("sign").count == 6)
    }

    @Test(arguments: VectorFiles.names("sign"))
    func signature(_ name: String) throws {
        let vector = try VectorFiles.load("sign", name)
        let req = try #require(vector["req"] as? String)
        #expect(Array(req.utf8) == (try VectorFiles.bytes(hex: try #require(vector["req_hex"] as? String))))
        let digest = Keccak256.hash(Array(req.utf8))
        #expect(Hex.encode(digest, prefixed: true) == vector["keccak256"] as? String)
        let signatures = try #require(vector["signatures"] as? [[String: Any]])
        #expect(!signatures.isEmpty)
        for entry in signatures {
            let key = try signingKey(hex: try #require(entry["private_key"] as? String))
            #expect(key.address.checksummed == entry["address"] as? String)
            let signature = try key.sign(digest: digest)
            // Byte for byte: RFC 6979, low-S, v = 27 + recovery id.
            #expect(Hex.encode(signature, prefixed: true) == entry["signature"] as? String)
            #expect(Recovery.address(digest: digest, signature: signature) == key.address)
        }
    }

    @Test(arguments: VectorFiles.names("keys").filter { $0.hasPrefix("key_") })
    func keyAddress(_ name: String) throws {
        let vector = try VectorFiles.load("keys", name)
        let key = try signingKey(hex: try #require(vector["private_key"] as? String))
        #expect(key.address.checksummed == vector["address"] as? String)
        #expect(Hex.encode(key.publicKey, prefixed: true) == vector["public_key"] as? String)
    }

    @Test("a generated key signs what recovers to its address; zero and n are not keys")
    func generated() throws {
        let key = try SigningKey.generate()
        let digest = Keccak256.hash(Array("custodian".utf8))
        #expect(Recovery.address(digest: digest, signature: try key.sign(digest: digest)) == key.address)
        #expect(throws: CryptoError.invalidSecretKey) {
            _ = try signingKey(hex: "0x" + String(repeating: "0", count: 64))
        }
        #expect(throws: CryptoError.invalidSecretKey) {
            _ = try signingKey(hex: "0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141")
        }
    }

    @Test("a signature over one byte more recovers to another address")
    func whitespaceChangesTheSigner() throws {
        let vector = try VectorFiles.load("sign", "close_whitespace_inside.json")
        let entry = try #require((vector["signatures"] as? [[String: Any]])?.first)
        let signature = try VectorFiles.bytes(hex: try #require(entry["signature"] as? String))
        let req = try #require(vector["req"] as? String)
        let address = try #require(entry["address"] as? String)
        #expect(Recovery.address(digest: Keccak256.hash(Array(req.utf8)), signature: signature)?.checksummed == address)
        let compact = req.replacingOccurrences(of: ", ", with: ",")
        #expect(
            Recovery.address(digest: Keccak256.hash(Array(compact.utf8)), signature: signature)?.checksummed != address)
    }
}
