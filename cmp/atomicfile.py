"""Files that other processes read while one is writing them (the digest cache, kept template
output, tagpin.lock): replaced whole, so a reader sees the old file or the new one, never a torn
one; and read only when they are regular files (a FIFO in their place would block the reader).

The temporary file is created new (O_EXCL) under a random name and never through a link
(O_NOFOLLOW): tagpin.lock is written in a directory of a repository others push to, and a link
planted there must not turn the write into one somewhere else.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path


def read_regular(path: Path, limit: int | None = None) -> bytes:
    """The file's bytes (at most `limit` + 1 of them, so a caller can tell it is too long);
    OSError, EINVAL for anything but a regular file, which is refused before it is read."""
    handle = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        mode = os.fstat(handle).st_mode
        if not stat.S_ISREG(mode):
            kind = "a directory" if stat.S_ISDIR(mode) else "not a regular file"
            raise OSError(errno.EINVAL, f"it is {kind}")
        with os.fdopen(handle, "rb", closefd=False) as file:
            return file.read() if limit is None else file.read(limit + 1)
    finally:
        os.close(handle)


def write_atomically(
    path: Path, data: bytes, *, mode: int = 0o600, temp_suffix: str = ".tmp"
) -> None:
    """Replace `path` with `data`: a new temporary file beside it (named `.<name>.<pid>.<random>`
    and `temp_suffix`, so the directory's clean-up finds one a killed writer left), then a
    rename. OSError if it cannot; the temporary file is removed then."""
    import secrets

    temp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(6)}{temp_suffix}")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    handle = os.open(temp, flags, mode)  # not ours if it fails: nothing to remove
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(handle, view) :]
        finally:
            os.close(handle)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
