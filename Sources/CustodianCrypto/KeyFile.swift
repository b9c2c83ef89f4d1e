import CSodium
import CustodianCore

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Errors of reading, opening and writing key files, each with a sentence an operator can act on.
public enum KeyFileError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The passphrase does not open the file (or the file was modified: the two cannot be told apart).
    case wrongPassphrase
    /// The file is not a custodian key file of a version this build reads.
    case malformed(String)
    /// The private key given for import is not 64 hex digits of a valid secp256k1 key.
    case invalidPrivateKey
    /// An empty passphrase.
    case emptyPassphrase
    /// A file could not be read or written.
    case io(String)
    /// The key file exists already and would be overwritten.
    case exists(String)
    /// A key or passphrase file that group or others may read or write (as ssh refuses an unprotected key).
    case unprotected(path: String, mode: UInt32)
    /// A C library call failed.
    case crypto(CryptoError)

    public var description: String {
        switch self {
        case .wrongPassphrase: "wrong passphrase, or the key file was modified"
        case .malformed(let why): "not a custodian key file: \(why)"
        case .invalidPrivateKey: "the private key file does not hold 64 hex digits of a valid secp256k1 key"
        case .emptyPassphrase: "the passphrase is empty"
        case .io(let why): why
        case .exists(let path): "\(path) exists already; custodian does not overwrite key files"
        case .unprotected(let path, let mode):
            "\(path) is open to group or others (mode 0\(String(mode & 0o777, radix: 8))); a key or passphrase file must "
                + "be private: chmod 600 \(path)"
        case .crypto(let error): error.description
        }
    }
}

/// Argon2id cost profiles (libsodium's named limits).
public enum KDFCost: String, Sendable, CaseIterable {
    /// 64 MiB, 2 passes: for tests and small machines.
    case interactive
    /// 256 MiB, 3 passes: the default.
    case moderate
    /// 1 GiB, 4 passes.
    case sensitive

    var limits: (ops: UInt64, mem: UInt64) {
        switch self {
        case .interactive: (UInt64(crypto_pwhash_opslimit_interactive()), UInt64(crypto_pwhash_memlimit_interactive()))
        case .moderate: (UInt64(crypto_pwhash_opslimit_moderate()), UInt64(crypto_pwhash_memlimit_moderate()))
        case .sensitive: (UInt64(crypto_pwhash_opslimit_sensitive()), UInt64(crypto_pwhash_memlimit_sensitive()))
        }
    }
}

/// The sealed key file, version 1: a text header that names its algorithms and cost, then the ciphertext.
///
/// ```
/// custodian key file v1
/// kdf argon2id13 ops=3 mem=268435456 salt=<32 hex>
/// aead xchacha20poly1305-ietf nonce=<48 hex>
/// address 0xFdEc8F58fA4b3bf07DD11eAF4c562Ee674e2C638
/// ciphertext <96 hex: 32-byte key + 16-byte tag>
/// ```
///
/// The key is XChaCha20-Poly1305 under an Argon2id key derived from the passphrase; every header line (through
/// the `address` line and its newline) is the additional data, so no header byte can change unnoticed. The
/// address is readable without the passphrase.
public enum KeyFile {
    static let magic = "custodian key file v1"
    /// Refused when opening: a file asking for more memory than this could exhaust the host.
    static let maxMemLimit: UInt64 = 4 << 30

    /// The header fields.
    public struct Header: Sendable, Equatable {
        public var opsLimit: UInt64
        public var memLimit: UInt64
        public var salt: [UInt8]
        public var nonce: [UInt8]
        public var address: Address
    }

    /// Seals `key` under `passphrase` and returns the file's bytes.
    public static func seal(
        _ key: borrowing SigningKey, passphrase: borrowing SecureBytes, cost: KDFCost = .moderate
    ) throws(KeyFileError) -> [UInt8] {
        try seal(key, passphrase: passphrase, opsLimit: cost.limits.ops, memLimit: cost.limits.mem)
    }

