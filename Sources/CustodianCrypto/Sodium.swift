import COpenSSL
import CSodium

/// libsodium must be initialised once before use; every entry point of this module goes through here.
enum Sodium {
    static let ready: Bool = sodium_init() >= 0

    static func ensureReady() throws(CryptoError) {
        guard ready else { throw CryptoError.libraryFailure("sodium_init failed") }
    }

    /// `count` random bytes from the operating system's generator.
    static func randomBytes(_ count: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        randombytes_buf(&out, count)
        return out
    }
}

/// Errors of the crypto layer.
public enum CryptoError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A C library call failed where it should not (allocation, initialisation).
    case libraryFailure(String)
    /// The bytes are not a valid secp256k1 secret key.
    case invalidSecretKey
    /// A signature or digest of the wrong length, or one that does not recover.
    case invalidSignature

    public var description: String {
        switch self {
        case .libraryFailure(let what): "crypto library failure: \(what)"
        case .invalidSecretKey: "not a valid secp256k1 private key"
        case .invalidSignature: "not a valid signature"
        }
    }
}

/// Bytes in libsodium-guarded memory: allocated with guard pages, locked out of swap, excluded from core dumps
/// (MADV_DONTDUMP), and wiped when freed. Never copied: the type is non-copyable and hands out its bytes only
/// inside a closure.
public struct SecureBytes: ~Copyable {
    private let pointer: UnsafeMutableRawPointer
    /// The number of bytes.
    public let count: Int
    /// Whether the pages are read-only (``makeReadOnly()``).
    private var readOnly = false

    /// Zero-filled guarded memory of `count` bytes.
    public init(count: Int) throws(CryptoError) {
        try Sodium.ensureReady()
        guard count > 0, let pointer = sodium_malloc(count) else {
            throw CryptoError.libraryFailure("sodium_malloc(\(count))")
        }
        sodium_memzero(pointer, count)
        self.pointer = pointer
        self.count = count
    }

    /// A guarded copy of `bytes`; the caller wipes its own copy.
    public init(copying bytes: UnsafeRawBufferPointer) throws(CryptoError) {
        try self.init(count: max(bytes.count, 1))
        if let base = bytes.baseAddress, bytes.count > 0 {
            pointer.copyMemory(from: base, byteCount: bytes.count)
        }
    }

    /// A guarded copy of `bytes` (for keys that already sit in ordinary memory: tests, imports).
    public init(copying bytes: [UInt8]) throws(CryptoError) {
        try self.init(count: max(bytes.count, 1))
        bytes.withUnsafeBytes { source in
            if let base = source.baseAddress, source.count > 0 {
                pointer.copyMemory(from: base, byteCount: source.count)
            }
        }
    }

    deinit {
        if readOnly { _ = sodium_mprotect_readwrite(pointer) }
        sodium_free(pointer)  // wipes before freeing
    }

    /// From now on the pages are read-only (PROT_READ): a stray write anywhere in the process faults instead of
    /// changing the secret, and readers on any thread need no system call. (Not PROT_NONE between uses: two
    /// mprotect calls per signature, each a TLB shootdown across the agent's threads, cost about 8 % of the CPU at
    /// 16 clients; the guard pages, the lock and MADV_DONTDUMP are what keep the secret out of overreads, swap
    /// and core files.)
    public mutating func makeReadOnly() {
        readOnly = sodium_mprotect_readonly(pointer) == 0
    }

    /// Reads the bytes.
    public func withUnsafeBytes<R: ~Copyable, E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R
    {
        try body(UnsafeRawBufferPointer(start: pointer, count: count))
    }

    /// Writes the bytes (the pages are writable again for the call if they were made read-only).
    public mutating func withUnsafeMutableBytes<R: ~Copyable, E: Error>(
        _ body: (UnsafeMutableRawBufferPointer) throws(E) -> R
    ) throws(E) -> R {
        if readOnly { _ = sodium_mprotect_readwrite(pointer) }
        defer { if readOnly { _ = sodium_mprotect_readonly(pointer) } }
        return try body(UnsafeMutableRawBufferPointer(start: pointer, count: count))
    }
}

/// SHA-256, for the audit chain and the policy hash: OpenSSL's libcrypto, which uses the CPU's SHA extensions
/// where present (a million-record log is about a gigabyte to hash at start).
public enum SHA256 {
    private final class Algorithm: @unchecked Sendable {
        static let shared = Algorithm()
        let md: OpaquePointer? = EVP_MD_fetch(nil, "SHA256", nil)
    }

    /// The 32-byte digest of `bytes`.
    public static func hash(_ bytes: some Collection<UInt8>) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 32)
        let digest = { (buffer: UnsafeRawBufferPointer) in
            var length: UInt32 = 0
            _ = EVP_Digest(buffer.baseAddress, buffer.count, &out, &length, Algorithm.shared.md, nil)
        }
        if bytes.withContiguousStorageIfAvailable({ digest(UnsafeRawBufferPointer($0)) }) == nil {
            Array(bytes).withUnsafeBytes(digest)
        }
        return out
    }

    /// SHA-256 over bytes that arrive in pieces (a file read in chunks). Owned by one thread at a time (handed over,
    /// never shared).
    public final class Stream: @unchecked Sendable {
        private let context: OpaquePointer? = EVP_MD_CTX_new()

        public init() { _ = EVP_DigestInit_ex(context, Algorithm.shared.md, nil) }

        deinit { EVP_MD_CTX_free(context) }

        public func update(_ bytes: [UInt8]) {
            bytes.withUnsafeBytes { _ = EVP_DigestUpdate(context, $0.baseAddress, $0.count) }
        }

        public func update(_ bytes: ArraySlice<UInt8>) {
            bytes.withUnsafeBytes { _ = EVP_DigestUpdate(context, $0.baseAddress, $0.count) }
        }

        /// A stream that goes on from where this one is, independently of it.
        public func copy() -> Stream {
            let other = Stream()
            _ = EVP_MD_CTX_copy_ex(other.context, context)
            return other
        }

        /// The hex digest of everything given so far, leaving this stream open for more.
        public func current() -> String { copy().finish() }

        /// The lower-case hex digest of everything given.
        public func finish() -> String {
            var out = [UInt8](repeating: 0, count: 32)
            var length: UInt32 = 0
            _ = EVP_DigestFinal_ex(context, &out, &length)
            return CustodianCoreHex.encode(out)
        }
    }

    /// A reusable hashing context, for hashing many lines in a row (a log's chain) without an allocation each.
    public final class Hasher {
        private let context: OpaquePointer? = EVP_MD_CTX_new()

        public init() {}

        deinit { EVP_MD_CTX_free(context) }

        /// Writes the digest of `bytes` into `out` (32 bytes).
        public func hash(_ bytes: ArraySlice<UInt8>, into out: inout [UInt8]) {
            var length: UInt32 = 0
            bytes.withUnsafeBytes { buffer in
                out.withUnsafeMutableBytes { digest in
                    _ = EVP_DigestInit_ex(context, Algorithm.shared.md, nil)
                    _ = EVP_DigestUpdate(context, buffer.baseAddress, buffer.count)
                    _ = EVP_DigestFinal_ex(context, digest.baseAddress?.assumingMemoryBound(to: UInt8.self), &length)
                }
            }
        }
    }

    /// Lower-case hex of the digest.
    public static func hex(_ bytes: some Collection<UInt8>) -> String {
        CustodianCoreHex.encode(hash(bytes))
    }
}
