"""`cmp.testing.render_app`, the helper users call in their own snapshot tests: the same bytes
as `tagpin render`, never an ECR call, and the example syrupy test in examples/snapshot-test
passes (and refreshes with --snapshot-update) as part of this suite."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cmp.errors import LockError, TemplateError
from cmp.testing import render_app
from tests.support.moto_ecr import ACCOUNT, REGION

REPO = Path(__file__).resolve().parents[3]
WEB = REPO / "examples" / "web"
HOST = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"


def offline_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "TAGPIN_", "ARGOCD_"))}
    env.update(AWS_CONFIG_FILE=str(tmp_path / "nowhere"), TAGPIN_CACHE_DIR=str(tmp_path / "c"))
    return env


def test_render_app_prints_what_tagpin_render_prints(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            str(Path(sys.executable).with_name("tagpin")),
            "render",
            str(WEB),
            "--app-name",
            "web",
            "-n",
            "shop",
            "-f",
            "values-prod.yaml",
            "--set",
            "replicas=8",
            "--env",
            "LOG_LEVEL=warn",
        ],
        capture_output=True,
        text=True,
        env=offline_env(tmp_path),
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert (
        render_app(
            WEB,
            app_name="web",
            namespace="shop",
            values_files=["values-prod.yaml"],
            values={"replicas": "8"},
            env={"LOG_LEVEL": "warn"},
        )
        == done.stdout
    )


def app_with_unlocked_image(root: Path) -> Path:
    app = root / "app"
    (app / "templates").mkdir(parents=True)
    (app / "tagpin.yaml").write_text("{}\n")
    (app / "templates" / "pod.yaml").write_text(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  containers:\n"
        f"  - name: web\n    image: {HOST}/shop/web:v1\n"
    )
    return app


def test_render_app_never_asks_ecr_even_when_it_could(tmp_path: Path, moto_ecr) -> None:
    moto_ecr.push("shop/web", "v1")  # ECR would answer: render_app must not ask
    moto_ecr.reset_calls()
    with pytest.raises(LockError) as raised:
        render_app(app_with_unlocked_image(tmp_path))
    assert f"{HOST}/shop/web:v1: not in tagpin.lock (the app has none)" in str(raised.value)
    assert sum(moto_ecr.counts().values()) == 0


def test_render_app_takes_digests_from_another_lock_file(tmp_path: Path) -> None:
    digest = "sha256:" + "d" * 64
    lock = tmp_path / "digests.lock"
    lock.write_text(
        "apiVersion: tagpin.dev/v1\nkind: ImageLock\nimages:\n"
        f"- image: {HOST}/shop/web:v1\n  digest: {digest}\n"
    )
    rendered = render_app(app_with_unlocked_image(tmp_path), digests=lock)
    assert f"image: {HOST}/shop/web:v1@{digest}" in rendered


def test_render_app_raises_the_render_error_with_its_location(tmp_path: Path) -> None:
    app = tmp_path / "broken"
    (app / "templates").mkdir(parents=True)
    (app / "tagpin.yaml").write_text("{}\n")
    (app / "templates" / "cm.yaml.j2").write_text("data: {{ values.missing }}\n")
    with pytest.raises(TemplateError) as raised:
        render_app(app)
    assert "templates/cm.yaml.j2:1" in str(raised.value)


def run_example(root: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            str(root / "snapshot-test"),
            *args,
        ],
        cwd=root,
        capture_output=True,
        text=True,
        env=offline_env(tmp_path),
        timeout=300,
        check=False,
    )


def test_the_example_snapshot_test_passes_offline(tmp_path: Path) -> None:
    done = run_example(REPO / "examples", tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout


def test_the_example_fails_on_a_changed_render_until_snapshot_update(tmp_path: Path) -> None:
    examples = tmp_path / "repo" / "examples"
    for name in ("web", "lib", "snapshot-test"):
        shutil.copytree(REPO / "examples" / name, examples / name)
    subprocess.run(["git", "init", "-q", str(tmp_path / "repo")], check=True)  # the repo root
    snapshot = (
        examples
        / "snapshot-test"
        / "__snapshots__"
        / "test_web"
        / "test_web_renders_as_reviewed[dev].yaml"
    )
    reviewed = snapshot.read_text()
    values = examples / "web" / "values.yaml"
    values.write_text(values.read_text().replace("*/15 * * * *", "*/30 * * * *"))

    failed = run_example(examples, tmp_path)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "[+ received] == [- snapshot]" in failed.stdout

    updated = run_example(examples, tmp_path, "--snapshot-update")
    assert updated.returncode == 0, updated.stdout + updated.stderr
    refreshed = snapshot.read_text()
    assert refreshed != reviewed and "schedule: '*/30 * * * *'\n" in refreshed
    assert refreshed == render_app(
        examples / "web", app_name="web", namespace="shop-dev", env={"LOG_LEVEL": "info"}
    )
    assert run_example(examples, tmp_path).returncode == 0
