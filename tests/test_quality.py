"""The code stays lint- and type-clean: CI runs the README's test command only, so the checks
the style guide asks for run as tests: ruff (lint and format), and mypy (strict over cmp/, and
over tests/ and bench/; the settings are pyproject.toml's)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def test_ruff_finds_nothing() -> None:
    done = subprocess.run(
        [str(BIN / "ruff"), "check", "cmp", "tests", "examples", "bench"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_ruff_format_changes_nothing() -> None:
    done = subprocess.run(
        [str(BIN / "ruff"), "format", "--check", "cmp", "tests", "examples", "bench"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_mypy_finds_nothing() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mypy"], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
