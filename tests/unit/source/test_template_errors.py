"""Template errors that point at the template and the value at fault, through the CLI."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from cmp.errors import ExitStatus
from tests.support.cli import tagpin

VALUES = "image: nginx:1.27\nports: [80]\ncfg: {a: 1}\nflags: {debug: yes}\n"


def render(app: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ARGOCD_"))}
    env.update(TAGPIN_APP_LOOKUP="off")
    return tagpin("render", app, env=env)


def write_app(root: Path, files: dict[str, str], values: str = VALUES) -> Path:
    app = root / "app"
    for name, text in {"tagpin.yaml": "{}\n", "values.yaml": values, **files}.items():
        (app / name).parent.mkdir(parents=True, exist_ok=True)
        (app / name).write_text(text)
    return app


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        (
            "values.image.repository",
            "values.image is a string ('nginx:1.27'), which has no attribute 'repository'",
        ),
        (
            "values.image['repository']",
            "values.image is a string ('nginx:1.27'), which has no attribute 'repository'",
        ),
        ("values.ports[2]", "values.ports is a list of 1 item, which has no item 2"),
        ("values.ports[0].name", "values.ports[0] is a number (80), which has no attribute 'name'"),
        ("values.cfg.a.b", "values.cfg.a is a number (1), which has no attribute 'b'"),
        (
            "values.flags.debug.x",
            "values.flags.debug is a boolean (true), which has no attribute 'x'",
        ),
        ("values.cfg.zz", "values.cfg.zz is not defined"),
    ],
)
def test_a_lookup_into_the_wrong_kind_of_value_names_its_path(
    tmp_path: Path, expression: str, message: str
) -> None:
    app = write_app(
        tmp_path,
        {
            "templates/cm.yaml.j2": (
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\ndata:\n"
                f"  a: '{{{{ {expression} }}}}'\n"
            )
        },
    )
    done = render(app)
    assert done.returncode == ExitStatus.TEMPLATE and done.stdout == ""
    assert f"templates/cm.yaml.j2:6: {message}\n" in done.stderr
    assert "object' has no attribute" not in done.stderr


HEAD = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\ndata:\n"
LOOP = "{% for i in range(5) %}\n  k{{ i }}: v\n{% endfor %}\n"  # 3 template lines, 5 rendered


@pytest.mark.parametrize(
    ("files", "where", "rendered"),
    [
        pytest.param(
            {"templates/bad.yaml.j2": HEAD + LOOP + "  ok: 1\n bad: 2\n"},
            "templates/bad.yaml.j2:10: invalid YAML",
            12,
            id="after-a-loop",
        ),
        pytest.param(
            {
                "templates/bad.yaml.j2": HEAD + LOOP + "{% include 'lib/part.j2' %}\n",
                "lib/part.j2": "  a: 1\n  b: 2\n c: 3\n",
            },
            "templates/bad.yaml.j2:9 (text from lib/part.j2:3, included there): invalid YAML",
            13,
            id="in-an-included-file",
        ),
        pytest.param(
            {
                "templates/bad.yaml.j2": "{% import 'lib/m.j2' as m %}\n"
                + HEAD
                + LOOP
                + "{{ m.entries(7) }}\n",
                "lib/m.j2": "{% macro entries(n) %}\n  first: {{ n }}\n  second: 2\n"
                " third: {{ n }}\n{% endmacro %}\n",
            },
            "templates/bad.yaml.j2:10 (text from the macro at lib/m.j2:1, its line 4): "
            "invalid YAML",
            13,
            id="in-a-macro",
        ),
        pytest.param(
            {"templates/bad.yaml.j2": HEAD + LOOP + '  z: {{ "a" }}\n bad: 2\n'},
            "templates/bad.yaml.j2:10: invalid YAML",
            12,
            id="after-a-folded-constant",
        ),
    ],
)
def test_a_yaml_error_in_a_template_names_the_template_line(
    tmp_path: Path, files: dict[str, str], where: str, rendered: int
) -> None:
    done = render(write_app(tmp_path, files))
    assert done.returncode == ExitStatus.MANIFEST and done.stdout == ""
    assert f"  {where}: did not find expected key" in done.stderr, done.stderr
    assert f"(rendered line {rendered}, column 2)\n" in done.stderr


def test_a_yaml_error_in_a_plain_file_keeps_its_line(tmp_path: Path) -> None:
    done = render(write_app(tmp_path, {"templates/plain.yaml": HEAD + "  ok: 1\n bad: 2\n"}))
    assert done.returncode == ExitStatus.MANIFEST
    assert "  templates/plain.yaml:7:2: invalid YAML: did not find expected key" in done.stderr


MACROS = (
    "{% macro container(image, ports) %}\n"
    "- name: web\n"
    "  image: {{ image }}\n"
    "  ports:\n"
    "{% for port in ports %}\n"
    "  - containerPort: {{ port.number }}\n"
    "{% endfor %}\n"
    "  env: {{ values.imge }}\n"
    "{% endmacro %}\n"
)
DEPLOYMENT = (
    "{% import 'lib/k8s.j2' as k8s with context %}\n"
    "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n"
    "  template:\n    spec:\n      containers:\n"
    "{{ k8s.container(values.image, CALL) | indent(6, true) }}\n"
)


@pytest.mark.parametrize(
    ("call", "values", "message"),
    [
        pytest.param(
            "[]",
            VALUES,
            "lib/k8s.j2:8 (called from templates/deployment.yaml.j2:9): values.imge is not defined",
            id="undefined-in-a-macro",
        ),
        pytest.param(
            "values.ports",
            VALUES,
            "lib/k8s.j2:6 (called from templates/deployment.yaml.j2:9): port is a number (80), "
            "which has no attribute 'number'",
            id="loop-variable-of-a-macro",
        ),
    ],
)
def test_an_error_in_a_macro_names_the_lines_that_led_there_and_the_value(
    tmp_path: Path, call: str, values: str, message: str
) -> None:
    app = write_app(
        tmp_path,
        {
            "lib/k8s.j2": MACROS,
            "templates/deployment.yaml.j2": DEPLOYMENT.replace("CALL", call),
        },
        values,
    )
    done = render(app)
    assert done.returncode == ExitStatus.TEMPLATE and done.stdout == ""
    assert f"  {message}\n" in done.stderr, done.stderr
    assert "the value is" not in done.stderr


def test_a_list_item_is_named_by_its_path_whatever_was_looked_up_since(tmp_path: Path) -> None:
    template = (
        HEAD + "{% set ports = values.ports %}\n  a: '{{ values.image }}{{ ports[0].name }}'\n"
    )
    done = render(write_app(tmp_path, {"templates/cm.yaml.j2": template}))
    assert done.returncode == ExitStatus.TEMPLATE
    assert (
        "  templates/cm.yaml.j2:7: values.ports[0] is a number (80), which has no attribute "
        "'name'\n"
    ) in done.stderr


def test_an_include_chain_is_named_from_the_innermost_line_out(tmp_path: Path) -> None:
    app = write_app(
        tmp_path,
        {
            "templates/cm.yaml.j2": HEAD + "{% include 'lib/data.j2' %}\n",
            "lib/data.j2": "{% import 'lib/m.j2' as m %}\n  a: {{ m.value() }}\n",
            "lib/m.j2": "{% macro value() %}\n{{ nope }}\n{% endmacro %}\n",
        },
    )
    done = render(app)
    assert done.returncode == ExitStatus.TEMPLATE
    assert (
        "  lib/m.j2:2 (called from lib/data.j2:2, included from templates/cm.yaml.j2:6): "
        "'nope' is undefined\n"
    ) in done.stderr


def test_values_lists_still_print_and_compare_as_lists(tmp_path: Path) -> None:
    app = write_app(
        tmp_path,
        {
            "templates/cm.yaml.j2": HEAD
            + "  ports: '{{ values.ports | to_json }}'\n"
            + "  same: '{{ values.ports == [80] }}'\n"
            + "  yaml: {{ values.ports | to_yaml | quote }}\n"
        },
    )
    done = render(app)
    assert done.returncode == 0, done.stderr
    assert "  ports: '[80]'\n  same: 'True'\n  yaml: '- 80'\n" in done.stdout


HELM_HINT = "tagpin templates are Jinja2, not Helm's Go templates: write values.x for .Values.x"


@pytest.mark.parametrize(
    ("line", "error"),
    [
        ("  a: {{ .Values.image }}", "template syntax error: unexpected '.'"),
        ("  a: {{ .Release.Name | quote }}", "template syntax error: unexpected '.'"),
        ("  a: {{ toYaml .Values.cfg | nindent 4 }}", "template syntax error: expected token"),
        ('  a: {{ include "web.labels" . }}', "template syntax error: expected token"),
        ("{{- if .Values.cfg }}\n  a: b\n{{- end }}", "'if' is undefined"),
    ],
)
def test_helm_syntax_is_told_what_the_jinja2_is(tmp_path: Path, line: str, error: str) -> None:
    done = render(write_app(tmp_path, {"templates/cm.yaml.j2": f"{HEAD}{line}\n"}))
    assert done.returncode == ExitStatus.TEMPLATE and done.stdout == ""
    assert "templates/cm.yaml.j2:6: " + error in done.stderr
    assert HELM_HINT in done.stderr


def test_a_jinja_mistake_gets_no_helm_hint(tmp_path: Path) -> None:
    done = render(write_app(tmp_path, {"templates/cm.yaml.j2": HEAD + "  a: {{ values.x y }}\n"}))
    assert done.returncode == ExitStatus.TEMPLATE
    assert "template syntax error" in done.stderr and "Helm" not in done.stderr
