"""Snapshot tests for the web app: render it offline from its tagpin.lock (no AWS credentials,
no ECR call) and compare with a reviewed snapshot in __snapshots__/.

    pytest examples/snapshot-test                     # fails when the render changed
    pytest examples/snapshot-test --snapshot-update   # accept the change; review it like code

Copy this file next to your own app and point APP at it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from syrupy.extensions.single_file import SingleFileSnapshotExtension, WriteMode

from cmp.testing import render_app

APP = Path(__file__).resolve().parent.parent / "web"


class YamlSnapshot(SingleFileSnapshotExtension):
    """One plain .yaml file per snapshot, so a pull request shows a readable diff."""

    _write_mode = WriteMode.TEXT
    file_extension = "yaml"


@pytest.fixture
def yaml_snapshot(snapshot: Any) -> Any:
    return snapshot.use_extension(YamlSnapshot)


@pytest.mark.parametrize(
    ("namespace", "values_files", "values"),
    [
        pytest.param("shop-dev", (), {}, id="dev"),
        pytest.param("shop", ("values-prod.yaml",), {"replicas": "8"}, id="prod"),
    ],
)
def test_web_renders_as_reviewed(
    namespace: str, values_files: tuple[str, ...], values: dict[str, str], yaml_snapshot: Any
) -> None:
    rendered = render_app(
        APP,
        app_name="web",
        namespace=namespace,
        values_files=values_files,
        values=values,
        env={"LOG_LEVEL": "info"},
    )
    assert rendered == yaml_snapshot
