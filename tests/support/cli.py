"""`tagpin` in a subprocess, as people, CI and Argo CD run it: the one helper e2e tests share.

Never raising on a non-zero exit, bounded by a timeout so a hung render fails the test instead
of hanging it, and never reading the test runner's own standard input. Text (UTF-8, bytes
that are not kept as surrogates) unless `binary`. `probe` runs a Python snippet in place of
the console script (it calls `cmp.cli.main()` itself), for tests that look at what a run
imports.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Literal, overload

TAGPIN = str(Path(sys.executable).with_name("tagpin"))
Arg = str | os.PathLike[str]


@overload
def tagpin(
    *args: Arg,
    env: Mapping[str, str] | None = None,
    cwd: Arg | None = None,
    stdin: str | None = None,
    timeout: float = 120,
    probe: str | None = None,
    binary: Literal[False] = False,
) -> subprocess.CompletedProcess[str]: ...


@overload
def tagpin(
    *args: Arg,
    env: Mapping[str, str] | None = None,
    cwd: Arg | None = None,
    stdin: bytes | None = None,
    timeout: float = 120,
    probe: str | None = None,
    binary: Literal[True],
) -> subprocess.CompletedProcess[bytes]: ...


def tagpin(
    *args: Arg,
    env: Mapping[str, str] | None = None,
    cwd: Arg | None = None,
    stdin: str | bytes | None = None,
    timeout: float = 120,
    probe: str | None = None,
    binary: bool = False,
) -> subprocess.CompletedProcess[str] | subprocess.CompletedProcess[bytes]:
    """`tagpin ARGS` with `env` (default: this process's environment) in `cwd`."""
    command = [sys.executable, "-c", probe] if probe is not None else [TAGPIN]
    return subprocess.run(
        [*command, *map(str, args)],
        input=stdin,
        stdin=subprocess.DEVNULL if stdin is None else None,  # never the test runner's own
        env=dict(os.environ) if env is None else dict(env),
        cwd=cwd,
        capture_output=True,
        text=not binary,
        errors=None if binary else "surrogateescape",
        timeout=timeout,
        check=False,
    )
