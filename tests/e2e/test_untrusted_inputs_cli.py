"""The nastiest inputs of tests/unit/test_untrusted_inputs.py's generators, through the real
`tagpin pin` and `tagpin render` processes: each ends with its named exit code, a message that
says where, and nothing on stdout; never exit 70 (an internal error) and never a traceback."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from cmp.errors import ExitStatus
from cmp.registry.pushes import PUSHES_ANNOTATION
from tests.support.cli import tagpin
from tests.support.fake_kube import FakeKube

HOST = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
CONFIG_MAP = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n"
JSON_HEAD = '{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": '


def run(
    args: list[str], stdin: str = "", cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    bare = {
        "PATH": "/usr/bin:/bin",
        "HOME": "/nonexistent",
        "TAGPIN_APP_LOOKUP": "off",
        "TAGPIN_CACHE_DIR": os.environ["TAGPIN_CACHE_DIR"],  # the test's own (tests/conftest.py)
    }
    return tagpin(*args, stdin=stdin, cwd=cwd, env=bare | (env or {}), timeout=300)


def nested(depth: int, opener: str = "[") -> str:
    closer = {"[": "]", "{a: ": "}", '{"a":': "}"}[opener]
    return opener * depth + "1" + closer * depth


def laughs(levels: int = 9) -> str:
    lines = ['l0: &l0 "lol"']
    for level in range(1, levels):
        lines.append(f"l{level}: &l{level} [" + ", ".join([f"*l{level - 1}"] * 9) + "]")
    return CONFIG_MAP + "\n".join(lines) + "\n"


PIN_CASES = {
    "json-100000-deep": (JSON_HEAD + nested(100_000) + "}", ExitStatus.MANIFEST, "<stdin>:1:"),
    "json-1000-deep-in-the-3rd-value": (
        "{}\n{}\n" + nested(1000, '{"a":'),
        ExitStatus.MANIFEST,
        "<stdin>:3: invalid JSON: nested too deeply (more than 256 levels)",
    ),
    "json-NaN": (JSON_HEAD + '{"x": NaN}}', ExitStatus.MANIFEST, "data.x: NaN is not JSON"),
    "json-1e400": (JSON_HEAD + '{"x": 1e400}}', ExitStatus.MANIFEST, "data.x: the number 1e400"),
    "json-401-digits": (JSON_HEAD + '{"x": ' + "7" * 401 + "}}", ExitStatus.MANIFEST, "data.x:"),
    "json-lone-surrogate": (JSON_HEAD + '{"x": "\\udc00"}}', ExitStatus.MANIFEST, "surrogate"),
    "json-300000-empty-objects": ("{}\n" * 300_000, ExitStatus.MANIFEST, "<stdin>:300000:"),
    "yaml-300-deep-flow": (CONFIG_MAP + "x: " + nested(300), ExitStatus.MANIFEST, "<stdin>:4:"),
    "yaml-300-deep-block": (
        CONFIG_MAP
        + "x:\n"
        + "".join("  " * i + "- \n" for i in range(1, 300))
        + "  " * 300
        + "- a\n",
        ExitStatus.MANIFEST,
        "YAML nested too deeply (more than 256 levels)",
    ),
    "yaml-alias-to-itself": (CONFIG_MAP + "x: &a [*a]\n", ExitStatus.MANIFEST, "<stdin>:4"),
    "yaml-billion-laughs": (laughs(), ExitStatus.MANIFEST, "(an alias bomb?)"),
}


@pytest.mark.parametrize(("stdin", "status", "message"), PIN_CASES.values(), ids=PIN_CASES.keys())
def test_pin_refuses_hostile_streams_by_name(stdin: str, status: int, message: str) -> None:
    done = run(["pin", "-"], stdin)
    assert (done.returncode, done.stdout) == (status, ""), done.stderr[-2000:]
    assert message in done.stderr
    assert "Traceback" not in done.stderr and "internal error" not in done.stderr


def app(tmp_path: Path, files: dict[str, str]) -> Path:
    directory = tmp_path / "app"
    for name, text in {"tagpin.yaml": "{}\n", **files}.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return directory


VALUES_TEMPLATE = CONFIG_MAP + 'data: {a: "{{ values.a }}"}\n'
RECURSIVE_SCHEMA = (
    '{"$defs": {"n": {"type": "array", "items": {"$ref": "#/$defs/n"}}},'
    ' "type": "object", "properties": {"a": {"$ref": "#/$defs/n"}}}'
)
RENDER_CASES = {
    "values-300-deep": (
        {"values.yaml": "a: " + nested(300) + "\n", "templates/c.yaml.j2": VALUES_TEMPLATE},
        ExitStatus.SOURCE,
        "values.yaml:1: YAML nested too deeply (more than 256 levels)",
    ),
    "template-300-deep": (
        {"templates/c.yaml": CONFIG_MAP + "x: " + nested(300) + "\n"},
        ExitStatus.MANIFEST,
        "templates/c.yaml:4: YAML nested too deeply",
    ),
    "schema-3000-deep": (
        {"values.schema.json": nested(3000), "templates/c.yaml": CONFIG_MAP},
        ExitStatus.CONFIG,
        "values.schema.json:1: not valid JSON: nested too deeply",
    ),
    "schema-refers-to-itself": (
        {"values.schema.json": '{"allOf": [{"$ref": "#"}]}', "templates/c.yaml": CONFIG_MAP},
        ExitStatus.CONFIG,
        "values.schema.json: the schema refers to itself endlessly",
    ),
    "values-250-deep-under-a-recursive-schema": (
        {
            "values.yaml": "a: " + nested(250) + "\n",
            "values.schema.json": RECURSIVE_SCHEMA,
            "templates/c.yaml": CONFIG_MAP,
        },
        ExitStatus.CONFIG,
        "values.schema.json: ",
    ),
    "from-json-5000-deep": (
        {"templates/c.yaml.j2": CONFIG_MAP + "x: {{ ('" + nested(5000) + "' | from_json) }}\n"},
        ExitStatus.TEMPLATE,
        "nested too deeply (more than 256 levels)",
    ),
    "template-writes-a-lone-surrogate": (
        {"templates/c.yaml.j2": CONFIG_MAP + 'data: {a: "{{ "\\ud800" }}"}\n'},
        ExitStatus.MANIFEST,
        "a lone UTF-16 surrogate U+D800 is not a character",
    ),
}


@pytest.mark.parametrize(
    ("files", "status", "message"), RENDER_CASES.values(), ids=RENDER_CASES.keys()
)
def test_render_refuses_hostile_apps_by_name(
    tmp_path: Path, files: dict[str, str], status: int, message: str
) -> None:
    done = run(["render", str(app(tmp_path, files)), "--app-name", "web"], cwd=tmp_path)
    assert (done.returncode, done.stdout) == (status, ""), done.stderr[-2000:]
    assert message in done.stderr
    assert "Traceback" not in done.stderr and "internal error" not in done.stderr


WEB = f"{HOST}/shop/web"
DIGEST = "sha256:" + "5" * 64


@pytest.mark.parametrize(
    "record",
    [
        f'{{"v":1,"pushes":{{"{WEB}":{{"tag":"v1","digest":null,"at":{"1" * 401}}}}}}}',
        '{"v":1,"pushes":' + nested(5000, '{"a":') + "}",
    ],
    ids=["401-digit-time", "5000-deep"],
)
def test_a_render_whose_own_push_record_is_unreadable_warns_and_pins(
    tmp_path: Path, fake_kube: FakeKube, kubeconfig: Path, record: str
) -> None:
    """The attack: a tenant's own `tagpin.dev/pushes` with a 401-digit time or deeply nested
    JSON made its render exit 70; the docs promise an unreadable record only warns."""
    fake_kube.add("argocd", "web", {PUSHES_ANNOTATION: record})
    directory = app(
        tmp_path,
        {
            "templates/d.yaml": "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\n"
            f"spec: {{template: {{spec: {{containers: [{{name: web, image: '{WEB}:v1'}}]}}}}}}\n",
            "tagpin.lock": "apiVersion: tagpin.dev/v1\nkind: ImageLock\nimages:\n"
            f"- image: {WEB}:v1\n  digest: {DIGEST}\n",
        },
    )
    env = {"KUBECONFIG": str(kubeconfig), "ARGOCD_NAMESPACE": "argocd", "TAGPIN_APP_LOOKUP": "on"}
    done = run(["render", str(directory), "--app-name", "web"], cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    assert f"image: {WEB}:v1@{DIGEST}" in done.stdout
    assert f"warning: {PUSHES_ANNOTATION} on the Application is unreadable" in done.stderr
