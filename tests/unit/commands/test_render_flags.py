"""Every command that renders takes the render flags from one definition, and `-o/--output`
means the output format wherever it appears (`tagpin lock -o json` once wrote a file named
`json`)."""

from __future__ import annotations

import re

import click
from click.testing import CliRunner

from cmp.commands.main import cli

RENDERING = ("render", "diff", "lock")
# The render flags that describe an app directory; `tagpin pin` reads a stream instead.
APP_DIRECTORY_ONLY = {
    "--repo-root",
    "--app-name",
    "--namespace",
    "--project",
    "--revision",
    "--repo-url",
    "--target-revision",
    "--env",
    "--values-file",
    "--set",
    "--parameters-json",
    "--kube-version",
    "--api-versions",
}


def help_entries(command: str) -> dict[str, str]:
    """`tagpin COMMAND --help`'s options: long flag -> the entry with its help text, wrapping
    undone (each command aligns its help column differently)."""
    done = CliRunner().invoke(cli, [command, "--help"], terminal_width=100)
    assert done.exit_code == 0, done.output
    options = done.output.split("Options:\n", 1)[1]
    entries: dict[str, str] = {}
    for block in re.split(r"\n(?=  -)", options):
        text = " ".join(block.split())
        flag = next(word for word in re.findall(r"--[\w-]+", text))
        entries[flag] = text
    return entries


def test_render_diff_and_lock_print_the_same_help_for_every_render_flag() -> None:
    render = help_entries("render")
    render_flags = set(render) - {"--debug", "--help"}
    assert {"--digests", "--image-updater", "--refresh", "--repo-url", "--output"} <= render_flags
    for command in ("diff", "lock"):
        entries = help_entries(command)
        assert {flag: entries.get(flag) for flag in render_flags} == {
            flag: render[flag] for flag in render_flags
        }, command


def test_pin_takes_the_render_flags_that_apply_to_a_stream() -> None:
    render, pin = help_entries("render"), help_entries("pin")
    shared = set(render) - APP_DIRECTORY_ONLY - {"--debug", "--help"}
    assert shared == {"--image-updater", "--digests", "--refresh", "--output"}
    assert {flag: pin.get(flag) for flag in shared} == {flag: render[flag] for flag in shared}


def _commands(group: click.Group, prefix: str = "") -> list[tuple[str, click.Command]]:
    found: list[tuple[str, click.Command]] = []
    for name, command in group.commands.items():
        found.append((prefix + name, command))
        if isinstance(command, click.Group):
            found += _commands(command, f"{prefix}{name} ")
    return found


def test_dash_o_is_an_output_format_in_every_command() -> None:
    formats = {
        name: tuple(param.type.choices) if isinstance(param.type, click.Choice) else param.type
        for name, command in _commands(cli)
        for param in command.params
        if {"-o", "--output"} & set(getattr(param, "opts", ()))
    }
    assert {"render", "diff", "lock", "pin", "branch status"} <= set(formats)
    assert all(isinstance(choices, tuple) and "json" in choices for choices in formats.values())


def test_a_file_name_given_to_lock_dash_o_names_the_new_flag() -> None:
    done = CliRunner().invoke(cli, ["lock", ".", "-o", "ci/digests.lock"])
    assert done.exit_code == 2
    assert "is not an output format" in done.output and "--lock-file FILE" in done.output
