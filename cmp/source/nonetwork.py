"""Run a program that cannot open a network connection:
`python -I -S nonetwork.py PROGRAM ARG...` installs a seccomp filter, then execs PROGRAM.

kustomize fetches any path that parses as an http(s) URL, from whichever field names it
(api/internal/loader/fileloader.go), and Go's HTTP client never sends a loopback address
through a proxy. Checking fields cannot be complete (replacements can assemble a URL from
pieces, new kustomize versions add fields), so a kustomize without remote loading runs under a
filter that makes socket(2) fail with EACCES: no field, host spelling or redirect gets a
connection, and neither does git or anything else kustomize starts (filters are inherited and
cannot be removed). Denied too: io_uring (IORING_OP_SOCKET opens sockets without socket(2))
and the calls that reach into another process of the same user, which may hold a socket.

libseccomp builds the filter: it also refuses the x32 and 32-bit system call entry points,
which a hand-written filter must remember to check. Its shared library comes with Debian's
libseccomp2, a dependency of apt itself, so every Debian-based image has it. The filter stacks
on the container runtime's own (RuntimeDefault allows seccomp(2)) and needs no privilege:
libseccomp sets no_new_privs first. Network namespaces would need CAP_SYS_ADMIN.

Standard library only, run as a script with -I -S: the interpreter starts in about 10 ms, reads
no environment variable and imports nothing from site-packages before it execs the program.
"""

from __future__ import annotations

import ctypes
import errno
import os
import sys

LIBRARY = "libseccomp.so.2"
DENIED = ("socket", "io_uring_setup", "pidfd_getfd", "ptrace", "process_vm_writev")
UNCONFINED = 125  # exit status: the filter could not be installed; the program did not run
NOT_STARTED = 126  # exit status: execve(2) failed (as a shell's "cannot execute")
PREFIX = "tagpin-nonetwork: "  # begins the one line of stderr that says why

_ALLOW = 0x7FFF0000  # SCMP_ACT_ALLOW
_ERRNO = 0x00050000  # SCMP_ACT_ERRNO(n) is _ERRNO | n


def deny_network(library: str | None = None) -> None:
    """Install the filter on this process (and every process it starts from now on)."""
    library = library or LIBRARY
    try:
        seccomp = ctypes.CDLL(library)
    except OSError:
        raise OSError(f"{library} not found (Debian: apt-get install libseccomp2)") from None
    seccomp.seccomp_init.argtypes = (ctypes.c_uint32,)
    seccomp.seccomp_init.restype = ctypes.c_void_p
    seccomp.seccomp_syscall_resolve_name.argtypes = (ctypes.c_char_p,)
    seccomp.seccomp_syscall_resolve_name.restype = ctypes.c_int
    seccomp.seccomp_rule_add_array.argtypes = (
        ctypes.c_void_p,
        ctypes.c_uint32,
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.c_void_p,
    )
    seccomp.seccomp_rule_add_array.restype = ctypes.c_int
    seccomp.seccomp_load.argtypes = (ctypes.c_void_p,)
    seccomp.seccomp_load.restype = ctypes.c_int
    seccomp.seccomp_release.argtypes = (ctypes.c_void_p,)
    seccomp.seccomp_release.restype = None
    context = seccomp.seccomp_init(_ALLOW)
    if not context:
        raise OSError("seccomp_init failed")
    try:
        for name in DENIED:
            number = seccomp.seccomp_syscall_resolve_name(name.encode())
            if number < 0:
                raise OSError(f"{library} does not know the system call {name}")
            # Whatever the arguments: no comparisons (0, NULL).
            status = seccomp.seccomp_rule_add_array(context, _ERRNO | errno.EACCES, number, 0, None)
            if status < 0:
                raise OSError(f"seccomp_rule_add({name}): {os.strerror(-status)}")
        status = seccomp.seccomp_load(context)
        if status < 0:
            raise OSError(f"seccomp_load: {os.strerror(-status)}")
    finally:
        seccomp.seccomp_release(context)


def main(argv: list[str]) -> None:
    if not argv:
        _fail(NOT_STARTED, "usage: nonetwork.py PROGRAM [ARG...]")
    try:
        deny_network()
    except OSError as exc:
        _fail(UNCONFINED, f"cannot run {argv[0]} without network: {exc}")
    try:
        os.execv(argv[0], argv)
    except OSError as exc:
        _fail(NOT_STARTED, f"cannot run {argv[0]}: {exc.strerror}")


def _fail(status: int, message: str) -> None:  # never returns (`typing` costs 10 ms to import)
    sys.stderr.write(PREFIX + message + "\n")
    sys.stderr.flush()
    os._exit(status)


if __name__ == "__main__":
    main(sys.argv[1:])