    /// Seals `key` with explicit Argon2id limits (to keep a file's cost when its passphrase changes).
    public static func seal(
        _ key: borrowing SigningKey, passphrase: borrowing SecureBytes, opsLimit ops: UInt64, memLimit mem: UInt64
    ) throws(KeyFileError) -> [UInt8] {
        let header = Header(
            opsLimit: ops, memLimit: mem, salt: Sodium.randomBytes(Int(crypto_pwhash_SALTBYTES)),
            nonce: Sodium.randomBytes(Int(crypto_aead_xchacha20poly1305_ietf_NPUBBYTES)), address: key.address)
        let additional = Array(render(header).utf8)
        let wrapping = try deriveKey(passphrase: passphrase, header: header)
        var ciphertext = [UInt8](repeating: 0, count: 32 + Int(crypto_aead_xchacha20poly1305_ietf_ABYTES))
        var length: UInt64 = 0
        let status = key.withSecretBytes { secret -> Int32 in
            wrapping.withUnsafeBytes { wrap -> Int32 in
                guard let message = secret.baseAddress?.assumingMemoryBound(to: UInt8.self),
                    let wrapKey = wrap.baseAddress?.assumingMemoryBound(to: UInt8.self)
                else { return -1 }
                return crypto_aead_xchacha20poly1305_ietf_encrypt(
                    &ciphertext, &length, message, 32, additional, UInt64(additional.count), nil, header.nonce, wrapKey)
            }
        }
        guard status == 0 else { throw KeyFileError.crypto(.libraryFailure("xchacha20poly1305 encrypt")) }
        return additional + Array("ciphertext \(Hex.encode(ciphertext))\n".utf8)
    }

    /// Opens a key file with `passphrase`.
    public static func open(_ file: [UInt8], passphrase: borrowing SecureBytes) throws(KeyFileError) -> SigningKey {
        let (header, additional, ciphertext) = try parse(file)
        guard header.memLimit <= maxMemLimit else {
            throw KeyFileError.malformed("mem=\(header.memLimit) is above the \(maxMemLimit) this build accepts")
        }
        let wrapping = try deriveKey(passphrase: passphrase, header: header)
        var secret: SecureBytes
        do { secret = try SecureBytes(count: 32) } catch { throw KeyFileError.crypto(error) }
        var length: UInt64 = 0
        let status = secret.withUnsafeMutableBytes { out -> Int32 in
            wrapping.withUnsafeBytes { wrap -> Int32 in
                guard let message = out.baseAddress?.assumingMemoryBound(to: UInt8.self),
                    let wrapKey = wrap.baseAddress?.assumingMemoryBound(to: UInt8.self)
                else { return -1 }
                return crypto_aead_xchacha20poly1305_ietf_decrypt(
                    message, &length, nil, ciphertext, UInt64(ciphertext.count), additional,
                    UInt64(additional.count), header.nonce, wrapKey)
            }
        }
        guard status == 0, length == 32 else { throw KeyFileError.wrongPassphrase }
        let key: SigningKey
        do { key = try SigningKey(secret: secret) } catch { throw KeyFileError.malformed("the sealed key is invalid") }
        guard key.address == header.address else {
            throw KeyFileError.malformed("the sealed key does not match the address in the header")
        }
        return key
    }

    /// Reads the header without the passphrase (for `key address`).
    public static func header(_ file: [UInt8]) throws(KeyFileError) -> Header {
        try parse(file).header
    }

    static func render(_ header: Header) -> String {
        """
        \(magic)
        kdf argon2id13 ops=\(header.opsLimit) mem=\(header.memLimit) salt=\(Hex.encode(header.salt))
        aead xchacha20poly1305-ietf nonce=\(Hex.encode(header.nonce))
        address \(header.address.checksummed)

        """
    }

