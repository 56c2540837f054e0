"""`python -m bench --profile CASE [served]` writes the profile of one render and prints its path.

In-process, the profile is the `tagpin` process's (which ends with os._exit, where cProfile's
own `-o` writes nothing); served, it is the render server worker's that answered, not the thin
client's. Tiny apps (--smoke); nothing about time is asserted.
"""

from __future__ import annotations

import os
import pstats
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def profile(tmp_path: Path, *arguments: str) -> tuple[Path, set[tuple[str, str]]]:
    """Run the bench's profiler; the path it printed, and the (file, function) pairs profiled."""
    completed = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--no-compile", "--workdir", str(tmp_path)]
        + ["--profile", *arguments],
        cwd=ROOT,
        env={**os.environ, "TMPDIR": str(tmp_path)},  # where the .prof goes by default
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    printed = re.search(r"^wrote (\S+) ", completed.stdout, re.MULTILINE)
    assert printed, completed.stdout
    path = Path(printed.group(1))
    assert path.is_file() and path.parent == tmp_path
    profiled = pstats.Stats(str(path)).stats  # type: ignore[attr-defined]  # (file, line, name) keys
    return path, {(Path(file).as_posix(), name) for file, _, name in profiled}


def _has(functions: set[tuple[str, str]], file: str, name: str) -> bool:
    return any(path.endswith(file) and function == name for path, function in functions)


@pytest.mark.parametrize(
    ("arguments", "command"),
    [
        (["example"], ("cmp/generate.py", "generate")),
        (["pin"], ("cmp/commands/pin.py", "command")),
    ],
)
def test_an_in_process_profile_covers_the_whole_command(
    tmp_path: Path, arguments: list[str], command: tuple[str, str]
) -> None:
    path, functions = profile(tmp_path, *arguments)
    assert path.name == f"tagpin-{arguments[0]}.prof"
    assert _has(functions, "cmp/cli.py", "main")  # the console script, imports and all
    assert _has(functions, *command)
    assert _has(functions, "cmp/source/emit.py", "emit_stream")


def test_a_served_profile_is_the_workers_that_rendered(tmp_path: Path) -> None:
    path, functions = profile(tmp_path, "example", "served")
    assert path.name == "tagpin-example-served.prof"
    assert _has(functions, "cmp/server/listener.py", "_render")
    assert _has(functions, "cmp/source/emit.py", "emit_stream")
    assert not _has(functions, "cmp/cli.py", "main")  # not the client's forwarding


def test_a_cold_profile_sees_the_ecr_calls(tmp_path: Path) -> None:
    """`--profile cold`: an empty cache against moto's ECR, one repository at a time so that
    cProfile (which follows the thread it started in) sees each call."""
    path, functions = profile(tmp_path, "cold")
    assert path.name == "tagpin-cold.prof"
    assert _has(functions, "cmp/registry/ecr.py", "describe_tags")
    assert _has(functions, "cmp/registry/ecr.py", "_call")
    assert _has(functions, "cmp/source/emit.py", "emit_stream")
