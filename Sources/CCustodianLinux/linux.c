#define _GNU_SOURCE
#include "CCustodianLinux.h"

#include <errno.h>
#include <sys/socket.h>

#if defined(__linux__)
#include <sys/prctl.h>
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

int ccustodian_peer_credentials(int fd, pid_t *pid, uid_t *uid, gid_t *gid) {
#if defined(__linux__)
    struct ucred cred;
    socklen_t len = sizeof(cred);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
        return -1;
    }
    *pid = cred.pid;
    *uid = cred.uid;
    *gid = cred.gid;
    return 0;
#else
    errno = ENOSYS;
    return -1;
#endif
}
