#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// An exclusive lock on a state directory (`<state-dir>/lock`, flock): one writer of the audit log at a time,
/// whether an agent or an operator command.
public final class StateLock: Sendable {
    private let fd: Int32

    /// Takes the lock, or fails at once if another process holds it.
    public init(stateDirectory: String) throws(SystemError) {
        let path = stateDirectory + "/lock"
        // Not through a symbolic link: the lock is created inside the state directory or not at all.
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard fd >= 0 else { throw SystemError("open", path) }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let code = errno
            close(fd)
            throw SystemError("lock", path, code)
        }
        self.fd = fd
    }

    deinit { close(fd) }
}
