import ArgumentParser
import CustodianAgent

#if canImport(Glibc)
    import Glibc
#endif

/// Installs the agent's system-call filter in this process, then tries what it must forbid. For the tests (and
/// operators) to see the filter hold on this kernel: exit 0 only if every forbidden call failed.
struct SandboxCheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sandbox-check", abstract: "Check that the system-call filter holds on this machine.",
        shouldDisplay: false)

    func run() throws {
        do { try Hardening.applySyscallFilter() } catch { throw CLIFailure("\(error)") }
        var held = true
        func report(_ what: String, denied: Bool) {
            print("\(what): \(denied ? "denied (\(String(cString: strerror(errno))))" : "ALLOWED")")
            held = held && denied
        }
        let inet = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        report("socket(AF_INET)", denied: inet < 0)
        let inet6 = socket(AF_INET6, Int32(SOCK_DGRAM.rawValue), 0)
        report("socket(AF_INET6)", denied: inet6 < 0)
        let unix = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        print("socket(AF_UNIX): \(unix >= 0 ? "allowed" : "DENIED")")
        held = held && unix >= 0
        report("ptrace(PTRACE_TRACEME)", denied: !Hardening.ptraceTracemeSucceeds())
        fflush(nil)
        // Last: if this succeeds, this process becomes /bin/true and never prints the verdict.
        let path = "/bin/true"
        var argv: [UnsafeMutablePointer<CChar>?] = [strdup(path), nil]
        _ = execv(path, &argv)
        report("execve(/bin/true)", denied: true)
        print(held ? "filter holds" : "FILTER DOES NOT HOLD")
        if !held { throw ExitCode(2) }
    }
}
