import CustodianCore
import CustodianTestSupport
import Testing

@Suite("EIP-55 addresses against vectors/keys")
struct AddressTests {
    @Test("vectors/keys holds the 5 EIP-55 cases and the 3 keys")
    func counts() {
        #expect(VectorFiles.names("keys").filter { $0.hasPrefix("eip55_") }.count == 5)
        #expect(VectorFiles.names("keys").filter { $0.hasPrefix("key_") }.count == 3)
    }

    @Test(arguments: VectorFiles.names("keys").filter { $0.hasPrefix("eip55_") })
    func checksum(_ name: String) throws {
        let vector = try VectorFiles.load("keys", name)
        let input = try #require(vector["input"] as? String)
        let checksummed = try #require(vector["checksummed"] as? String)
        let isEIP55 = try #require(vector["input_is_eip55"] as? Bool)
        #expect(Address(anyCase: input)?.checksummed == checksummed)
        #expect((Address(eip55: input) != nil) == isEIP55)
    }

    @Test(arguments: VectorFiles.names("keys").filter { $0.hasPrefix("key_") })
    func addressOfPublicKey(_ name: String) throws {
        let vector = try VectorFiles.load("keys", name)
        let publicKey = try VectorFiles.bytes(hex: try #require(vector["public_key"] as? String))
        #expect(Address(publicKey: publicKey)?.checksummed == vector["address"] as? String)
    }

    @Test("malformed addresses are refused")
    func malformed() {
        for text in [
            "", "0x", "FdEc8F58fA4b3bf07DD11eAF4c562Ee674e2C638", "0xFdEc8F58fA4b3bf07DD11eAF4c562Ee674e2C63",
            "0xFdEc8F58fA4b3bf07DD11eAF4c562Ee674e2C6388", "0XFdEc8F58fA4b3bf07DD11eAF4c562Ee674e2C638",
            "0xGdEc8F58fA4b3bf07DD11eAF4c562Ee674e2C638",
        ] {
            #expect(Address(eip55: text) == nil, "\(text)")
        }
    }
}
