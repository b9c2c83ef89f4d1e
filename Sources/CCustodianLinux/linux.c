#define _GNU_SOURCE
#include "CCustodianLinux.h"

#include <errno.h>
#include <malloc.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>

#if defined(__linux__)
#include <seccomp.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#endif

int ccustodian_set_not_dumpable(void) {
#if defined(__linux__)
    return prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
#else
    return 0;
#endif
}

int ccustodian_get_dumpable(void) {
#if defined(__linux__)
    return prctl(PR_GET_DUMPABLE, 0, 0, 0, 0);
#else
    return 0;
#endif
}

int ccustodian_apply_syscall_filter(void) {
#if defined(__linux__)
    /* Required to install a filter without CAP_SYS_ADMIN, and forbids gaining privileges through exec. */
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
        return -errno;
    }
    /* Default allow, with explicit denials: the Swift runtime and SwiftNIO use system calls that vary between
       versions, and a missed one must not stop the agent; what is denied is what an attacker who got code
       execution would want first: run programs, inspect other processes, talk to the network. */
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
    if (ctx == NULL) {
        return -ENOMEM;
    }
    int rc = 0;
    rc |= seccomp_attr_set(ctx, SCMP_FLTATR_CTL_TSYNC, 1);
    rc |= seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(execve), 0);
    rc |= seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(execveat), 0);
    rc |= seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(ptrace), 0);
    rc |= seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(process_vm_readv), 0);
    rc |= seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(process_vm_writev), 0);
    rc |= seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EAFNOSUPPORT), SCMP_SYS(socket), 1, SCMP_A0(SCMP_CMP_NE, AF_UNIX));
    rc |= seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EAFNOSUPPORT), SCMP_SYS(socketpair), 1,
                           SCMP_A0(SCMP_CMP_NE, AF_UNIX));
    if (rc != 0) {
        seccomp_release(ctx);
        return -EINVAL;
    }
    rc = seccomp_load(ctx);
    seccomp_release(ctx);
    return rc;
#else
    return -ENOSYS;
#endif
}

int ccustodian_ptrace_traceme(void) {
#if defined(__linux__)
    return (int)ptrace(PTRACE_TRACEME, 0, NULL, NULL);
#else
    errno = ENOSYS;
    return -1;
#endif
}

int ccustodian_malloc_top_pad(int bytes) {
#if defined(__GLIBC__)
    return mallopt(M_TOP_PAD, bytes);
#else
    (void)bytes;
    return 0;
#endif
}
