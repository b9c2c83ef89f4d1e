import CSecp256k1
import CSodium
import CustodianCore

/// One randomized libsecp256k1 context for the process; signing and recovery only read it, so it is shared.
final class Secp256k1Context: @unchecked Sendable {
    static let shared = Secp256k1Context()
    let pointer: OpaquePointer

    private init() {
        let context: OpaquePointer = secp256k1_context_create(UInt32(SECP256K1_CONTEXT_SIGN | SECP256K1_CONTEXT_VERIFY))
        // Blind the signing operations against side channels with fresh randomness.
        var seed = Sodium.randomBytes(32)
        _ = secp256k1_context_randomize(context, &seed)
        sodium_memzero(&seed, seed.count)
        pointer = context
    }
}

/// A secp256k1 private key that lives only in libsodium-guarded memory and signs inside itself; its secret never
/// leaves this type.
public struct SigningKey: ~Copyable {
    private var secret: SecureBytes
    /// The EIP-55 address of the key.
    public let address: Address
    /// The uncompressed public key, 65 bytes starting with 0x04.
    public let publicKey: [UInt8]

    /// A new random key, generated in guarded memory.
    public static func generate() throws(CryptoError) -> SigningKey {
        var secret = try SecureBytes(count: 32)
        let context = Secp256k1Context.shared.pointer
        for _ in 0..<16 {
            let valid = secret.withUnsafeMutableBytes { bytes in
                guard let base = bytes.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return false }
                randombytes_buf(base, 32)
                return secp256k1_ec_seckey_verify(context, base) == 1
            }
            if valid { return try SigningKey(secret: secret) }
        }
        throw CryptoError.libraryFailure("could not draw a valid secp256k1 key")
    }

    /// Takes ownership of 32 bytes of guarded memory holding a private key.
    public init(secret: consuming SecureBytes) throws(CryptoError) {
        guard secret.count == 32 else { throw CryptoError.invalidSecretKey }
        let context = Secp256k1Context.shared.pointer
        var pubkey = secp256k1_pubkey()
        let ok = secret.withUnsafeBytes { bytes in
            guard let key = bytes.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return false }
            return secp256k1_ec_seckey_verify(context, key) == 1
                && secp256k1_ec_pubkey_create(context, &pubkey, key) == 1
        }
        guard ok else { throw CryptoError.invalidSecretKey }
        var serialized = [UInt8](repeating: 0, count: 65)
        var length = 65
        _ = secp256k1_ec_pubkey_serialize(context, &serialized, &length, &pubkey, UInt32(SECP256K1_EC_UNCOMPRESSED))
        guard let address = Address(publicKey: serialized) else { throw CryptoError.invalidSecretKey }
        // Nothing writes the secret from here on.
        secret.makeReadOnly()
        self.secret = secret
        self.publicKey = serialized
        self.address = address
    }

    /// Signs a 32-byte digest: RFC 6979 nonce, low-S, returned as r ‖ s ‖ v with v = 27 + recovery id.
    public func sign(digest: [UInt8]) throws(CryptoError) -> [UInt8] {
        guard digest.count == 32 else { throw CryptoError.invalidSignature }
        let context = Secp256k1Context.shared.pointer
        var signature = secp256k1_ecdsa_recoverable_signature()
        let signed = secret.withUnsafeBytes { bytes in
            guard let key = bytes.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return Int32(0) }
            return secp256k1_ecdsa_sign_recoverable(context, &signature, digest, key, nil, nil)
        }
        guard signed == 1 else { throw CryptoError.libraryFailure("secp256k1_ecdsa_sign_recoverable") }
        var out = [UInt8](repeating: 0, count: 65)
        var recoveryID: Int32 = 0
        _ = secp256k1_ecdsa_recoverable_signature_serialize_compact(context, &out, &recoveryID, &signature)
        out[64] = UInt8(27 + recoveryID)
        return out
    }

    /// EIP-191 `personal_sign` of `message`: signs keccak256("\x19Ethereum Signed Message:\n" + len + message).
    public func personalSign(_ message: [UInt8]) throws(CryptoError) -> [UInt8] {
        try sign(digest: Self.personalDigest(message))
    }

    /// The EIP-191 digest of `message`.
    public static func personalDigest(_ message: [UInt8]) -> [UInt8] {
        Keccak256.hash(Array("\u{19}Ethereum Signed Message:\n\(message.count)".utf8) + message)
    }

    /// Passes the 32 secret bytes to `body`; only for sealing the key into a file.
    func withSecretBytes<R, E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
        try secret.withUnsafeBytes(body)
    }
}

/// Recovery of the signer of a digest, the way ClearNode checks signatures (v 27/28 or 0/1).
public enum Recovery {
    /// The address whose key made `signature` (65 bytes r ‖ s ‖ v) over `digest`, or nil.
    public static func address(digest: [UInt8], signature: [UInt8]) -> Address? {
        guard digest.count == 32, signature.count == 65 else { return nil }
        var v = Int32(signature[64])
        if v >= 27 { v -= 27 }
        guard v == 0 || v == 1 else { return nil }
        let context = Secp256k1Context.shared.pointer
        var parsed = secp256k1_ecdsa_recoverable_signature()
        guard secp256k1_ecdsa_recoverable_signature_parse_compact(context, &parsed, signature, v) == 1 else {
            return nil
        }
        var pubkey = secp256k1_pubkey()
        guard secp256k1_ecdsa_recover(context, &pubkey, &parsed, digest) == 1 else { return nil }
        var serialized = [UInt8](repeating: 0, count: 65)
        var length = 65
        _ = secp256k1_ec_pubkey_serialize(context, &serialized, &length, &pubkey, UInt32(SECP256K1_EC_UNCOMPRESSED))
        return Address(publicKey: serialized)
    }

    /// Like ``address(digest:signature:)``, but only for a signature the chain would enforce (PROTOCOL-v1-channels
    /// §7.10): v 27 or 28 and a low S. Anything else is nil.
    public static func strictAddress(digest: [UInt8], signature: [UInt8]) -> Address? {
        guard signature.count == 65, signature[64] == 27 || signature[64] == 28 else { return nil }
        let context = Secp256k1Context.shared.pointer
        var parsed = secp256k1_ecdsa_recoverable_signature()
        guard
            secp256k1_ecdsa_recoverable_signature_parse_compact(context, &parsed, signature, Int32(signature[64]) - 27)
                == 1
        else { return nil }
        var plain = secp256k1_ecdsa_signature()
        _ = secp256k1_ecdsa_recoverable_signature_convert(context, &plain, &parsed)
        var normalized = secp256k1_ecdsa_signature()
        // 1: the signature was high-S (normalize lowered it).
        guard secp256k1_ecdsa_signature_normalize(context, &normalized, &plain) == 0 else { return nil }
        return address(digest: digest, signature: signature)
    }
}
