"""`tagpin generate` as a thin client of a render server (TAGPIN_RENDER_SERVER, docs/server.md).

Argo CD starts one process per render, and most of a small render is Python importing Jinja2,
PyYAML and tagpin. A render server imports them once; for each render it forks a worker that
starts warm. This module is all a served `tagpin generate` imports, and it imports next to
nothing itself (the C socket module, not `socket`; no `typing`, no settings table): it sends
the worker its working directory and environment, and prints the stdout and stderr the worker
sends back. The worker builds the Settings from that environment, where they are used; the
few variables this module reads itself are read as the table reads them
(tests/unit/server/test_client.py holds them to it).

Falling back is always safe: the worker's output comes back over the socket and only this
process writes it, once, so when no server answers (or a worker dies) the render runs here. No
file descriptor is handed over: a server that never reads it would keep Argo CD's pipe open.
"""

from __future__ import annotations

import _socket
import os

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (mypy knows the name)
if TYPE_CHECKING:
    from collections.abc import Mapping

PROTOCOL = b"tagpin-render/2"
SOCKET_NAME = "render-server-{version}.sock"  # in the cache directory, one per tagpin version
MAX_SOCKET_PATH = 100  # sockaddr_un holds 108 bytes; a longer path cannot be bound
START_TIMEOUT = 5.0  # seconds for a worker to say it started before this process renders itself
RESTART_BACKOFF = 30.0  # seconds between two starts of a server (`auto`) that did not stay up

# Frames from the worker: STARTED once it holds the request, then RESULT with the exit status,
# stdout and stderr. Anything else (EOF first, a short frame) means it died: render here.
STARTED = b"S"
RESULT = b"R"


# TAGPIN_RENDER_SERVER's values that ask a server (cmp.settings.ServerMode has them all).
SERVED_MODES = ("on", "auto")


def served_mode(environ: Mapping[str, str]) -> str | None:
    """TAGPIN_RENDER_SERVER when it asks a server (`on`, `auto`), else None: `off`, or a value
    that is none of them, which the in-process render then reports."""
    mode = (environ.get("TAGPIN_RENDER_SERVER") or "off").strip().lower()
    return mode if mode in SERVED_MODES else None


def socket_path(environ: Mapping[str, str]) -> str | None:
    """TAGPIN_RENDER_SERVER_SOCKET, else a versioned name in the cache directory (TAGPIN_CACHE_DIR
    or under XDG_CACHE_HOME)."""
    from cmp import __version__

    path = environ.get("TAGPIN_RENDER_SERVER_SOCKET") or ""
    if not path:
        base = environ.get("TAGPIN_CACHE_DIR") or ""
        if not base and environ.get("XDG_CACHE_HOME"):
            base = os.path.join(environ["XDG_CACHE_HOME"], "tagpin")
        if not base:
            return None  # the cache's tempdir default needs `tempfile`: not worth it here
        path = os.path.join(base, SOCKET_NAME.format(version=__version__))
    return path if len(os.fsencode(path)) <= MAX_SOCKET_PATH else None


def encode_request(cwd: str, umask: int, environ: Mapping[bytes, bytes]) -> bytes:
    """PROTOCOL, cwd, umask (octal), then NAME=VALUE per variable, NUL-separated (no C string
    holds NUL)."""
    fields = [PROTOCOL, os.fsencode(cwd), b"%o" % umask]
    fields += [k + b"=" + v for k, v in environ.items()]
    payload = b"\0".join(fields)
    return len(payload).to_bytes(4, "big") + payload


def decode_request(payload: bytes) -> tuple[str, int, dict[bytes, bytes]]:
    """cwd, umask and environment from encode_request's payload (after its length)."""
    fields = payload.split(b"\0")
    if fields[0] != PROTOCOL or len(fields) < 3:
        raise ValueError("unknown protocol")
    environ = {}
    for field in fields[3:]:
        name, equals, value = field.partition(b"=")
        if equals:
            environ[name] = value
    return os.fsdecode(fields[1]), int(fields[2], 8), environ


def ask_server(environ: Mapping[str, str], cwd: str, *, start: bool) -> int | None:
    """The exit status of a render served by the server, or None when this process must render
    (no server, not ours, or it died before sending a result). `start`: when no server answers,
    start one for the next renders (TAGPIN_RENDER_SERVER=auto)."""
    path = socket_path(environ)
    if path is None:
        return None
    connection = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        try:
            connection.connect(path)
        except OSError:
            if start:
                start_server(path)
            return None
        if not same_user(connection):
            return None
        return _exchange(connection, cwd)
    finally:
        connection.close()


def same_user(connection: _socket.socket) -> bool:
    """Whether this user is at the other end: only our own server (or client) is trusted, as a
    socket another user owns could feed us any YAML."""
    creds = connection.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, 12)
    return int.from_bytes(creds[4:8], "little") == os.getuid()


def _exchange(connection: _socket.socket, cwd: str) -> int | None:
    try:
        connection.settimeout(START_TIMEOUT)
        umask = os.umask(0o077)
        os.umask(umask)  # reading it means setting it
        connection.sendall(encode_request(cwd, umask, os.environb))
        if read_exact(connection, 1) != STARTED:
            return None
        connection.settimeout(None)  # the render itself may take as long as Argo CD allows
        if read_exact(connection, 1) != RESULT:
            return None
        header = read_exact(connection, 20)
        status = int.from_bytes(header[:4], "big")
        output = read_exact(connection, int.from_bytes(header[4:12], "big"))
        errors = read_exact(connection, int.from_bytes(header[12:], "big"))
    except (OSError, EOFError):
        return None
    _write_all(2, errors)
    _write_all(1, output)
    return status


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def read_exact(connection: _socket.socket, size: int) -> bytes:
    chunks, left = [], size
    while left:
        chunk = connection.recv(min(left, 1 << 20))
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def start_server(path: str) -> None:
    """Start a detached render server for the next renders; this one renders itself. Several
    renders may race here: the server holds a lock, so all but one exit at once. At most one
    start per RESTART_BACKOFF, so a server that cannot start does not tax every render."""
    import contextlib
    import fcntl
    import subprocess
    import sys
    import time

    lock_path = path + ".lock"
    try:
        os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)  # the first render
        try:
            lock, fresh = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600), True
        except FileExistsError:
            lock, fresh = os.open(lock_path, os.O_RDWR), False
    except OSError:
        return  # not ours to write: every render runs in-process
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # fails while a server holds it
        if not fresh and time.time() - os.fstat(lock).st_mtime < RESTART_BACKOFF:
            return
        os.utime(lock)  # the lock's mtime: when a server was last started
    except OSError:
        return
    finally:
        os.close(lock)
    keep: tuple[str, ...] = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TMPDIR", "VIRTUAL_ENV")
    # The sidecar's settings the server itself uses: its metrics port and log format, and the
    # cache directory whose render slots its metrics show. A render's own come with it.
    keep += ("TAGPIN_METRICS_PORT", "TAGPIN_LOG_FORMAT", "TAGPIN_CACHE_DIR", "XDG_CACHE_HOME")
    environ = {k: v for k, v in os.environ.items() if k in keep or k.startswith("PYTHON")}
    with contextlib.suppress(OSError):  # cannot start one: every render runs in-process
        subprocess.Popen(
            [sys.executable, "-m", "cmp.server.listener", "--socket", path, "--log", path + ".log"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            # Its own session: Argo CD ends a render by signalling the render's process group,
            # and must not wait on pipes a long-lived process holds.
            start_new_session=True,
            close_fds=True,
            env=environ,
            cwd="/",
        )
