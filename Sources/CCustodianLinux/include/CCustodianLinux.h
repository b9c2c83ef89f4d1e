#ifndef CCUSTODIAN_LINUX_H
#define CCUSTODIAN_LINUX_H

#include <sys/types.h>

/// Sets PR_SET_DUMPABLE to 0. Returns 0, or -1 with errno set.
int ccustodian_set_not_dumpable(void);

/// Reads PR_GET_DUMPABLE. Returns the flag, or -1 with errno set.
int ccustodian_get_dumpable(void);

/// Reads SO_PEERCRED of a connected Unix socket. Returns 0, or -1 with errno set.
int ccustodian_peer_credentials(int fd, pid_t *pid, uid_t *uid, gid_t *gid);

#endif
