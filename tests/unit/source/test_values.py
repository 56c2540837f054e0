"""Values layering: values.yaml < tagpin.yaml valuesFiles < values-files < values (--set)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cmp.errors import ConfigError, SourceError
from cmp.source.values import merge, set_dotted, split_key, typed
from tests.support.apptree import bodies, build_tree, parameters

DUMP_VALUES = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: values
data:
  dump: {{ values | to_json | quote }}
"""


def rendered_values(app: Path, **params: Any) -> Any:
    import json

    [body] = bodies(app, params=parameters(**params))
    return json.loads(body["data"]["dump"])


@pytest.mark.parametrize(
    ("dotted", "path"),
    [
        ("image.tag", ["image", "tag"]),
        ("replicas", ["replicas"]),
        (
            r"metadata.annotations.prometheus\.io/scrape",
            ["metadata", "annotations", "prometheus.io/scrape"],
        ),
        (r"a\\b", ["a\\b"]),
        ("env[0].name", ["env", 0, "name"]),
        ("matrix[1][2]", ["matrix", 1, 2]),
        ("list[10]", ["list", 10]),
    ],
)
def test_split_key(dotted: str, path: list[str | int]) -> None:
    assert split_key(dotted) == path


@pytest.mark.parametrize("dotted", ["", "a..b", ".a", "a.", "[0]"])
def test_split_key_refuses_empty_segments(dotted: str) -> None:
    with pytest.raises(ValueError, match="empty key segment"):
        split_key(dotted)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("true", True),
        ("false", False),
        ("null", None),
        ("0", 0),
        ("42", 42),
        ("-7", -7),
        ("1.10", "1.10"),
        ("1e3", "1e3"),
        ("0755", "0755"),
        ("yes", "yes"),
        ("True", "True"),
        ("v2", "v2"),
        ("", ""),
        ("12:30", "12:30"),
        ("9999999999999999999", "9999999999999999999"),
    ],
)
def test_set_values_are_typed_like_helm(text: str, value: Any) -> None:
    assert typed(text) == value
    assert type(typed(text)) is type(value)


def test_merge_is_deep_for_mappings_and_lists_replace() -> None:
    base = {"image": {"repository": "r", "tag": "a"}, "ports": [80, 443], "keep": 1}
    override = {"image": {"tag": "b"}, "ports": [8080]}
    assert merge(base, override) == {
        "image": {"repository": "r", "tag": "b"},
        "ports": [8080],
        "keep": 1,
    }


def test_merge_does_not_modify_its_inputs() -> None:
    base = {"a": {"b": 1}}
    override = {"a": {"c": [1]}}
    merged = merge(base, override)
    merged["a"]["c"].append(2)
    assert base == {"a": {"b": 1}} and override == {"a": {"c": [1]}}


def test_a_scalar_replaces_a_mapping_and_back() -> None:
    assert merge({"a": {"b": 1}}, {"a": None}) == {"a": None}
    assert merge({"a": 1}, {"a": {"b": 2}}) == {"a": {"b": 2}}


def test_set_dotted_assigns_nested_keys_and_list_items() -> None:
    values: dict[str, Any] = {"env": [{"name": "A", "value": "1"}], "image": {"tag": "a"}}
    result = set_dotted(
        values,
        {
            "image.tag": "b",
            "env[0].value": "2",
            "env[1].name": "B",
            r"annotations.example\.com/team": "shop",
            "new[0]": "x",
        },
        "w",
    )
    assert result == {
        "env": [{"name": "A", "value": 2}, {"name": "B"}],
        "image": {"tag": "b"},
        "annotations": {"example.com/team": "shop"},
        "new": ["x"],
    }
    assert values["image"]["tag"] == "a"  # the input is left alone


def test_set_dotted_reports_every_bad_key() -> None:
    with pytest.raises(ConfigError) as caught:
        set_dotted(
            {"a": {}, "l": []},
            {"l.b": "1", "l[3]": "x", "a[0]": "1", "ok": "1"},
            "plugin parameter 'values'",
        )
    assert caught.value.problems == (
        "plugin parameter 'values': key 'a[0]': indexes a value that is not a list",
        "plugin parameter 'values': key 'l.b': 'b' is set below a value that is not a mapping",
        "plugin parameter 'values': key 'l[3]': index 3 skips past the end of a list of 0",
    )


