"""A catalogue of malformed apps: each either renders exactly like its clean twin or ends in a
clear error (its own exit code, a message naming the file and line, nothing on stdout).

The table is documented in docs/reliability.md; keep the two in step.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from cmp.errors import ExitStatus
from tests.support.cli import tagpin
from tests.support.renders import generate_env


@dataclass(frozen=True)
class Fifo:
    """A named pipe: opening it for reading blocks until a writer comes, which never happens."""


@dataclass(frozen=True)
class Directory:
    """A directory where a file is expected."""


@dataclass(frozen=True)
class Symlink:
    target: str


Content = str | bytes | Fifo | Directory | Symlink

CONFIG_MAP = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  k: {value}\n"

# The clean twin: a values file, a Jinja template and a plain manifest.
CLEAN: dict[str, Content] = {
    "tagpin.yaml": "{}\n",
    "values.yaml": "greeting: hello\nscript: |\n  echo one\n  echo two\n",
    "templates/plain.yaml": CONFIG_MAP.format(name="plain", value="v"),
    "templates/rendered.yaml.j2": (
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: rendered\ndata:\n"
        "  greeting: {{ values.greeting }}\n  script: {{ values.script | tojson }}\n"
    ),
}


def with_line_endings(files: Mapping[str, Content], ending: str) -> dict[str, Content]:
    return {p: c.replace("\n", ending) if isinstance(c, str) else c for p, c in files.items()}


def with_bom(files: Mapping[str, Content]) -> dict[str, Content]:
    return {p: b"\xef\xbb\xbf" + c.encode() if isinstance(c, str) else c for p, c in files.items()}


def nested_lists(depth: int) -> str:
    return "[" * depth + "]" * depth


def app_with(path: str, content: Content) -> dict[str, Content]:
    """The clean twin with one file added or replaced."""
    return {**CLEAN, path: content}


@dataclass(frozen=True)
class Renders:
    """Renders byte for byte like the clean twin, or (twin=False) renders showing `shows`."""

    twin: bool = True
    shows: str = ""


@dataclass(frozen=True)
class Fails:
    status: ExitStatus
    message: str  # names the file (and line when there is one)


CATALOGUE = [
    pytest.param(with_line_endings(CLEAN, "\r\n"), {}, Renders(), id="windows-line-endings"),
    pytest.param(with_bom(CLEAN), {}, Renders(), id="utf8-bom"),
    pytest.param(with_bom(with_line_endings(CLEAN, "\r\n")), {}, Renders(), id="bom-and-crlf"),
    pytest.param(
        app_with("templates/broken", "{not yaml"),  # no .yaml suffix: not a template, ignored
        {},
        Renders(),
        id="non-template-files-are-ignored",
    ),
    pytest.param(
        app_with(
            "templates/deep.yaml",
            f"apiVersion: v1\nkind: List\nmetadata:\n  name: deep\nspec: {nested_lists(200)}\n",
        ),
        {},
        Renders(twin=False, shows="spec:\n- - - - "),
        id="200-nested-lists-render",
    ),
    pytest.param(
        app_with("templates/plain.yaml", Fifo()),
        {},
        Fails(ExitStatus.SOURCE, "templates/plain.yaml: "),
        id="fifo-template",
    ),
    pytest.param(
        app_with("values.yaml", Directory()),
        {},
        Fails(ExitStatus.SOURCE, "values.yaml: is a directory, expected a file"),
        id="directory-as-values-file",
    ),
    pytest.param(
        app_with("templates/plain.yaml", Symlink("gone.yaml")),
        {},
        Fails(ExitStatus.SOURCE, "templates/plain.yaml: file not found"),
        id="dangling-symlink",
    ),
    pytest.param(
        app_with("templates/plain.yaml", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"),
        {},
        Fails(ExitStatus.SOURCE, "templates/plain.yaml: looks like a binary file"),
        id="binary-file",
    ),
    pytest.param(
        app_with("templates/plain.yaml", CONFIG_MAP.format(name="p", value="v").encode("utf-16")),
        {},
        Fails(ExitStatus.SOURCE, "templates/plain.yaml: looks like a binary file"),
        id="utf16-file",
    ),
    pytest.param(
        app_with("templates/plain.yaml", CONFIG_MAP.format(name="p", value="x" * 2000)),
        {"TAGPIN_MAX_FILE_BYTES": "1000"},
        Fails(
            ExitStatus.SOURCE,
            "templates/plain.yaml: larger than 1000 bytes (TAGPIN_MAX_FILE_BYTES)",
        ),
        id="huge-template",
    ),
    pytest.param(
        app_with("values.yaml", "padding: " + "x" * 2000 + "\n"),
        {"TAGPIN_MAX_FILE_BYTES": "1000"},
        Fails(ExitStatus.SOURCE, "values.yaml: larger than 1000 bytes"),
        id="huge-values-file",
    ),
    pytest.param(
        app_with("templates/plain.yaml", CONFIG_MAP.format(name="p", value=nested_lists(10_000))),
        {},
        Fails(ExitStatus.MANIFEST, "templates/plain.yaml:6:"),
        id="10000-nested-lists",
    ),
    pytest.param(
        app_with("values.yaml", "deep: " + nested_lists(10_000) + "\n"),
        {},
        Fails(ExitStatus.SOURCE, "values.yaml:1:"),
        id="10000-nested-lists-in-values",
    ),
    pytest.param(
        app_with(
            "templates/plain.yaml",
            CONFIG_MAP.format(name="p", value="{a: " * 10_000 + "1" + "}" * 10_000),
        ),
        {},
        Fails(ExitStatus.MANIFEST, "templates/plain.yaml:6:"),
        id="10000-nested-mappings",
    ),
    pytest.param(
        app_with(
            "templates/plain.yaml",
            CONFIG_MAP.format(name="p", value="ok").encode() + b"  bad: \xff\xfe\n",
        ),
        {},
        Fails(ExitStatus.SOURCE, "templates/plain.yaml:7: not valid UTF-8"),
        id="invalid-utf8-template",
    ),
    pytest.param(
        app_with("values.yaml", b"greeting: hello\nname: caf\xe9\n"),
        {},
        Fails(ExitStatus.SOURCE, "values.yaml:2: not valid UTF-8"),
        id="latin1-values-file",
    ),
    pytest.param(
        app_with("templates/plain.yaml", CONFIG_MAP.format(name="p", value="v") + "  k: w\n"),
        {},
        Fails(ExitStatus.MANIFEST, "templates/plain.yaml:7:3: invalid YAML: duplicate key 'k'"),
        id="duplicate-key-in-template",
    ),
    pytest.param(
        app_with("values.yaml", "greeting: hello\nscript: x\ngreeting: bye\n"),
        {},
        Fails(ExitStatus.SOURCE, "values.yaml:3:1: invalid YAML: duplicate key 'greeting'"),
        id="duplicate-key-in-values",
    ),
    pytest.param(
        app_with("templates/plain.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n\tname: p\n"),
        {},
        Fails(ExitStatus.MANIFEST, "templates/plain.yaml:4:1: invalid YAML"),
        id="tab-indentation",
    ),
    pytest.param(
        app_with("templates/plain.yaml", CONFIG_MAP.format(name="p", value="a\x07b")),
        {},
        Fails(ExitStatus.MANIFEST, "templates/plain.yaml:6: invalid YAML: character U+0007"),
        id="raw-control-character",
    ),
    pytest.param(
        app_with("templates/plain.yaml", CONFIG_MAP.format(name="p", value="0x_")),
        {},
        Renders(twin=False, shows="k: '0x_'\n"),
        id="digitless-hex-scalar",
    ),
]


def build(root: Path, files: Mapping[str, Content]) -> Path:
    for relative, content in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, Fifo):
            os.mkfifo(path)
        elif isinstance(content, Directory):
            path.mkdir()
        elif isinstance(content, Symlink):
            path.symlink_to(content.target)
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_bytes(content.encode())
    return root


def render(app: Path, settings: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    # Far below Argo CD's deadline: a malformed app must fail fast, never hang.
    return tagpin("generate", cwd=app, env=generate_env(None, **settings), timeout=10)


@pytest.mark.parametrize(("files", "settings", "expected"), CATALOGUE)
def test_a_malformed_app_renders_like_its_clean_twin_or_fails_clearly(
    tmp_path: Path,
    files: Mapping[str, Content],
    settings: Mapping[str, str],
    expected: Renders | Fails,
) -> None:
    done = render(build(tmp_path / "app", files), settings)

    assert "Traceback" not in done.stderr and "internal error" not in done.stderr, done.stderr
    if isinstance(expected, Renders):
        assert done.returncode == 0, done.stderr
        if expected.twin:
            assert done.stdout == render(build(tmp_path / "twin", CLEAN), {}).stdout
        assert expected.shows in done.stdout
    else:
        assert done.returncode == expected.status, done.stderr
        assert done.stdout == ""
        assert expected.message in done.stderr
