"""CI proves the README: `.ci/run` runs exactly the README's test command, line for line."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _readme_test_command() -> list[str]:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("Install everything and run the tests", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert block is not None, "the README lost its test command"
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_ci_runs_the_readmes_test_command() -> None:
    script = (REPO / ".ci/run").read_text(encoding="utf-8").splitlines()
    commands = [
        line for line in script if line.strip() and not line.startswith(("#", "set ", "cd "))
    ]
    assert commands == _readme_test_command()