def test_layers_apply_in_order(tmp_path: Path) -> None:
    app = build_tree(
        tmp_path,
        {
            "tagpin.yaml": "valuesFiles: [config-a.yaml, config-b.yaml]\n",
            "values.yaml": "order: [values]\nfrom: {values: 1, config: 0, param: 0, set: 0}\n",
            "config-a.yaml": "order: [config-a]\nfrom: {config: a}\n",
            "config-b.yaml": "from: {config: b}\n",
            "param.yaml": "order: [param]\nfrom: {param: 1}\n",
            "templates/values.yaml.j2": DUMP_VALUES,
        },
    )
    assert rendered_values(app) == {
        "order": ["config-a"],
        "from": {"values": 1, "config": "b", "param": 0, "set": 0},
    }
    assert rendered_values(app, values_files=["param.yaml"], values={"from.set": "1"}) == {
        "order": ["param"],
        "from": {"values": 1, "config": "b", "param": 1, "set": 1},
    }


def test_set_values_keep_version_strings(tmp_path: Path) -> None:
    app = build_tree(
        tmp_path,
        {
            "tagpin.yaml": "{}\n",
            "values.yaml": "image: {tag: '1.9'}\n",
            "templates/values.yaml.j2": DUMP_VALUES,
        },
    )
    assert rendered_values(app, values={"image.tag": "1.10", "debug": "true", "n": "3"}) == {
        "image": {"tag": "1.10"},
        "debug": True,
        "n": 3,
    }


def test_values_yaml_is_optional(tmp_path: Path) -> None:
    app = build_tree(tmp_path, {"tagpin.yaml": "{}\n", "templates/values.yaml.j2": DUMP_VALUES})
    assert rendered_values(app) == {}


@pytest.mark.parametrize(
    ("files", "params", "message"),
    [
        (
            {"tagpin.yaml": "valuesFiles: [missing.yaml]\n"},
            {},
            "app/missing.yaml: values file not found",
        ),
        (
            {"tagpin.yaml": "{}\n"},
            {"values_files": ["missing.yaml"]},
            "app/missing.yaml: values file not found",
        ),
        (
            {"tagpin.yaml": "{}\n", "values.yaml": "- a list\n"},
            {},
            "app/values.yaml: a values file must hold a mapping, found a list",
        ),
        (
            {"tagpin.yaml": "{}\n", "values.yaml": "a: 1\nb: [\n"},
            {},
            "app/values.yaml:3:1: invalid YAML",
        ),
        (
            {"tagpin.yaml": "{}\n", "values.yaml": "a: 1\na: 2\n"},
            {},
            "app/values.yaml:2:1: invalid YAML: duplicate key 'a'",
        ),
    ],
)
def test_bad_values_files_are_named(
    tmp_path: Path, files: dict[str, str], params: dict[str, Any], message: str
) -> None:
    app = build_tree(tmp_path / "app", {**files, "templates/values.yaml.j2": DUMP_VALUES})
    with pytest.raises((ConfigError, SourceError)) as caught:
        bodies(app, tmp_path, params=parameters(**params))
    assert any(problem.startswith(message) for problem in caught.value.problems), (
        caught.value.problems
    )


def test_every_bad_values_file_is_reported_in_one_run(tmp_path: Path) -> None:
    app = build_tree(
        tmp_path / "app",
        {
            "tagpin.yaml": "valuesFiles: [a.yaml]\n",
            "values.yaml": "x: [\n",
            "templates/values.yaml.j2": DUMP_VALUES,
        },
    )
    with pytest.raises(SourceError) as caught:
        bodies(app, tmp_path, params=parameters(values_files=["b.yaml"]))
    shown = [problem.split(":")[0] for problem in caught.value.problems]
    assert shown == ["app/values.yaml", "app/a.yaml", "app/b.yaml"]


def test_set_replaces_a_scalar_with_a_mapping_like_a_values_layer() -> None:
    assert set_dotted({"image": "v1"}, {"image.tag": "v2"}, "w") == {"image": {"tag": "v2"}}


def test_bad_set_key_is_a_config_error(tmp_path: Path) -> None:
    app = build_tree(
        tmp_path,
        {
            "tagpin.yaml": "{}\n",
            "values.yaml": "ports: [80]\n",
            "templates/values.yaml.j2": DUMP_VALUES,
        },
    )
    with pytest.raises(ConfigError, match=r"plugin parameter 'values': key 'ports\.http'"):
        bodies(app, params=parameters(values={"ports.http": "8080"}))
