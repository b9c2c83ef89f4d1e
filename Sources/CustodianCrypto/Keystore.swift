import COpenSSL
import CSodium
import CustodianCore

/// Why an Ethereum V3 keystore was refused.
public enum KeystoreError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The MAC does not match: the password is wrong, or the ciphertext or KDF parameters were edited (a V3 MAC
    /// cannot tell the two apart).
    case wrongPassword
    /// The keystore opens, but its `address` is not the key's: the file was edited.
    case addressMismatch(stated: String, actual: String)
    /// Not a V3 keystore this build reads.
    case malformed(String)
    /// A library failure.
    case crypto(String)

    public var description: String {
        switch self {
        case .wrongPassword:
            "wrong keystore password, or the keystore's ciphertext or KDF parameters were edited (its MAC does not match)"
        case .addressMismatch(let stated, let actual):
            "the keystore was edited: it states address \(stated), but its key is \(actual)"
        case .malformed(let why): "not a V3 keystore custodian reads: \(why)"
        case .crypto(let why): "crypto library failure: \(why)"
        }
    }
}

/// Web3 Secret Storage (V3) keystores, as geth, ethers and wallets write them: scrypt (libsodium) or
/// PBKDF2-HMAC-SHA256 (libcrypto), AES-128-CTR (libcrypto), and MAC = keccak256(derived key[16..<32] ‖ ciphertext). Everything secret stays in guarded memory.
public enum Keystore {
    /// The limits a keystore may ask for before it is refused (a hostile file could ask for any amount of work).
    static let maxScryptMemory: UInt64 = 2 << 30
    static let maxPBKDF2Iterations = 10_000_000

    /// Decrypts the key of a V3 keystore.
    public static func open(_ file: [UInt8], password: borrowing SecureBytes) throws(KeystoreError) -> SigningKey {
        guard case .success(let root) = StrictJSON.parse(file), let top = root.value.members else {
            throw .malformed("not a JSON object (or a key appears twice)")
        }
        guard let version = top.member("version")?.value.numberToken, version == "3" else {
            throw .malformed("version is not 3")
        }
        guard let crypto = (top.member("crypto") ?? top.member("Crypto"))?.value.members else {
            throw .malformed("no crypto object")
        }
        func hex(_ node: StrictJSON.Node?, _ name: String) throws(KeystoreError) -> [UInt8] {
            guard let text = node?.value.string, let bytes = Hex.decode(text) else { throw .malformed("bad \(name)") }
            return bytes
        }
        guard crypto.member("cipher")?.value.string == "aes-128-ctr" else {
            throw .malformed("cipher is not aes-128-ctr")
        }
        let ciphertext = try hex(crypto.member("ciphertext"), "ciphertext")
        let iv = try hex(crypto.member("cipherparams")?.value.members?.member("iv"), "iv")
        let mac = try hex(crypto.member("mac"), "mac")
        guard ciphertext.count == 32, iv.count == 16, mac.count == 32 else { throw .malformed("bad field lengths") }
        guard let params = crypto.member("kdfparams")?.value.members else { throw .malformed("no kdfparams") }
        let salt = try hex(params.member("salt"), "salt")
        func number(_ name: String) throws(KeystoreError) -> UInt64 {
            guard let token = params.member(name)?.value.numberToken, let value = UInt64(token) else {
                throw .malformed("bad kdfparams.\(name)")
            }
            return value
        }
        guard try number("dklen") == 32 else { throw .malformed("dklen is not 32") }
        var derived: SecureBytes
        do { derived = try SecureBytes(count: 32) } catch { throw .crypto("\(error)") }
        let status: Int32
        switch crypto.member("kdf")?.value.string {
        case "scrypt":
            let n = try number("n")
            let r = try number("r")
            let p = try number("p")
            guard n > 1, n & (n - 1) == 0, r > 0, p > 0, 128 * n * r <= maxScryptMemory, p <= 16 else {
                throw .malformed("scrypt parameters out of range (n \(n), r \(r), p \(p))")
            }
            // libsodium's scrypt, not OpenSSL's: OpenSSL enforces RFC 7914's N < 2^(16·r), which the Web3 Secret
            // Storage definition's own scrypt vector (N = 2^18, r = 1) and keystores written like it break.
            let result = derived.withUnsafeMutableBytes { out -> Int32 in
                password.withUnsafeBytes { pass -> Int32 in
                    guard let passBase = pass.baseAddress?.assumingMemoryBound(to: UInt8.self),
                        let outBase = out.baseAddress?.assumingMemoryBound(to: UInt8.self)
                    else { return -1 }
                    return crypto_pwhash_scryptsalsa208sha256_ll(
                        passBase, pass.count, salt, salt.count, n, UInt32(r), UInt32(p), outBase, 32)
                }
            }
            status = result == 0 ? 1 : 0
        case "pbkdf2":
            let iterations = try number("c")
            guard params.member("prf")?.value.string == "hmac-sha256" else {
                throw .malformed("prf is not hmac-sha256")
            }
            guard iterations > 0, iterations <= UInt64(maxPBKDF2Iterations) else {
                throw .malformed("pbkdf2 iterations out of range")
            }
            status = derived.withUnsafeMutableBytes { out in
                password.withUnsafeBytes { pass in
                    PKCS5_PBKDF2_HMAC(
                        pass.baseAddress?.assumingMemoryBound(to: CChar.self), Int32(pass.count), salt,
                        Int32(salt.count),
                        Int32(iterations), EVP_sha256(), 32, out.baseAddress?.assumingMemoryBound(to: UInt8.self))
                }
            }
        default:
            throw .malformed("kdf is neither scrypt nor pbkdf2")
        }
        guard status == 1 else { throw .crypto("key derivation failed") }
        let expected = derived.withUnsafeBytes { Keccak256.hash(Array($0[16..<32]) + ciphertext) }
        guard expected == mac else { throw .wrongPassword }

        var secret: SecureBytes
        do { secret = try SecureBytes(count: 32) } catch { throw .crypto("\(error)") }
        let decrypted = secret.withUnsafeMutableBytes { out -> Bool in
            derived.withUnsafeBytes { key -> Bool in
                guard let context = EVP_CIPHER_CTX_new() else { return false }
                defer { EVP_CIPHER_CTX_free(context) }
                var written: Int32 = 0
                var final: Int32 = 0
                guard let outBase = out.baseAddress?.assumingMemoryBound(to: UInt8.self),
                    let keyBase = key.baseAddress?.assumingMemoryBound(to: UInt8.self),
                    EVP_DecryptInit_ex(context, EVP_aes_128_ctr(), nil, keyBase, iv) == 1,
                    EVP_DecryptUpdate(context, outBase, &written, ciphertext, Int32(ciphertext.count)) == 1,
                    EVP_DecryptFinal_ex(context, outBase + Int(written), &final) == 1
                else { return false }
                return written + final == 32
            }
        }
        guard decrypted else { throw .crypto("aes-128-ctr failed") }
        let key: SigningKey
        do { key = try SigningKey(secret: secret) } catch { throw .malformed("the decrypted key is not a valid key") }
        if let stated = top.member("address")?.value.string {
            let normalized = stated.hasPrefix("0x") ? String(stated.dropFirst(2)) : stated
            guard normalized.lowercased() == Hex.encode(key.address.bytes) else {
                throw .addressMismatch(stated: stated, actual: key.address.checksummed)
            }
        }
        return key
    }
}
