"""Templates: the context they see, the filters they get, the files they may include, and the
errors they raise, each naming the template file and line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cmp.errors import ConfigError, ManifestError, SourceError, TemplateError
from cmp.request import AppInfo, KubeInfo, plugin_env
from tests.support.apptree import (
    bodies,
    build_tree,
    cm,
    manifests_of,
    parameters,
    render_dir,
    render_text,
)


def value_of(
    tmp_path: Path, expression: str, *, files: dict[str, str] | None = None, **request: Any
) -> str:
    """Render `{{ expression }}` into a ConfigMap value and return what it became."""
    template = cm("probe", value="{{ (" + expression + ") | string | quote }}")
    app = build_tree(
        tmp_path, {"tagpin.yaml": "{}\n", "templates/probe.yaml.j2": template, **(files or {})}
    )
    [body] = bodies(app, **request)
    return str(body["data"]["value"])


def render_error(tmp_path: Path, files: dict[str, str], **request: Any) -> tuple[str, ...]:
    app = build_tree(tmp_path, {"tagpin.yaml": "{}\n", **files})
    with pytest.raises(TemplateError) as caught:
        manifests_of(app, **request)
    return caught.value.problems


# --- the context ---------------------------------------------------------------------------

ARGO_APP = AppInfo(
    instance="argocd_web-prod",
    namespace="shop",
    project="retail",
    revision="0123456789abcdef0123456789abcdef01234567",
    repo_url="https://git.example.com/shop/deploy.git",
    source_path="apps/web",
    target_revision="main",
)


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("app.name", "web-prod"),
        ("app.instance", "argocd_web-prod"),
        ("app.app_namespace", "argocd"),
        ("app.namespace", "shop"),
        ("app.project", "retail"),
        ("app.revision", "0123456789abcdef0123456789abcdef01234567"),
        ("app.revision_short", "0123456"),
        ("app.source.repo_url", "https://git.example.com/shop/deploy.git"),
        ("app.source.path", "apps/web"),
        ("app.source.target_revision", "main"),
    ],
)
def test_app_context(tmp_path: Path, expression: str, expected: str) -> None:
    assert value_of(tmp_path, expression, app=ARGO_APP) == expected


def test_app_name_without_a_namespace_prefix(tmp_path: Path) -> None:
    app = AppInfo(instance="web")
    assert (
        value_of(tmp_path, "[app.name, app.instance, app.app_namespace] | join(',')", app=app)
        == "web,web,"
    )


def test_env_holds_only_argocd_env_variables_without_the_prefix(tmp_path: Path) -> None:
    environ = {
        "ARGOCD_ENV_LOG_LEVEL": "debug",
        "ARGOCD_ENV_": "empty name",
        "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "ARGOCD_APP_NAME": "web",
        "PATH": "/usr/bin",
        "LOG_LEVEL": "info",
    }
    assert value_of(tmp_path, "env | to_json", env=plugin_env(environ)) == '{"LOG_LEVEL":"debug"}'


@pytest.mark.parametrize(
    "expression",
    [
        "env.AWS_SECRET_ACCESS_KEY",
        "AWS_SECRET_ACCESS_KEY",
        "environ.AWS_SECRET_ACCESS_KEY",
        "params.AWS_SECRET_ACCESS_KEY",
        "values.AWS_SECRET_ACCESS_KEY",
    ],
)
def test_process_environment_is_unreachable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, expression: str
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
    import os

    with pytest.raises(TemplateError) as caught:
        value_of(tmp_path, expression, env=plugin_env(os.environ))
    assert "is not defined" in str(caught.value) or "is undefined" in str(caught.value)
    assert "wJalrXUtnFEMI" not in str(caught.value)


def test_params_hold_the_plugin_parameters_with_defaults(tmp_path: Path) -> None:
    rendered = value_of(tmp_path, "params | to_json", params=parameters(values={"image.tag": "v2"}))
    assert json.loads(rendered) == {
        "image-updater": {},
        "values": {"image.tag": "v2"},
        "values-files": [],
    }


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("kube.version", "1.31.2"),
        ("kube.major ~ '/' ~ kube.minor", "1/31"),
        ("kube.api_versions | join(',')", "apps/v1,batch/v1,batch/v1/CronJob"),
        ("kube.has('batch/v1/CronJob')", "True"),
        ("kube.has('batch/v1')", "True"),
        ("kube.has('batch/v1beta1/CronJob')", "False"),
    ],
)
def test_kube_capabilities(tmp_path: Path, expression: str, expected: str) -> None:
    kube = KubeInfo(version="1.31.2", api_versions=("apps/v1", "batch/v1", "batch/v1/CronJob"))
    assert value_of(tmp_path, expression, kube=kube) == expected


def test_values_items_is_the_key_not_the_dict_method(tmp_path: Path) -> None:
    files = {"values.yaml": "items: [a, b]\nkeys: k\nget: g\n"}
    assert (
        value_of(tmp_path, "values.items | join(',') ~ values.keys ~ values.get", files=files)
        == "a,bkg"
    )


# --- filters -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("{'b': 1, 'a': 'yes'} | to_yaml", "a: 'yes'\nb: 1"),
        ("{'b': 1, 'a': [1, 'x']} | to_json", '{"a":[1,"x"],"b":1}'),
        ("'é' | to_json", '"é"'),
        ("'a: [1, 2]\\nb: 12:30' | from_yaml | to_json", '{"a":[1,2],"b":"12:30"}'),
        ("'{\"a\": 1}' | from_json | to_json", '{"a":1}'),
        ("'hello' | b64encode", "aGVsbG8="),
        ("'aGVsbG8=' | b64decode", "hello"),
        ("'hello' | sha256", "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"),
        ("'say \"hi\"' | quote", '"say \\"hi\\""'),
        ("'a\\nb' | nindent(4)", "\n    a\n    b"),
        ("'a\\n\\nb' | nindent", "\n  a\n\n  b"),
        ("'set' | required('never shown')", "set"),
    ],
)
def test_filters(tmp_path: Path, expression: str, expected: str) -> None:
    assert value_of(tmp_path, expression) == expected


def test_to_yaml_with_nindent_builds_a_block(tmp_path: Path) -> None:
    template = (
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n  labels:"
        "{{ values.labels | to_yaml | nindent(4) }}\n"
    )
    app = build_tree(
        tmp_path,
        {
            "tagpin.yaml": "{}\n",
            "values.yaml": "labels: {b: 'on', a: x}\n",
            "templates/c.yaml.j2": template,
        },
    )
    assert bodies(app)[0]["metadata"]["labels"] == {"a": "x", "b": "on"}


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        (
            "values.image.tag | required('set image.tag for this environment')",
            "set image.tag for this environment",
        ),
        ("'' | required('empty is missing too')", "empty is missing too"),
        ("values.image.tag | required", "a required value is missing"),
        ("fail('this app needs values.team')", "this app needs values.team"),
    ],
)
def test_required_and_fail_stop_the_render_with_the_authors_message(
    tmp_path: Path, expression: str, message: str
) -> None:
    problems = render_error(
        tmp_path,
        {
            "values.yaml": "image: {repository: r}\n",
            "templates/c.yaml.j2": cm("c") + "  v: {{ " + expression + " }}\n",
        },
    )
    assert problems == (f"templates/c.yaml.j2:5: {message}",)


def test_bad_b64decode_input_names_the_line(tmp_path: Path) -> None:
    problems = render_error(tmp_path, {"templates/c.yaml.j2": "{{ 'not base64!' | b64decode }}"})
    assert problems[0].startswith("templates/c.yaml.j2:1: ")


def test_from_yaml_refuses_duplicate_keys(tmp_path: Path) -> None:
    problems = render_error(tmp_path, {"templates/c.yaml.j2": "\n{{ 'a: 1\\na: 2' | from_yaml }}"})
    assert problems[0].startswith("templates/c.yaml.j2:2: ")
    assert "duplicate key 'a'" in problems[0]


# --- template files ------------------------------------------------------------------------


def test_include_and_import_relative_to_the_app_and_the_repository(tmp_path: Path) -> None:
    repo = build_tree(
        tmp_path,
        {
            "lib/labels.j2": "{% macro labels(name) %}app: {{ name }}{% endmacro %}",
            "apps/web/tagpin.yaml": "{}\n",
            "apps/web/values.yaml": "name: web\n",
            "apps/web/snippets/data.j2": "data:\n  from-app: {{ values.name }}\n",
            "apps/web/templates/_meta.j2": "  name: {{ values.name }}\n",
            "apps/web/templates/c.yaml.j2": (
                "{% import 'lib/labels.j2' as lib %}\n"
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n"
                "{% include 'templates/_meta.j2' %}\n"
                "  labels: { {{ lib.labels(values.name) }} }\n"
                "{% include 'snippets/data.j2' %}\n"
            ),
        },
    )
    [body] = bodies(repo / "apps/web", repo)
    assert body["metadata"] == {"name": "web", "labels": {"app": "web"}}
    assert body["data"] == {"from-app": "web"}


def test_app_directory_wins_over_the_repository_root(tmp_path: Path) -> None:
    repo = build_tree(
        tmp_path,
        {
            "common.j2": "repo",
            "apps/web/common.j2": "app",
            "apps/web/tagpin.yaml": "{}\n",
            "apps/web/templates/c.yaml.j2": cm("c", v="{% include 'common.j2' %}"),
        },
    )
    assert bodies(repo / "apps/web", repo)[0]["data"] == {"v": "app"}


def test_partials_plain_files_and_others(tmp_path: Path) -> None:
    app = build_tree(
        tmp_path,
        {
            "tagpin.yaml": "{}\n",
            "templates/_helpers.j2": cm("partial"),
            "templates/_ignored.yaml": cm("underscore-yaml"),
            "templates/.hidden.yaml": cm("hidden"),
            "templates/README.md": "# not a manifest",
            "templates/notes.txt": "nope",
            "templates/a.yaml": cm("yaml", v='"{{ copied as is }}"'),
            "templates/b.yml": cm("yml"),
            "templates/c.json": '{"apiVersion": "v1", "kind": "ConfigMap", '
            '"metadata": {"name": "json"}}',
            "templates/d.yaml.j2": cm("{{ 'jinja' }}"),
            "templates/e.json.j2": '{"apiVersion": "v1", "kind": "ConfigMap", '
            '"metadata": {"name": "{{ \'json-jinja\' }}"}}',
        },
    )
    manifests = manifests_of(app)
    assert [(m.source, m.name) for m in manifests] == [
        ("templates/a.yaml", "yaml"),
        ("templates/b.yml", "yml"),
        ("templates/c.json", "json"),
        ("templates/d.yaml.j2", "jinja"),
        ("templates/e.json.j2", "json-jinja"),
    ]
    assert manifests[0].body["data"] == {"v": "{{ copied as is }}"}


def test_templates_are_rendered_in_sorted_recursive_path_order(tmp_path: Path) -> None:
    names = [
        "templates/b.yaml",
        "templates/a/z.yaml",
        "templates/B.yaml",
        "templates/a.yaml",
        "templates/a-b.yaml",
        "templates/a/b/c.yaml",
        "templates/é.yaml",
        "templates/_/x.yaml",
    ]
    files = {name: cm(f"cm{i}") for i, name in enumerate(names)}
    app = build_tree(tmp_path, {"tagpin.yaml": "{}\n", **files})
    # Code point order of the app-relative path: "-" < "." < "/" < "B" < "_" < "a" < "é".
    assert [m.source for m in manifests_of(app)] == [
        "templates/B.yaml",
        "templates/_/x.yaml",
        "templates/a-b.yaml",
        "templates/a.yaml",
        "templates/a/b/c.yaml",
        "templates/a/z.yaml",
        "templates/b.yaml",
        "templates/é.yaml",
    ]


def test_a_template_may_render_several_documents_or_none(tmp_path: Path) -> None:
    app = build_tree(
        tmp_path,
        {
            "tagpin.yaml": "{}\n",
            "templates/many.yaml.j2": "{% for n in ['a', 'b'] %}---\n"
            + cm("{{ n }}")
            + "{% endfor %}",
            "templates/none.yaml.j2": "{% if false %}\n" + cm("never") + "{% endif %}\n",
            "templates/list.yaml": "apiVersion: v1\nkind: List\nitems:\n- "
            + cm("in-list").replace("\n", "\n  ").rstrip()
            + "\n",
        },
    )
    assert [(m.name, m.source, m.line) for m in manifests_of(app)] == [
        ("in-list", "templates/list.yaml", 1),
        ("a", "templates/many.yaml.j2", 2),
        ("b", "templates/many.yaml.j2", 7),
    ]


# --- template errors -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("files", "problem"),
    [
        (
            {"templates/c.yaml.j2": "a: 1\n{% if values.x %}\nb: 2\n"},
            "templates/c.yaml.j2:3: template syntax error: Unexpected end of template",
        ),
        (
            {"templates/c.yaml.j2": "a: 1\nb: {{ values.x }\n"},
            "templates/c.yaml.j2:2: template syntax error: unexpected '}'",
        ),
        (
            {
                "templates/c.yaml.j2": "a: 1\n\nb: {{ values.image.tag }}\n",
                "values.yaml": "image: {repository: r}\n",
            },
            "templates/c.yaml.j2:3: values.image.tag is not defined",
        ),
        (
            {"templates/c.yaml.j2": "a: {{ values.image.tag }}\n"},
            "templates/c.yaml.j2:1: values.image is not defined",
        ),
        (
            {
                "templates/c.yaml.j2": "a: {{ values.list[0].name }}\n",
                "values.yaml": "list: [{}]\n",
            },
            "templates/c.yaml.j2:1: values.list[0].name is not defined",
        ),
        (
            {"templates/c.yaml.j2": "a: {{ env.LOG_LEVEL }}\n"},
            "templates/c.yaml.j2:1: env.LOG_LEVEL is not defined",
        ),
        (
            {"templates/c.yaml.j2": "a: {{ valeus.x }}\n"},
            "templates/c.yaml.j2:1: 'valeus' is undefined",
        ),
        (
            {
                "templates/c.yaml.j2": "\n{% include 'templates/_p.j2' %}",
                "templates/_p.j2": "x\n{{ q }}",
            },
            "templates/_p.j2:2 (included from templates/c.yaml.j2:2): 'q' is undefined",
        ),
        (
            {
                "templates/c.yaml.j2": "\n{% include 'templates/_p.j2' %}",
                "templates/_p.j2": "x\n{% if %}",
            },
            "templates/_p.j2:2: template syntax error",
        ),
        (
            {"templates/c.yaml.j2": "\n\n{% include 'missing.j2' %}"},
            "templates/c.yaml.j2:3: template 'missing.j2' not found",
        ),
        ({"templates/c.yaml.j2": "{{ 1 // 0 }}"}, "templates/c.yaml.j2:1: ZeroDivisionError"),
        (
            {"templates/c.yaml.j2": "{% include 'templates/c.yaml.j2' %}"},
            "templates/c.yaml.j2:1: templates include each other endlessly",
        ),
    ],
)
def test_template_errors_name_file_and_line(
    tmp_path: Path, files: dict[str, str], problem: str
) -> None:
    problems = render_error(tmp_path, files)
    assert len(problems) == 1
    assert problems[0].startswith(problem), problems


def test_every_failing_template_is_reported(tmp_path: Path) -> None:
    problems = render_error(
        tmp_path,
        {
            "templates/a.yaml.j2": "{{ values.a }}",
            "templates/b.yaml": cm("fine"),
            "templates/c.yaml.j2": "\n{% if %}",
        },
    )
    assert [p.split(": ")[0] for p in problems] == [
        "templates/a.yaml.j2:1",
        "templates/c.yaml.j2:2",
    ]


def test_template_errors_name_the_repository_relative_path(tmp_path: Path) -> None:
    repo = build_tree(
        tmp_path,
        {"apps/web/tagpin.yaml": "{}\n", "apps/web/templates/c.yaml.j2": "\n{{ values.x }}"},
    )
    with pytest.raises(TemplateError) as caught:
        manifests_of(repo / "apps/web", repo)
    assert caught.value.problems == ("apps/web/templates/c.yaml.j2:2: values.x is not defined",)
    assert str(tmp_path) not in str(caught.value)


# --- manifest errors after rendering -------------------------------------------------------


def test_invalid_yaml_in_rendered_output_names_file_and_line(tmp_path: Path) -> None:
    app = build_tree(
        tmp_path,
        {"tagpin.yaml": "{}\n", "templates/c.yaml.j2": cm("c") + "data:\n  v: {{ '[1, 2' }}\n"},
    )
    with pytest.raises(ManifestError, match=r"^templates/c\.yaml\.j2:7:\d+: invalid YAML"):
        manifests_of(app)


def test_config_errors_before_rendering(tmp_path: Path) -> None:
    app = build_tree(
        tmp_path,
        {"tagpin.yaml": "valuesFile: [x.yaml]\nimages: {path: []}\n", "templates/c.yaml": cm("c")},
    )
    with pytest.raises(ConfigError) as caught:
        manifests_of(app)
    assert caught.value.problems == (
        "tagpin.yaml: unknown key 'valuesFile' "
        "(known keys: images, kustomize, templates, valuesFiles)",
        "tagpin.yaml: unknown key images.path (known: paths, requireDigests, allowUnpinned)",
    )


def test_missing_templates_directory(tmp_path: Path) -> None:
    app = build_tree(tmp_path, {"tagpin.yaml": "{}\n"})
    with pytest.raises(SourceError, match=r"^templates/: missing"):
        manifests_of(app)


def test_rendered_text_is_canonical(tmp_path: Path) -> None:
    app = build_tree(
        tmp_path,
        {
            "tagpin.yaml": "{}\n",
            "values.yaml": "flag: 'yes'\n",
            "templates/c.yaml.j2": cm("c", flag="{{ values.flag | quote }}"),
        },
    )
    assert render_text(app) == (
        "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  flag: 'yes'\n"
    )


def test_rendered_images_are_pinned_through_the_registry(tmp_path: Path) -> None:
    from cmp.images.reference import parse_image
    from cmp.registry.names import ecr_repository

    image = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/shop/web"
    digest = "sha256:" + "ab" * 32
    repository = ecr_repository(parse_image(f"{image}:v1"))
    assert repository is not None
    app = build_tree(
        tmp_path,
        {
            "tagpin.yaml": "{}\n",
            "values.yaml": f"image: {image}\ntag: v1\n",
            "templates/pod.yaml.j2": (
                "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec:\n"
                "  containers:\n  - {name: web, image: "
                "'{{ values.image }}:{{ values.tag }}'}\n"
            ),
        },
    )
    text = render_dir(app, registry={repository: {"v1": digest}}).text
    assert f"image: {image}:v1@{digest}\n" in text
