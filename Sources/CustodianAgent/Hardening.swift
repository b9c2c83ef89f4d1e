import CCustodianLinux

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Process hygiene, in a fixed order, applied before the key is read.
public enum Hardening {
    /// Applies every step; throws on the first that fails, since running without it would be unsafe.
    public static func applyBeforeKeyIsRead() throws(SystemError) {
        // Files and sockets the agent creates are private to its user.
        umask(0o077)
        // Deny core dumps: memory holds the unsealed key.
        var limit = rlimit(rlim_cur: 0, rlim_max: 0)
        guard setrlimit(Int32(RLIMIT_CORE.rawValue), &limit) == 0 else { throw SystemError("setrlimit", "RLIMIT_CORE") }
        // Not dumpable: no core file, no ptrace attach by other processes of the same uid, /proc/PID/mem closed.
        guard ccustodian_set_not_dumpable() == 0 else { throw SystemError("prctl", "PR_SET_DUMPABLE") }
    }

    /// Whether the process is currently dumpable (for tests and status).
    public static var isDumpable: Bool { ccustodian_get_dumpable() != 0 }
}
