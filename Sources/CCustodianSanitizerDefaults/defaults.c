/* Default sanitizer options for the custodian executable only (the test runner keeps the runtime's own defaults).
 *
 * LeakSanitizer finds leaks at exit by stopping every thread with ptrace from a helper task. The agent makes
 * itself non-dumpable and installs a seccomp filter before it serves (README, Hardening), which is exactly what
 * stops ptrace, so the check cannot run in the hardened process: it reports a fatal error and exits 1. Leak
 * checking of the engine, the audit log and the policy code happens in the test process instead (the in-process
 * suites under `scripts/sanitize address`). ASAN_OPTIONS set in the environment still override this. */
#include "CCustodianSanitizerDefaults.h"

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
const char *__asan_default_options(void);
const char *__asan_default_options(void) { return "detect_leaks=0"; }
#endif
#endif

int custodian_sanitizer_defaults_linked(void) { return 1; }
