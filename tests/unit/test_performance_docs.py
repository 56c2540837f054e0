"""The speed figures in the README and docs/performance.md name commands that still exist.

Every figure is given with the `python -m bench …` command that measures it; a case renamed or
removed would leave a figure nobody can reproduce. So each bench command in those documents is
parsed by the bench's own argument parser (which refuses an unknown case), each `python -m
bench.X` must be a benchmark module, and each row of the README's table says what it was
measured on.
"""

from __future__ import annotations

import importlib
import re
import shlex
from pathlib import Path

import pytest

from bench.run import parse_args

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = ("README.md", "docs/performance.md", "bench/README.md")
# `python -m bench …` or `python -m bench.fleet …` up to the end of a code span or line, and
# the README table's shorthand `--cases …` for `python -m bench --cases …`.
COMMAND = re.compile(r"python -m (bench(?:\.\w+)?)((?: [^`\n#]*)?)|`(--cases [^`]*)`")


def bench_commands(document: str) -> list[tuple[str, list[str]]]:
    """(module, arguments) of every bench command the document names."""
    found = []
    for match in COMMAND.finditer((ROOT / document).read_text()):
        module, arguments, shorthand = match.groups()
        if shorthand:
            module, arguments = "bench", shorthand
        found.append((module, shlex.split(arguments)))
    return found


COMMANDS = [(document, *command) for document in DOCUMENTS for command in bench_commands(document)]


def test_the_documents_name_bench_commands() -> None:
    named = {(document, module) for document, module, _ in COMMANDS}
    assert {("README.md", "bench"), ("docs/performance.md", "bench")} <= named
    assert any(arguments[:1] == ["--cases"] for _, _, arguments in COMMANDS)


@pytest.mark.parametrize(("document", "module", "arguments"), COMMANDS)
def test_every_bench_command_in_the_documents_still_runs(
    document: str, module: str, arguments: list[str]
) -> None:
    if module == "bench":
        parse_args(arguments)  # exits (a failure here) on an unknown case or option
    else:
        assert callable(importlib.import_module(module).main), f"{document}: {module}"


@pytest.mark.parametrize(
    "arguments",
    [
        ["--cases", "example", "no-such-case"],
        ["--cases", "large-2000", "large-20000"],
        ["--profile", "nothing"],
        ["--profile", "pin", "served"],
        ["--profile", "example", "twice"],
    ],
)
def test_the_bench_refuses_a_case_it_does_not_have(
    arguments: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_args(arguments)
    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert "no case" in error or "--profile takes" in error


def _performance_rows() -> list[dict[str, str]]:
    text = (ROOT / "README.md").read_text()
    table = text[text.index("## Performance") :].split("\n## ")[0]
    lines = [line for line in table.splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    return [
        dict(zip(header, (cell.strip() for cell in line.strip("|").split("|")), strict=True))
        for line in lines[2:]
    ]


def test_every_readme_figure_has_its_command_and_says_what_it_was_measured_on() -> None:
    rows = _performance_rows()
    assert rows
    for row in rows:
        assert "python -m bench" in row["command"] or "--cases" in row["command"], row
        assert re.search(r"\b20\d\d-\d\d-\d\d\b", row["measured"]), row
