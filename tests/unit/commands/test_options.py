"""What the render flags become (cmp/commands/options.py): one immutable request, so no command
changes its services or options after building them."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from cmp.commands.options import app_request, formatted, stream_request
from cmp.commands.pin import pin_command
from cmp.commands.render import render_command
from cmp.pipeline import RenderResult
from cmp.settings import CacheMode
from cmp.source.manifests import Manifest


def render_flags(*args: str) -> dict[str, Any]:
    params: dict[str, Any] = render_command.make_context("render", list(args)).params
    return params


def test_digests_is_made_absolute_before_anything_changes_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "tagpin.yaml").write_text("{}\n")
    monkeypatch.chdir(tmp_path)
    options = render_flags(".", "--digests", "digests.lock")
    request = app_request(Path("."), options, settings_env={})
    assert request.digests == tmp_path / "digests.lock"
    assert request.stream is None


@pytest.mark.parametrize(
    ("cache", "refresh", "expected"),
    [
        ("", False, CacheMode.ON),
        ("", True, CacheMode.REFRESH),
        ("off", True, CacheMode.OFF),  # no cache: nothing to refresh
    ],
)
def test_refresh_is_a_setting_of_the_request(
    tmp_path: Path, cache: str, refresh: bool, expected: CacheMode
) -> None:
    (tmp_path / "tagpin.yaml").write_text("{}\n")
    options = render_flags(str(tmp_path), *(["--refresh"] if refresh else []))
    request = app_request(tmp_path, options, settings_env={"TAGPIN_CACHE": cache})
    assert request.settings.cache is expected


def test_pin_builds_the_same_request_from_its_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAGPIN_CACHE", "on")
    params = (
        pin_command()
        .make_context(
            "pin",
            [
                "--refresh",
                "--digests",
                "d.lock",
                "-n",
                "shop",
                "--image-updater",
                "web.allow-tags=x",
            ],
        )
        .params
    )
    request = stream_request(
        app_name=params["app_name"],
        namespace=params["namespace"],
        updater={"web.allow-tags": "x"},
        options=params,
    )
    assert request.settings.cache is CacheMode.REFRESH
    assert request.digests == Path(os.path.abspath("d.lock"))
    assert request.app.namespace == "shop"
    assert request.parameters["image-updater"] == {"web.allow-tags": "x"}
    assert request.words.image_updater == "--image-updater"


def test_output_json_prints_the_objects_the_yaml_holds() -> None:
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}
    result = RenderResult("kind: ConfigMap\n", [Manifest(body, "cm.yaml")], [], [])
    assert formatted(result, {"output_format": "yaml"}) == "kind: ConfigMap\n"
    assert formatted(result, {"output_format": "json"}).startswith('[\n  {\n    "apiVersion"')
