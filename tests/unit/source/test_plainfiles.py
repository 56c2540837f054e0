"""Jinja2 in a plain file is not rendered: written for tagpin, it is refused; any other Jinja2
statement is said; braces that are data for another tool pass (#23 item 3)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cmp.errors import ConfigError, ManifestError, SourceError
from cmp.source.plainfiles import jinja_tags
from tests.support.apptree import build_tree, render_dir

HINT = (
    "templates/cm.yaml is a plain file, copied as written: rename it to cm.yaml.j2 to render it "
    "with Jinja2 (if the braces are data for another tool, list the file in tagpin.yaml "
    "templates.literal)"
)


def app_with(tmp_path: Path, data: str, config: str = "{}\n", name: str = "cm.yaml") -> Path:
    manifest = f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm\ndata:\n{data}"
    return build_tree(tmp_path, {"tagpin.yaml": config, f"templates/{name}": manifest})


@pytest.mark.parametrize(
    ("data", "tag"),
    [
        ('  a: "{{ app.name }}"\n', "{{ app.name }}"),
        ("  a: {{ app.name }}\n", "{{ app.name }}"),  # unquoted: YAML too (a nested mapping)
        ("  a: '{{values.image.tag}}'\n", "{{values.image.tag}}"),
        ("  a: \"x-{{ env.STAGE | default('dev') }}\"\n", "{{ env.STAGE | default('dev') }}"),
        ("  a: \"{{ params['values-files'] }}\"\n", "{{ params['values-files'] }}"),
        (
            "  a: |\n    {% if kube.has('batch/v1') %}x{% endif %}\n",
            "{% if kube.has('batch/v1') %}",
        ),
        ('  a: "{{- app.namespace -}}"\n', "{{- app.namespace -}}"),
    ],
)
def test_jinja_written_for_tagpin_is_refused_naming_file_line_and_the_fix(
    tmp_path: Path, data: str, tag: str
) -> None:
    with pytest.raises(SourceError) as caught:
        render_dir(app_with(tmp_path, data))
    line = 5 + data.count("\n")  # the tag is on the value's last line
    assert caught.value.problems == (
        f"templates/cm.yaml:{line}: {tag} is Jinja2 for tagpin, but {HINT}",
    )


def test_every_tag_is_counted_and_the_first_named(tmp_path: Path) -> None:
    data = '  a: "{{ $labels.x }}"\n  b: "{{ app.name }}"\n  c: "{{ values.x }}"\n'
    with pytest.raises(SourceError) as caught:
        render_dir(app_with(tmp_path, data))
    assert caught.value.problems[0].startswith(
        "templates/cm.yaml:7: {{ app.name }} (and 1 more) is Jinja2 for tagpin"
    )


DATA = [
    '  alert: "{{ $labels.pod }} in {{ $labels.namespace }} is down"\n',  # Prometheus
    '  helm: "{{ .Values.image.tag }}"\n',  # a Helm template kept as data
    '  workflow: "{{inputs.parameters.app}} on {{workflow.name}}"\n',  # Argo Workflows
    '  ansible: "{{ app_name }} {{ application.name }}"\n',  # names that only start alike
    '  actions: "${{ env.FOO }} ${{ values.x }}"\n',  # GitHub Actions expressions
    '  shell: "${#array[@]}"\n',
    "  plain: curly {braces} and {{ nothing }} here\n",
]


@pytest.mark.parametrize("data", DATA)
def test_braces_that_are_data_for_another_tool_pass_silently(tmp_path: Path, data: str) -> None:
    result = render_dir(app_with(tmp_path, data))
    assert data.split(": ", 1)[1].strip().strip('"') in result.text.replace("'", "")
    assert result.warnings == []


def test_a_comment_is_not_deployed_so_jinja_there_is_fine(tmp_path: Path) -> None:
    result = render_dir(app_with(tmp_path, "  # {{ app.name }} would be nice\n  a: b\n"))
    assert "app.name" not in result.text and result.warnings == []


def test_other_jinja_statements_are_a_warning(tmp_path: Path) -> None:
    data = '  a: "{{ x }}"\n  b: "{% for i in items %}{{ i }}{% endfor %}"\n  c: "{# note #}"\n'
    result = render_dir(app_with(tmp_path, data))
    assert "{% for i in items %}" in result.text
    assert result.warnings == [
        f"templates/cm.yaml:7: {{% for i in items %}} looks like Jinja2, but {HINT}"
    ]


def test_unquoted_jinja_that_breaks_the_yaml_gets_the_hint(tmp_path: Path) -> None:
    with pytest.raises(ManifestError) as caught:
        render_dir(app_with(tmp_path, "  a: {{ release }}\n"))
    assert caught.value.problems[-1] == HINT
    assert caught.value.problems[0].startswith("templates/cm.yaml:6:")


def test_json_files_are_checked_too(tmp_path: Path) -> None:
    app = build_tree(
        tmp_path,
        {
            "tagpin.yaml": "{}\n",
            "templates/cm.json": '{"apiVersion": "v1", "kind": "ConfigMap",\n'
            ' "metadata": {"name": "{{ app.name }}"}}\n',
        },
    )
    with pytest.raises(SourceError, match=r"^templates/cm\.json:2: \{\{ app\.name \}\} is Jinja2"):
        render_dir(app)


def test_a_file_declared_literal_is_data_as_a_whole(tmp_path: Path) -> None:
    config = "templates:\n  literal: [templates/cm.yaml, templates/none/*.yaml]\n"
    data = '  a: "{{ app.name }}"\n  b: "{% if x %}y{% endif %}"\n'
    result = render_dir(app_with(tmp_path, data, config))
    assert "'{{ app.name }}'" in result.text
    assert result.warnings == [
        "tagpin.yaml: templates.literal pattern 'templates/none/*.yaml' matches no plain file "
        "under templates/"
    ]


def test_the_same_text_in_a_j2_file_is_rendered(tmp_path: Path) -> None:
    result = render_dir(app_with(tmp_path, '  a: "{{ app.name }}"\n', name="cm.yaml.j2"))
    assert "a: ''" in result.text  # app.name is empty here: rendered, not copied


@pytest.mark.parametrize(
    ("config", "problem"),
    [
        ("templates: [a]\n", "tagpin.yaml: templates must be a mapping with keys literal"),
        ("templates: {literl: []}\n", "tagpin.yaml: unknown key templates.literl (known: literal)"),
        ("templates: {literal: x}\n", "tagpin.yaml: templates.literal must be a list of file"),
        ("templates: {literal: ['']}\n", "tagpin.yaml: templates.literal must be a list of file"),
    ],
)
def test_templates_settings_are_checked(tmp_path: Path, config: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        render_dir(app_with(tmp_path, "  a: b\n", config))
    assert caught.value.problems[0].startswith(problem)


def test_tags_are_found_with_their_lines_in_invalid_yaml_too() -> None:
    text = "a: 1\n# {{ app.name }}\nb: {% if values.x %}\n"  # `{%` cannot start YAML
    [tag] = jinja_tags(text)
    assert (tag.line, tag.text, tag.for_tagpin, tag.expression) == (
        3,
        "{% if values.x %}",
        True,
        False,
    )
