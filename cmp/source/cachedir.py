"""Keeping a cache directory bounded: the oldest files go first.

Compiled templates are keyed by each template's source, so every commit of every app that
changes a template adds a file; without a bound the sidecar's /tmp (a node's disk) would only
grow. Evicting an entry that is still in use costs one recompilation.
"""

from __future__ import annotations

import os
from pathlib import Path

MAX_COMPILED_TEMPLATES = 2_000
MAX_COMPILED_BYTES = 128 * 1024 * 1024


def trusted(directory: Path) -> bool:
    """Whether `directory` exists (it is made if not) and only this user can write it: what is
    read back from it (compiled templates, rendered output) is used as is."""
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        info = os.stat(directory)
    except OSError:
        return False
    return info.st_uid == os.getuid() and not info.st_mode & 0o022


def trim(directory: Path, suffix: str, max_files: int, max_bytes: int) -> int:
    """When `directory`'s files ending in `suffix` exceed `max_files` or `max_bytes`, delete
    the least recently written until three quarters of each bound is left (so the next few
    writes do not each trim again). Returns how many it deleted; I/O errors are ignored (a
    concurrent render may have deleted the same file)."""
    entries: list[tuple[float, int, str]] = []
    try:
        with os.scandir(directory) as listing:
            for entry in listing:
                if entry.name.endswith(suffix) and entry.is_file(follow_symlinks=False):
                    info = entry.stat(follow_symlinks=False)
                    entries.append((info.st_mtime, info.st_size, entry.path))
    except OSError:
        return 0
    total = sum(size for _, size, _ in entries)
    if len(entries) <= max_files and total <= max_bytes:
        return 0
    entries.sort()
    files, deleted = len(entries), 0
    for _, size, path in entries:
        if files <= max_files * 3 // 4 and total <= max_bytes * 3 // 4:
            break
        try:
            os.unlink(path)
            deleted += 1
        except OSError:
            pass
        files, total = files - 1, total - size
    return deleted
