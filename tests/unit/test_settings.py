"""The parameter and settings tables (cmp/settings.py): the defaults Argo CD never sends,
parameter parsing, and TAGPIN_* values."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cmp.errors import ConfigError
from cmp.settings import (
    PARAMETERS,
    SETTINGS,
    SETTINGS_BY_ENV,
    CacheMode,
    Choice,
    Number,
    Settings,
    parse_parameters,
    plugin_config,
    unknown_settings,
)

DEFAULTS: dict[str, Any] = {"values-files": [], "values": {}, "image-updater": {}}


@pytest.mark.parametrize("raw", [None, "", "null", "[]", " null "])
def test_no_parameters_means_the_announced_defaults(raw: str | None) -> None:
    assert parse_parameters(raw) == DEFAULTS


def test_parameters_override_only_what_they_set() -> None:
    raw = json.dumps(
        [
            {"name": "values-files", "array": ["a.yaml", "b.yaml"]},
            {"name": "image-updater", "map": {"web.allow-tags": "regexp:^pr-1-"}},
        ]
    )
    assert parse_parameters(raw) == {
        "values-files": ["a.yaml", "b.yaml"],
        "values": {},
        "image-updater": {"web.allow-tags": "regexp:^pr-1-"},
    }


def test_defaults_are_fresh_copies() -> None:
    first = parse_parameters(None)
    first["values"]["x"] = "1"
    assert parse_parameters(None)["values"] == {}


def test_every_bad_parameter_is_reported_at_once() -> None:
    raw = json.dumps(
        [
            {"name": "valuesFiles", "array": []},
            {"name": "values", "string": "image.tag=v2"},
            {"name": "values-files", "array": ["a", 1]},
            {"array": ["nameless"]},
        ]
    )
    with pytest.raises(ConfigError) as caught:
        parse_parameters(raw)
    assert caught.value.problems == (
        "unknown plugin parameter 'valuesFiles' (tagpin knows: values-files, values, "
        "image-updater)",
        "plugin parameter 'values': must be given as map, not string",
        "plugin parameter 'values-files': must be an array of strings",
        'plugin parameter {"array": ["nameless"]} has no name',
    )


@pytest.mark.parametrize(
    "raw, message",
    [
        ("{not json", "ARGOCD_APP_PARAMETERS is not valid JSON"),
        ('{"name": "values"}', "must be a JSON list"),
    ],
)
def test_malformed_parameter_json_is_a_config_error(raw: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_parameters(raw)


def test_announcements_carry_the_same_defaults_the_code_applies() -> None:
    static = plugin_config()["spec"]["parameters"]["static"]
    for announced, parameter in zip(static, PARAMETERS, strict=True):
        kind = parameter.collection_type
        assert announced["collectionType"] == kind
        assert announced[kind] == DEFAULTS[parameter.name]


def test_discovery_claims_only_directories_holding_tagpin_yaml() -> None:
    assert plugin_config()["spec"]["discover"] == {"fileName": "tagpin.yaml"}
    assert "version" not in plugin_config()["spec"]  # socket tagpin.sock, plugin name "tagpin"


def test_empty_setting_means_the_default_because_argo_cd_passes_empty_values() -> None:
    settings = Settings.from_environ({"TAGPIN_CACHE_TTL": "", "TAGPIN_CACHE": ""})
    assert (settings.cache_ttl, settings.cache) == (300, CacheMode.ON)


@pytest.mark.parametrize(
    "environ, message",
    [
        ({"TAGPIN_CACHE_TTL": "5m"}, "TAGPIN_CACHE_TTL='5m' is not a whole number"),
        ({"TAGPIN_CACHE_TTL": "-1"}, "TAGPIN_CACHE_TTL=-1 must be at least 0"),
    ],
)
def test_bad_numbers_are_config_errors(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_environ(environ)


def test_bad_choices_are_config_errors_naming_every_choice() -> None:
    with pytest.raises(
        ConfigError, match="TAGPIN_CACHE='sometimes' must be one of on, off, refresh"
    ):
        Settings.from_environ({"TAGPIN_CACHE": "sometimes"})


def test_settings_are_typed_with_the_tables_defaults() -> None:
    settings = Settings.from_environ({"TAGPIN_CACHE": "Refresh", "TAGPIN_ECR_DEADLINE": "7"})
    assert settings.cache is CacheMode.REFRESH  # choices are case-insensitive enums
    assert settings.ecr_deadline == 7
    assert settings.cache_ttl == int(SETTINGS_BY_ENV["TAGPIN_CACHE_TTL"].default)
    with pytest.raises(AttributeError):
        settings.cache = CacheMode.OFF  # type: ignore[misc]  # frozen: built once, passed down


def test_each_field_is_one_row_of_the_table_and_each_choice_an_enum() -> None:
    """The typed object and the table are one declaration: a field per row, named after its
    variable, a choice row's type its enum, whose values are the documented choices."""
    assert [row.env for row in SETTINGS] == [f"TAGPIN_{f.upper()}" for f in Settings._fields]
    for row in SETTINGS:
        if isinstance(row, Choice):
            assert row.default in row.choices
            assert isinstance(getattr(Settings.from_environ({}), row.field), row.kind)


def test_secrets_never_show_in_the_settings_repr() -> None:
    settings = Settings.from_environ(
        {
            "TAGPIN_REDIS_PASSWORD": "hunter2-password",
            "TAGPIN_REDIS_SIGNING_KEY": "k" * 32,
            "TAGPIN_WEBHOOK_SECRET": "webhook-secret-0123456789",
        }
    )
    shown = repr(settings)
    assert "hunter2" not in shown and "kkkk" not in shown and "webhook-secret" not in shown
    assert "redis_password='***'" in shown


