"""`tagpin render --output json`: one JSON list holding exactly the objects the YAML holds."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import yaml

from tests.support.cli import tagpin

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "web"


def render(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ARGOCD_"))}
    env.update(TAGPIN_LOCK="strict", TAGPIN_APP_LOOKUP="off")
    return tagpin("render", EXAMPLE, "--app-name", "web", "-n", "shop", *args, env=env)


def test_json_output_is_one_list_of_the_rendered_objects() -> None:
    as_yaml = render()
    as_json = render("--output", "json")
    assert as_yaml.returncode == as_json.returncode == 0, as_json.stderr
    objects = json.loads(as_json.stdout)
    assert isinstance(objects, list) and len(objects) >= 3
    assert objects == list(yaml.safe_load_all(as_yaml.stdout))  # an independent reader
    assert any("@sha256:" in json.dumps(o) for o in objects)  # pinned, as the YAML is
    assert render("-o", "json").stdout == as_json.stdout  # deterministic


def test_a_failed_json_render_prints_nothing() -> None:
    done = render("--output", "json", "--set", "image.tag=not-in-the-lock")
    assert done.returncode != 0
    assert done.stdout == ""
