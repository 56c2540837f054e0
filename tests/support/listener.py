"""Start the render server's listener (`python -m cmp.server.listener`) as the sidecar does;
tests and benchmarks own the process's lifetime."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path


def start_listener(
    socket: Path, log: Path, env: Mapping[str, str], python: str = sys.executable
) -> subprocess.Popen[bytes]:
    """The listener on `socket`, logging every render to `log`, in a session of its own (so a
    signal to the test's process group does not reach it)."""
    return subprocess.Popen(
        [
            *(python, "-m", "cmp.server.listener"),
            *("--socket", str(socket), "--log", str(log), "--log-renders"),
        ],
        env=dict(env),
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
