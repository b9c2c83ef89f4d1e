import CustodianCore
import CustodianCrypto
import CustodianTestSupport
import Foundation
import Testing

@Suite("The sealed key file")
struct KeyFileTests {
    static let keyA = "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01ac362b318"

    func passphrase(_ text: String) throws -> SecureBytes {
        try SecureBytes(copying: Array(text.utf8))
    }

    @Test("seal then open gives the same key; the address is readable without the passphrase")
    func roundTrip() throws {
        let key = try signingKey(hex: Self.keyA)
        let file = try KeyFile.seal(key, passphrase: try passphrase("correct horse"), cost: .interactive)
        #expect(try KeyFile.header(file).address == key.address)
        let opened = try KeyFile.open(file, passphrase: try passphrase("correct horse"))
        let digest = Keccak256.hash(Array("x".utf8))
        #expect(try opened.sign(digest: digest) == (try key.sign(digest: digest)))
    }

    @Test("a wrong passphrase is refused as such")
    func wrongPassphrase() throws {
        let key = try signingKey(hex: Self.keyA)
        let file = try KeyFile.seal(key, passphrase: try passphrase("correct horse"), cost: .interactive)
        #expect(throws: KeyFileError.wrongPassphrase) {
            _ = try KeyFile.open(file, passphrase: try passphrase("correct hors"))
        }
    }

    @Test("the file holds no plaintext key, in hex of either case or as raw bytes")
    func noPlaintext() throws {
        let key = try signingKey(hex: Self.keyA)
        let file = try KeyFile.seal(key, passphrase: try passphrase("pw"), cost: .interactive)
        let raw = try VectorFiles.bytes(hex: Self.keyA)
        let text = String(decoding: file, as: UTF8.self)
        #expect(!text.lowercased().contains(String(Self.keyA.dropFirst(2))))
        #expect(!text.contains(String(Self.keyA.dropFirst(2)).uppercased()))
        // Nor any 8-byte window of the key in the file's bytes.
        for start in 0...(raw.count - 8) {
            let window = Array(raw[start..<(start + 8)])
            #expect(!(0...(file.count - 8)).contains { Array(file[$0..<($0 + 8)]) == window })
        }
    }

    @Test("every header byte is authenticated: a changed cost, salt, nonce, address or ciphertext does not open")
    func tamperedHeader() throws {
        let key = try signingKey(hex: Self.keyA)
        let file = try KeyFile.seal(key, passphrase: try passphrase("pw"), cost: .interactive)
        var text = String(decoding: file, as: UTF8.self)
        let other = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
        text = text.replacingOccurrences(of: key.address.checksummed, with: other)
        #expect(throws: KeyFileError.wrongPassphrase) {
            _ = try KeyFile.open(Array(text.utf8), passphrase: try passphrase("pw"))
        }
        // Flip one hex digit of the salt: the derived key differs, the tag fails.
        var lines = String(decoding: file, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false)
            .map(String.init)
        lines[1] = String(lines[1].dropLast()) + (lines[1].hasSuffix("0") ? "1" : "0")
        #expect(throws: KeyFileError.wrongPassphrase) {
            _ = try KeyFile.open(Array(lines.joined(separator: "\n").utf8), passphrase: try passphrase("pw"))
        }
    }

    @Test("other versions and shapes are refused with a reason")
    func malformed() throws {
        #expect(throws: KeyFileError.self) { _ = try KeyFile.header(Array("hello\n".utf8)) }
        let key = try signingKey(hex: Self.keyA)
        let file = try KeyFile.seal(key, passphrase: try passphrase("pw"), cost: .interactive)
        let v2 = String(decoding: file, as: UTF8.self).replacingOccurrences(of: "file v1", with: "file v2")
        #expect(throws: KeyFileError.malformed("unsupported version \"custodian key file v2\"; this build reads v1")) {
            _ = try KeyFile.header(Array(v2.utf8))
        }
    }
}
