#ifndef CCUSTODIAN_LINUX_H
#define CCUSTODIAN_LINUX_H

#include <stddef.h>
#include <sys/types.h>

/// Sets PR_SET_DUMPABLE to 0. Returns 0, or -1 with errno set.
int ccustodian_set_not_dumpable(void);

/// Reads PR_GET_DUMPABLE. Returns the flag, or -1 with errno set.
int ccustodian_get_dumpable(void);

/// Installs the agent's system-call filter on every thread of the process (libseccomp, TSYNC), after setting
/// PR_SET_NO_NEW_PRIVS. From then on: execve/execveat, ptrace, process_vm_readv/writev fail with EPERM, and
/// socket/socketpair for any family but AF_UNIX fail with EAFNOSUPPORT. With `allow_inet` (a ledger database over
/// TCP), socket also allows stream sockets of AF_INET and AF_INET6 (their datagram and raw sockets fail with
/// EPROTONOSUPPORT). Returns 0, or a negative errno value.
int ccustodian_apply_syscall_filter(int allow_inet);

/// ptrace(PTRACE_TRACEME): 0, or -1 with errno set (ptrace is variadic, so Swift cannot call it).
int ccustodian_ptrace_traceme(void);

/// Sets malloc's top padding (M_TOP_PAD): how much more than asked a heap grows by. Returns 1 on success.
int ccustodian_malloc_top_pad(int bytes);

#endif
