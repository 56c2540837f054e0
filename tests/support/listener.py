"""Start the render server's listener (`python -m cmp.server.listener`) as the sidecar does;
tests and benchmarks own the process's lifetime."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path


def start_listener(
    socket: Path,
    log: Path,
    env: Mapping[str, str],
    python: str = sys.executable,
    profile_dir: Path | None = None,
) -> subprocess.Popen[bytes]:
    """The listener on `socket`, logging every render to `log`, in a session of its own (so a
    signal to the test's process group does not reach it); with `profile_dir`, its workers
    write their profiles there."""
    return subprocess.Popen(
        [
            *(python, "-m", "cmp.server.listener"),
            *("--socket", str(socket), "--log", str(log), "--log-renders"),
            *(("--profile-dir", str(profile_dir)) if profile_dir else ()),
        ],
        env=dict(env),
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
