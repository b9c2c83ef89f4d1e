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

int ccustodian_apply_syscall_filter(int allow_inet) {
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
    if (allow_inet) {
        /* A ledger database over TCP: stream sockets of AF_INET and AF_INET6 besides AF_UNIX, nothing else. One
           comparison per argument and rule (libseccomp ORs the rules): every other family below AF_INET6 by name,
           the rest by range, then datagram and raw sockets of the two IP families. */
        static const int denied[] = {AF_UNSPEC, 3, 4, 5, 6, 7, 8, 9};
        for (unsigned i = 0; i < sizeof denied / sizeof denied[0]; i++) {
            rc |= seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EAFNOSUPPORT), SCMP_SYS(socket), 1,
                                   SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)denied[i]));
        }
        rc |= seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EAFNOSUPPORT), SCMP_SYS(socket), 1, SCMP_A0(SCMP_CMP_GT, AF_INET6));
        static const int families[] = {AF_INET, AF_INET6};
        static const int types[] = {SOCK_DGRAM, SOCK_RAW};
        for (unsigned f = 0; f < 2; f++) {
            for (unsigned t = 0; t < 2; t++) {
                rc |= seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPROTONOSUPPORT), SCMP_SYS(socket), 2,
                                       SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)families[f]),
                                       SCMP_A1(SCMP_CMP_MASKED_EQ, 0xf, (scmp_datum_t)types[t]));
            }
        }
    } else {
        rc |= seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EAFNOSUPPORT), SCMP_SYS(socket), 1,
                               SCMP_A0(SCMP_CMP_NE, AF_UNIX));
    }
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
