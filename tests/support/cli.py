"""`tagpin` in a subprocess, as people, CI and Argo CD run it: the one helper e2e tests share.

Text in and out (UTF-8), never raising on a non-zero exit, bounded by a timeout so a hung
render fails the test instead of hanging it. `probe` runs a Python snippet in place of the
console script (it must end by calling `cmp.cli.main()`), for tests that look at what a run
imports.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

TAGPIN = str(Path(sys.executable).with_name("tagpin"))


def tagpin(
    *args: str | os.PathLike[str],
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    stdin: str | None = None,
    timeout: float = 120,
    probe: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """`tagpin ARGS` with `env` (default: this process's environment) in `cwd`."""
    command = [sys.executable, "-c", probe] if probe is not None else [TAGPIN]
    return subprocess.run(
        [*command, *map(str, args)],
        input=stdin,
        stdin=subprocess.DEVNULL if stdin is None else None,  # never the test runner's own
        env=dict(os.environ) if env is None else dict(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
