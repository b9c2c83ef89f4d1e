"""ptrace_attach.py PID: tries PTRACE_ATTACH on PID (then detaches); prints "attached" or "refused errno=N"."""
import ctypes
import os
import sys

libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
PTRACE_ATTACH, PTRACE_DETACH = 16, 17
pid = int(sys.argv[1])
if libc.ptrace(PTRACE_ATTACH, pid, None, None) == 0:
    os.waitpid(pid, 0)
    libc.ptrace(PTRACE_DETACH, pid, None, None)
    print("attached")
else:
    print(f"refused errno={ctypes.get_errno()}")