def test_every_bad_setting_is_reported_at_once_from_the_tables_choices_and_minimums() -> None:
    environ = {
        "TAGPIN_CACHE": "sometimes",
        "TAGPIN_ECR_CONCURRENCY": "0",
        "TAGPIN_TAG_LIST_TTL": "soon",
    }
    with pytest.raises(ConfigError) as caught:
        Settings.from_environ(environ)
    assert list(caught.value.problems) == [
        "TAGPIN_CACHE='sometimes' must be one of on, off, refresh",
        "TAGPIN_TAG_LIST_TTL='soon' is not a whole number",
        "TAGPIN_ECR_CONCURRENCY=0 must be at least 1",
    ]


def test_every_setting_is_documented_in_the_reference() -> None:
    from pathlib import Path

    docs = Path(__file__).resolve().parents[2] / "docs" / "reference.md"
    reference = docs.read_text(encoding="utf-8")
    missing = [s.env for s in SETTINGS if f"| `{s.env}` |" not in reference]
    assert missing == []


def test_settings_are_read_by_name_only_in_the_settings_module() -> None:
    """Every TAGPIN_* value reaches the code as a typed `Settings` field, built once at the
    edge: no module but cmp/settings.py names a setting as a bare string (a lookup) or reads
    one by its variable."""
    import ast
    import re
    from pathlib import Path

    package = Path(__file__).resolve().parents[2] / "cmp"
    bare_name = re.compile(r"TAGPIN_[A-Z0-9_]+")
    # The served client reads its few variables itself, to import nothing: held to the table
    # by tests/unit/server/test_client.py.
    exempt = {package / "settings.py", package / "server" / "client.py"}
    found = []
    for path in sorted(package.rglob("*.py")):
        if path in exempt:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            shown = f"{path.relative_to(package.parent)}:{getattr(node, 'lineno', '?')}"
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                if bare_name.fullmatch(node.value):
                    found.append(f"{shown}: {node.value!r}")
            elif isinstance(node, ast.Name | ast.alias):
                name = node.id if isinstance(node, ast.Name) else node.name
                if name == "SETTINGS_BY_ENV":
                    found.append(f"{shown}: {name}")
    assert found == []


@pytest.mark.parametrize(
    "name, closest",
    [
        ("TAGPIN_CAHCE", "did you mean TAGPIN_CACHE?"),
        ("TAGPIN_CACHE_DIRECTORY", "did you mean TAGPIN_CACHE_DIR?"),
        ("TAGPIN_REDIS", "did you mean TAGPIN_REDIS_URL?"),
        ("tagpin_lock", "did you mean TAGPIN_LOCK?"),
        ("TAGPIN_VERSION", "docs/reference.md lists the settings"),
    ],
)
def test_an_unknown_tagpin_variable_is_named_with_the_closest_setting(
    name: str, closest: str
) -> None:
    assert unknown_settings({name: "x", "PATH": "/usr/bin"}) == [
        f"{name} is not a tagpin setting and is ignored; {closest}"
    ]


def test_every_setting_and_every_other_variable_pass_without_a_word() -> None:
    environ = {setting.env: "" for setting in SETTINGS}
    environ.update(ARGOCD_APP_NAME="web", AWS_REGION="eu-west-1", XTAGPIN_CACHE="x", PATH="/")
    assert unknown_settings(environ) == []


NUMERIC = [s for s in SETTINGS if isinstance(s, Number)]
ABSURD = [
    "99999999999999999999999999",  # past any maximum, and past what setrlimit takes
    "9" * 5000,  # int() of it alone takes a while, and Python refuses to print it
    "-1",
    "nan",
    "inf",
    "1e400",
    "0x10",
    "+5",
    "1_000",
    "١٢",  # Arabic-Indic digits, which int() and float() take
    "5m",
]


@pytest.mark.parametrize("raw", ABSURD)
@pytest.mark.parametrize("setting", NUMERIC, ids=lambda s: s.env)
def test_an_absurd_number_in_any_numeric_setting_is_a_config_error_naming_it(
    setting: Number, raw: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_environ({setting.env: raw})
    assert str(caught.value).startswith(f"{setting.env}=")


@pytest.mark.parametrize("setting", NUMERIC, ids=lambda s: s.env)
def test_every_numeric_setting_has_a_range_holding_its_default(setting: Number) -> None:
    assert setting.minimum >= 0
    if setting.default != "auto":  # TAGPIN_MAX_MEMORY_MB
        assert setting.minimum <= setting.number(setting.default)
    assert setting.number(_number(setting.maximum)) == setting.maximum
    with pytest.raises(ConfigError, match=f"must be at most {_number(setting.maximum)}"):
        setting.number(_number(setting.maximum + 1))


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def test_settings_read_every_absurd_value_at_once() -> None:
    environ = {"TAGPIN_MAX_MEMORY_MB": "1" + "0" * 30, "TAGPIN_MAX_CPU_SECONDS": "1e400"}
    with pytest.raises(ConfigError) as caught:
        Settings.from_environ(environ)
    assert list(caught.value.problems) == [
        "TAGPIN_MAX_CPU_SECONDS='1e400' is not a whole number",
        "TAGPIN_MAX_MEMORY_MB=1000000000000000000000000000000 must be at most 16777216",
    ]
