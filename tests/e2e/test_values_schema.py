"""values.schema.json through the CLI: the layered values (files and the values parameter) are
checked as Helm checks a chart's; each error names the key path, the rule and the layer the
value came from (also as Argo CD shows it, through the cmp-server emulator); no schema, no
jsonschema import; a schema reaches nothing outside itself."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from cmp.errors import ExitStatus
from tests.e2e.test_contract import server, user_repo, web_app  # noqa: F401
from tests.support.cli import tagpin
from tests.support.cmpserver import CmpServer

SCHEMA = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "additionalProperties": False,
    "required": ["name", "replicas"],
    "properties": {
        "name": {"type": "string"},
        "replicas": {"type": "integer", "minimum": 1},
        "ports": {"type": "array", "items": {"$ref": "#/definitions/port"}},
    },
    "definitions": {"port": {"type": "integer", "maximum": 65535}},
}
TEMPLATE = (
    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ values.name }}\n"
    "data:\n  replicas: '{{ values.replicas }}'\n"
)
IMPORT_PROBE = (
    "import sys\nfrom cmp.cli import main\n"
    "try:\n    main(sys.argv[1:])\nexcept SystemExit as exit:\n    code = exit.code\n"
    "sys.stderr.write('\\nJSONSCHEMA=' + str('jsonschema' in sys.modules) + '\\n')\n"
    "sys.exit(code)\n"
)


def write_app(root: Path, schema: object | None = SCHEMA) -> Path:
    app = root / "app"
    (app / "templates").mkdir(parents=True)
    (app / "tagpin.yaml").write_text("valuesFiles: [values-prod.yaml]\n")
    (app / "values.yaml").write_text("name: web\nreplicas: 2\n")
    (app / "values-prod.yaml").write_text("replicas: 4\n")
    (app / "templates" / "cm.yaml.j2").write_text(TEMPLATE)
    if schema is not None:
        (app / "values.schema.json").write_text(json.dumps(schema, indent=2))
    return app


def render(app: Path, *args: str, probe: bool = False) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ARGOCD_"))}
    env.update(TAGPIN_APP_LOOKUP="off", TAGPIN_LOCK="strict")
    return tagpin("render", app, *args, env=env, probe=IMPORT_PROBE if probe else None)


def test_valid_values_render_and_jsonschema_is_imported_only_with_a_schema(tmp_path: Path) -> None:
    with_schema = render(write_app(tmp_path / "a"), probe=True)
    assert with_schema.returncode == 0, with_schema.stderr
    assert "replicas: '4'" in with_schema.stdout
    assert "JSONSCHEMA=True" in with_schema.stderr
    without = render(write_app(tmp_path / "b", schema=None), probe=True)
    assert without.returncode == 0, without.stderr
    assert without.stdout == with_schema.stdout
    assert "JSONSCHEMA=False" in without.stderr


def test_a_typo_in_a_values_file_names_the_key_rule_and_file(tmp_path: Path) -> None:
    app = write_app(tmp_path)
    (app / "values-prod.yaml").write_text("replicas: 4\nreplicaz: 5\n")
    done = render(app)
    assert done.returncode == ExitStatus.CONFIG == 3
    assert done.stdout == ""
    assert (
        "values.schema.json: values.replicaz: not allowed here (rule additionalProperties "
        "false; known keys: name, ports, replicas); the value comes from "
        "values-prod.yaml"
    ) in done.stderr


def test_a_bad_value_from_set_names_the_flag_it_came_from(tmp_path: Path) -> None:
    """At the CLI the values parameter is `--set` (under Argo CD, the cmp-server test below
    names "plugin parameter 'values'")."""
    done = render(write_app(tmp_path), "--set", "replicas=0", "--set", "ports[0]=70000")
    assert done.returncode == ExitStatus.CONFIG
    lines = done.stderr.splitlines()
    assert (
        "  values.schema.json: values.ports[0]: 70000 is greater than the maximum of "
        "65535 (rule maximum 65535); the value comes from --set"
    ) in lines
    assert (
        "  values.schema.json: values.replicas: 0 is less than the minimum of 1 "
        "(rule minimum 1); the value comes from --set"
    ) in lines


def test_a_wrong_type_names_the_last_layer_that_set_it(tmp_path: Path) -> None:
    app = write_app(tmp_path)
    (app / "values-prod.yaml").write_text("replicas: four\n")
    done = render(app)
    assert done.returncode == ExitStatus.CONFIG
    assert (
        "values.replicas: 'four' is not of type 'integer' (rule type \"integer\"); "
        "the value comes from values-prod.yaml"
    ) in done.stderr


def test_a_missing_required_key(tmp_path: Path) -> None:
    app = write_app(tmp_path)
    (app / "values.yaml").write_text("replicas: 2\n")
    done = render(app)
    assert done.returncode == ExitStatus.CONFIG
    assert "values: 'name' is a required property (rule required)" in done.stderr


def test_references_stay_inside_the_schema_and_bad_schemas_are_config_errors(
    tmp_path: Path,
) -> None:
    remote = dict(
        SCHEMA,
        properties={
            **SCHEMA["properties"],  # type: ignore[dict-item]
            "name": {"$ref": "http://127.0.0.1:9/name.json"},
        },
    )
    done = render(write_app(tmp_path / "remote", remote))
    assert done.returncode == ExitStatus.CONFIG
    assert "cannot follow $ref http://127.0.0.1:9/name.json" in done.stderr
    secret = tmp_path / "outside.json"
    secret.write_text('{"type": "integer"}')
    local = dict(SCHEMA, properties={"name": {"$ref": secret.as_uri()}})
    done = render(write_app(tmp_path / "file", local))
    assert done.returncode == ExitStatus.CONFIG
    assert "cannot follow $ref file://" in done.stderr

    invalid = render(write_app(tmp_path / "invalid", {"type": "objekt"}))
    assert invalid.returncode == ExitStatus.CONFIG
    assert "values.schema.json: not a valid JSON Schema" in invalid.stderr
    app = write_app(tmp_path / "broken")
    (app / "values.schema.json").write_text('{"type": "object",\n  oops}')
    broken = render(app)
    assert broken.returncode == ExitStatus.CONFIG
    assert "values.schema.json:2: not valid JSON" in broken.stderr


def test_argo_cd_shows_which_parameter_broke_the_schema(server: CmpServer, user_repo: Path) -> None:  # noqa: F811
    schema = {"type": "object", "properties": {"replicas": {"type": "integer", "minimum": 1}}}
    (user_repo / "apps" / "web" / "values.schema.json").write_text(json.dumps(schema))
    good = server.generate(user_repo, web_app(), exclude=[".git"])
    assert good.ok, good.error
    bad = web_app(
        plugin={
            "name": "tagpin",
            "parameters": [
                {"name": "values-files", "array": ["values-prod.yaml"]},
                {"name": "values", "map": {"replicas": "0"}},
            ],
        }
    )
    result = server.generate(user_repo, bad, exclude=[".git"])
    assert not result.ok and result.objects == [] and result.stdout == ""
    assert "`tagpin generate` failed exit status 3" in (result.error or "")
    assert (
        "apps/web/values.schema.json: values.replicas: 0 is less than the minimum of 1 "
        "(rule minimum 1); the value comes from plugin parameter 'values'"
    ) in (result.error or "")
