"""The bundled example apps, rendered offline from their tagpin.lock and compared to reviewed
snapshots (tests/__snapshots__/). `pytest --snapshot-update` refreshes them after a deliberate
change; review the diff like code."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.support.cli import tagpin

REPO = Path(__file__).resolve().parents[2]


def render(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return tagpin("render", *args, cwd=REPO, env=env or offline_env())


def offline_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ARGOCD_"))}
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    return env


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["examples/web", "--app-name", "web", "-n", "shop-dev"], id="web-dev"),
        pytest.param(
            [
                "examples/web",
                "--app-name",
                "web",
                "-n",
                "shop",
                "--revision",
                "4f2a9c1e0b7d3a5f6e8c9b0a1d2e3f4a5b6c7d8e",
                "-f",
                "values-prod.yaml",
                "--set",
                "replicas=8",
                "--env",
                "LOG_LEVEL=warn",
                "--kube-version",
                "1.31.2",
                "--api-versions",
                "v1,batch/v1,batch/v1/CronJob",
            ],
            id="web-prod",
        ),
    ],
)
def test_example_renders_to_reviewed_snapshot(args: list[str], yaml_snapshot) -> None:
    done = render(*args)
    assert done.returncode == 0, done.stderr
    assert done.stdout == yaml_snapshot


def test_example_pins_every_ecr_image_from_the_lock_without_aws() -> None:
    done = render("examples/web", "--app-name", "web")
    assert done.returncode == 0, done.stderr
    images = [
        line.split("image:", 1)[1].strip() for line in done.stdout.splitlines() if "image:" in line
    ]
    assert images and all("@sha256:" in image for image in images)
