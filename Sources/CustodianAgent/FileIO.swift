#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// An error from the operating system, with the path and the call that failed.
public struct SystemError: Error, CustomStringConvertible, Sendable {
    public var call: String
    public var path: String
    public var code: Int32

    public init(_ call: String, _ path: String, _ code: Int32 = errno) {
        self.call = call
        self.path = path
        self.code = code
    }

    public var description: String { "\(call) \(path): \(String(cString: strerror(code)))" }
}

/// Small POSIX file helpers: whole-file reads, private directories.
public enum FileIO {
    /// The whole file at `path`.
    /// With `prefixOnly`, at most the first `limit` bytes; otherwise a longer file is an error.
    public static func readAll(
        _ path: String, limit: Int = 1 << 30, prefixOnly: Bool = false, followLinks: Bool = true
    ) throws(SystemError) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC | (followLinks ? 0 : O_NOFOLLOW))
        guard fd >= 0 else { throw SystemError("open", path) }
        defer { close(fd) }
        var out: [UInt8] = []
        var info = stat()
        if fstat(fd, &info) == 0, info.st_size > 0, Int(info.st_size) <= limit {
            out.reserveCapacity(Int(info.st_size))
        }
        var chunk = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                throw SystemError("read", path)
            }
            if count == 0 { return out }
            out.append(contentsOf: chunk[0..<count])
            if prefixOnly && out.count >= limit { return Array(out.prefix(limit)) }
            guard out.count <= limit else { throw SystemError("read", path, EFBIG) }
        }
    }

    /// Creates `path` with mode 0700 if missing; refuses an existing one that others can write.
    public static func ensurePrivateDirectory(_ path: String) throws(SystemError) {
        if mkdir(path, 0o700) != 0 && errno != EEXIST { throw SystemError("mkdir", path) }
        var info = stat()
        guard stat(path, &info) == 0 else { throw SystemError("stat", path) }
        guard info.st_mode & S_IFMT == S_IFDIR else { throw SystemError("stat", path, ENOTDIR) }
        guard info.st_mode & 0o022 == 0 else { throw SystemError("writable by group or others:", path, EPERM) }
    }

    /// Writes a whole small file with mode 0600, refusing to replace an existing one.
    public static func createPrivateFile(_ path: String, _ bytes: [UInt8]) throws(SystemError) {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw SystemError("create", path) }
        defer { close(fd) }
        var written = 0
        while written < bytes.count {
            let count = bytes.withUnsafeBytes { buffer -> Int in
                guard let base = buffer.baseAddress else { return 0 }
                return write(fd, base + written, bytes.count - written)
            }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { throw SystemError("write", path) }
            written += count
        }
        guard fsync(fd) == 0 else { throw SystemError("fsync", path) }
    }

    /// Whether something exists at `path`.
    public static func exists(_ path: String) -> Bool {
        var info = stat()
        return lstat(path, &info) == 0
    }

    /// Removes the temporaries an atomic replace leaves when the process dies before its rename
    /// (`<name>.tmp-<pid>-<random>`, for each of `names`) in `directory`; returns the names removed.
    @discardableResult
    public static func removeTemporaries(in directory: String, of names: [String]) -> [String] {
        guard let dir = opendir(directory) else { return [] }
        defer { closedir(dir) }
        var removed: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            guard names.contains(where: { name.hasPrefix($0 + ".tmp-") }) else { continue }
            if unlink(directory + "/" + name) == 0 { removed.append(name) }
        }
        return removed
    }
}