    static func parse(_ file: [UInt8]) throws(KeyFileError) -> (
        header: Header, additional: [UInt8], ciphertext: [UInt8]
    ) {
        guard file.count < 4096 else { throw KeyFileError.malformed("too large") }
        let text = String(decoding: file, as: UTF8.self)
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        guard lines.count == 6, lines[5].isEmpty else { throw KeyFileError.malformed("expected 5 lines") }
        guard lines[0] == magic else {
            if lines[0].hasPrefix("custodian key file") {
                throw KeyFileError.malformed("unsupported version \"\(lines[0])\"; this build reads v1")
            }
            throw KeyFileError.malformed("missing the \"\(magic)\" line")
        }
        let kdf = fields(lines[1], label: "kdf argon2id13")
        let aead = fields(lines[2], label: "aead xchacha20poly1305-ietf")
        guard let kdf, let ops = kdf["ops"].flatMap({ UInt64($0) }), let mem = kdf["mem"].flatMap({ UInt64($0) }),
            let salt = kdf["salt"].flatMap({ Hex.decode($0) }), salt.count == Int(crypto_pwhash_SALTBYTES),
            kdf.count == 3
        else { throw KeyFileError.malformed("bad kdf line") }
        guard let aead, let nonce = aead["nonce"].flatMap({ Hex.decode($0) }), aead.count == 1,
            nonce.count == Int(crypto_aead_xchacha20poly1305_ietf_NPUBBYTES)
        else { throw KeyFileError.malformed("bad aead line") }
        guard lines[3].hasPrefix("address "), let address = Address(eip55: String(lines[3].dropFirst(8))) else {
            throw KeyFileError.malformed("bad address line")
        }
        guard lines[4].hasPrefix("ciphertext "), let ciphertext = Hex.decode(lines[4].dropFirst(11)),
            ciphertext.count == 32 + Int(crypto_aead_xchacha20poly1305_ietf_ABYTES)
        else { throw KeyFileError.malformed("bad ciphertext line") }
        guard ops >= UInt64(crypto_pwhash_opslimit_min()), mem >= UInt64(crypto_pwhash_memlimit_min()) else {
            throw KeyFileError.malformed("kdf cost below libsodium's minimum")
        }
        let header = Header(opsLimit: ops, memLimit: mem, salt: salt, nonce: nonce, address: address)
        let additional = Array(lines[0...3].joined(separator: "\n").utf8) + [0x0A]
        return (header, additional, ciphertext)
    }

    private static func fields(_ line: String, label: String) -> [String: String]? {
        guard line.hasPrefix(label + " ") else { return nil }
        var result: [String: String] = [:]
        for part in line.dropFirst(label.count + 1).split(separator: " ") {
            let pieces = part.split(separator: "=", maxSplits: 1)
            guard pieces.count == 2, result[String(pieces[0])] == nil else { return nil }
            result[String(pieces[0])] = String(pieces[1])
        }
        return result
    }

    private static func deriveKey(passphrase: borrowing SecureBytes, header: Header) throws(KeyFileError) -> SecureBytes
    {
        var key: SecureBytes
        do { key = try SecureBytes(count: Int(crypto_aead_xchacha20poly1305_ietf_KEYBYTES)) } catch {
            throw KeyFileError.crypto(error)
        }
        let status = key.withUnsafeMutableBytes { out -> Int32 in
            passphrase.withUnsafeBytes { secret -> Int32 in
                guard let outBase = out.baseAddress?.assumingMemoryBound(to: UInt8.self),
                    let passBase = secret.baseAddress?.assumingMemoryBound(to: CChar.self)
                else { return -1 }
                return crypto_pwhash(
                    outBase, UInt64(out.count), passBase, UInt64(secret.count), header.salt, header.opsLimit,
                    Int(header.memLimit), crypto_pwhash_ALG_ARGON2ID13)
            }
        }
        guard status == 0 else { throw KeyFileError.crypto(.libraryFailure("argon2id: out of memory?")) }
        return key
    }
}

/// Secret files read straight into guarded memory, never through an ordinary buffer.
public enum SecretFile {
    /// The largest secret file read.
    static let limit = 4096

    /// The bytes of a sealed key file (at most 4 KiB), refused if group or others may read or write it.
    public static func readKeyFile(_ path: String) throws(KeyFileError) -> [UInt8] {
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw KeyFileError.io("cannot read \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        try requirePrivate(fd, path)
        var bytes = [UInt8](repeating: 0, count: limit + 1)
        var total = 0
        while total < bytes.count {
            let count = bytes.withUnsafeMutableBytes { raw -> Int in
                guard let base = raw.baseAddress else { return 0 }
                return Glibc.read(fd, base + total, raw.count - total)
            }
            if count < 0 {
                if errno == EINTR { continue }
                throw KeyFileError.io("cannot read \(path): \(String(cString: strerror(errno)))")
            }
            if count == 0 { break }
            total += count
        }
        guard total <= limit else { throw KeyFileError.malformed("\(path) is larger than \(limit) bytes") }
        return Array(bytes[0..<total])
    }

    /// Refuses the open file `fd` if group or others may read or write it.
    static func requirePrivate(_ fd: Int32, _ path: String) throws(KeyFileError) {
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            throw KeyFileError.io("cannot stat \(path): \(String(cString: strerror(errno)))")
        }
        guard info.st_mode & 0o077 == 0 else { throw KeyFileError.unprotected(path: path, mode: UInt32(info.st_mode)) }
    }

