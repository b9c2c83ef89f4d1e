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

extension Hardening {
    /// Installs the system-call filter on every thread: no exec, no ptrace, no sockets but AF_UNIX (and, with
    /// `allowTCP` for a ledger database reached over TCP, stream sockets of AF_INET and AF_INET6).
    /// Applied once the agent is serving, whether or not systemd adds its own filter.
    public static func applySyscallFilter(allowTCP: Bool = false) throws(SystemError) {
        let result = ccustodian_apply_syscall_filter(allowTCP ? 1 : 0)
        guard result == 0 else { throw SystemError("seccomp", "filter", -result) }
    }
}

extension Hardening {
    /// Whether ptrace(PTRACE_TRACEME) succeeds in this process (for `sandbox-check`).
    public static func ptraceTracemeSucceeds() -> Bool { ccustodian_ptrace_traceme() == 0 }
}