    /// The bytes of the file at `path`, without one trailing newline (and carriage return). Refused if group or
    /// others may read or write it.
    public static func read(_ path: String) throws(KeyFileError) -> SecureBytes {
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw KeyFileError.io("cannot read \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        try requirePrivate(fd, path)
        var buffer: SecureBytes
        do { buffer = try SecureBytes(count: limit) } catch { throw KeyFileError.crypto(error) }
        var total = 0
        let readError: Int32? = buffer.withUnsafeMutableBytes { bytes in
            while total < limit, let base = bytes.baseAddress {
                let count = Glibc.read(fd, base + total, limit - total)
                if count < 0 {
                    if errno == EINTR { continue }
                    return errno
                }
                if count == 0 { return nil }
                total += count
            }
            return nil
        }
        if let readError { throw KeyFileError.io("cannot read \(path): \(String(cString: strerror(readError)))") }
        guard total < limit else { throw KeyFileError.io("\(path) is larger than \(limit) bytes") }
        var length = total
        buffer.withUnsafeBytes { bytes in
            if length > 0, bytes[length - 1] == 0x0A { length -= 1 }
            if length > 0, bytes[length - 1] == 0x0D { length -= 1 }
        }
        guard length > 0 else { throw KeyFileError.emptyPassphrase }
        var result: SecureBytes
        do { result = try SecureBytes(count: length) } catch { throw KeyFileError.crypto(error) }
        result.withUnsafeMutableBytes { out in
            buffer.withUnsafeBytes { bytes in
                out.copyMemory(from: UnsafeRawBufferPointer(rebasing: bytes[0..<length]))
            }
        }
        return result
    }

    /// A private key from a file holding 64 hex digits (optionally `0x`, optionally a trailing newline).
    public static func readPrivateKey(_ path: String) throws(KeyFileError) -> SigningKey {
        let text = try read(path)
        var secret: SecureBytes
        do { secret = try SecureBytes(count: 32) } catch { throw KeyFileError.crypto(error) }
        let ok = text.withUnsafeBytes { hex in
            secret.withUnsafeMutableBytes { out -> Bool in
                var start = 0
                if hex.count == 66, hex[0] == UInt8(ascii: "0"),
                    hex[1] == UInt8(ascii: "x") || hex[1] == UInt8(ascii: "X")
                {
                    start = 2
                }
                guard hex.count - start == 64 else { return false }
                for index in 0..<32 {
                    guard let high = nibble(hex[start + 2 * index]), let low = nibble(hex[start + 2 * index + 1]) else {
                        return false
                    }
                    out[index] = high << 4 | low
                }
                return true
            }
        }
        guard ok else { throw KeyFileError.invalidPrivateKey }
        do { return try SigningKey(secret: secret) } catch { throw KeyFileError.invalidPrivateKey }
    }

    private static func nibble(_ char: UInt8) -> UInt8? {
        switch char {
        case 0x30...0x39: char - 0x30
        case 0x61...0x66: char - 0x61 + 10
        case 0x41...0x46: char - 0x41 + 10
        default: nil
        }
    }

    /// Writes `bytes` to `path` atomically with mode 0600: a temporary file in the same directory, synced, then
    /// renamed over (or, without `replace`, linked to) the final name, and the directory synced.
    public static func writeAtomically(_ bytes: [UInt8], to path: String, replace: Bool) throws(KeyFileError) {
        let directory = path.contains("/") ? String(path[..<(path.lastIndex(of: "/") ?? path.startIndex)]) : "."
        let temporary = "\(path).tmp-\(getpid())-\(Hex.encode(Sodium.randomBytes(4)))"
        let fd = Glibc.open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw KeyFileError.io("cannot create \(temporary): \(String(cString: strerror(errno)))") }
        var written = 0
        while written < bytes.count {
            let count = bytes.withUnsafeBytes { buffer -> Int in
                guard let base = buffer.baseAddress else { return 0 }
                return Glibc.write(fd, base + written, bytes.count - written)
            }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else {
                close(fd)
                unlink(temporary)
                throw KeyFileError.io("cannot write \(temporary): \(String(cString: strerror(errno)))")
            }
            written += count
        }
        guard fsync(fd) == 0, close(fd) == 0 else {
            unlink(temporary)
            throw KeyFileError.io("cannot sync \(temporary)")
        }
        if replace {
            guard rename(temporary, path) == 0 else {
                let why = String(cString: strerror(errno))
                unlink(temporary)
                throw KeyFileError.io("cannot rename to \(path): \(why)")
            }
        } else {
            // link() fails if the name exists: no window in which an existing key file is replaced.
            guard link(temporary, path) == 0 else {
                let code = errno
                unlink(temporary)
                if code == EEXIST { throw KeyFileError.exists(path) }
                throw KeyFileError.io("cannot create \(path): \(String(cString: strerror(code)))")
            }
            unlink(temporary)
        }
        let dirFD = Glibc.open(directory.isEmpty ? "/" : directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dirFD >= 0 {
            _ = fsync(dirFD)
            close(dirFD)
        }
    }
}

extension SecretFile {
    /// Prompts on the controlling terminal with echo off and reads one line into guarded memory.
    public static func readFromTerminal(prompt: String) throws(KeyFileError) -> SecureBytes {
        let fd = Glibc.open("/dev/tty", O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { throw KeyFileError.io("no passphrase file and no terminal to ask on") }
        defer { close(fd) }
        var saved = termios()
        guard tcgetattr(fd, &saved) == 0 else { throw KeyFileError.io("cannot read the terminal settings") }
        var quiet = saved
        quiet.c_lflag &= ~tcflag_t(ECHO)
        _ = Array(prompt.utf8).withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        guard tcsetattr(fd, TCSAFLUSH, &quiet) == 0 else { throw KeyFileError.io("cannot turn echo off") }
        defer {
            _ = tcsetattr(fd, TCSAFLUSH, &saved)
            _ = Glibc.write(fd, "\n", 1)
        }
        var buffer: SecureBytes
        do { buffer = try SecureBytes(count: limit) } catch { throw KeyFileError.crypto(error) }
        var length = 0
        buffer.withUnsafeMutableBytes { bytes in
            var byte: UInt8 = 0
            while length < limit, Glibc.read(fd, &byte, 1) == 1, byte != 0x0A {
                bytes[length] = byte
                length += 1
            }
            byte = 0
        }
        guard length > 0 else { throw KeyFileError.emptyPassphrase }
        var result: SecureBytes
        do { result = try SecureBytes(count: length) } catch { throw KeyFileError.crypto(error) }
        result.withUnsafeMutableBytes { out in
            buffer.withUnsafeBytes { bytes in out.copyMemory(from: UnsafeRawBufferPointer(rebasing: bytes[0..<length]))
            }
        }
        return result
    }

    /// Whether two guarded buffers hold the same bytes (constant time).
    public static func equal(_ lhs: borrowing SecureBytes, _ rhs: borrowing SecureBytes) -> Bool {
        guard lhs.count == rhs.count else { return false }
        return lhs.withUnsafeBytes { left in
            rhs.withUnsafeBytes { right in
                guard let l = left.baseAddress, let r = right.baseAddress else { return false }
                return sodium_memcmp(l, r, left.count) == 0
            }
        }
    }

    /// A random passphrase of `bytes` random bytes as hex, in guarded memory (for the dev key).
    public static func randomPassphrase(bytes: Int = 32) throws(KeyFileError) -> SecureBytes {
        var raw: SecureBytes
        do { raw = try SecureBytes(count: bytes) } catch { throw KeyFileError.crypto(error) }
        var text: SecureBytes
        do { text = try SecureBytes(count: bytes * 2 + 1) } catch { throw KeyFileError.crypto(error) }
        raw.withUnsafeMutableBytes { if let base = $0.baseAddress { randombytes_buf(base, bytes) } }
        text.withUnsafeMutableBytes { out in
            raw.withUnsafeBytes { input in
                guard let outBase = out.baseAddress?.assumingMemoryBound(to: CChar.self),
                    let inBase = input.baseAddress?.assumingMemoryBound(to: UInt8.self)
                else { return }
                _ = sodium_bin2hex(outBase, out.count, inBase, input.count)
            }
        }
        var result: SecureBytes
        do { result = try SecureBytes(count: bytes * 2) } catch { throw KeyFileError.crypto(error) }
        result.withUnsafeMutableBytes { out in
            text.withUnsafeBytes { out.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[0..<(bytes * 2)])) }
        }
        return result
    }
}
