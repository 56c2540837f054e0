"""Messages use the words of the command that was run: the flags at the CLI and in `tagpin
pin`, Argo CD's parameter names only under `tagpin generate` (tests/e2e/test_cmpserver.py and
tests/e2e/imageupdater/test_updater_typos_sidecar.py check those)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from cmp.errors import ExitStatus
from tests.e2e.commands.test_diff import APP_FILES, HOST, TAGPIN, Repo, offline_env

PREFIX = "argocd-image-updater.argoproj.io/"
UNPINNED = (
    "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  template:\n"
    f"    spec:\n      containers:\n      - {{name: web, image: '{HOST}/shop/web:v1'}}\n"
)


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    (tmp_path / "repo").mkdir()
    repository = Repo(tmp_path / "repo")
    repository.commit({**APP_FILES, "apps/web/stream.yaml": UNPINNED}, "web")
    return repository


def tagpin(repo: Repo, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [TAGPIN, *args],
        cwd=repo.root,
        env=offline_env(repo.root.parent),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        pytest.param(
            ("render", "apps/web", "--set", "replicas[3]=1"),
            ExitStatus.CONFIG,
            "--set: key 'replicas[3]': ",
            id="render-set",
        ),
        pytest.param(
            ("render", "apps/web", "--image-updater", "web.allow-tag=^pr-"),
            ExitStatus.CONFIG,
            "--image-updater key 'web.allow-tag' is not an Argo CD Image Updater key; "
            "did you mean 'web.allow-tags'?",
            id="render-image-updater",
        ),
        pytest.param(
            ("render", "apps/web", "--image-updater", f"{PREFIX}web.allow-tags=^pr-"),
            ExitStatus.CONFIG,
            f"--image-updater key '{PREFIX}web.allow-tags' carries the annotation prefix; "
            f"drop '{PREFIX}' and write 'web.allow-tags'",
            id="render-image-updater-prefix",
        ),
        pytest.param(
            ("pin", "apps/web/stream.yaml", "--image-updater", "web.allow-tag=^pr-"),
            ExitStatus.CONFIG,
            "--image-updater key 'web.allow-tag' is not an Argo CD Image Updater key",
            id="pin-image-updater",
        ),
        pytest.param(
            ("render", "apps/web", "--parameters-json", "{"),
            ExitStatus.CONFIG,
            "--parameters-json is not valid JSON",
            id="parameters-json",
        ),
        pytest.param(
            ("pin", "apps/web/stream.yaml", "--lock", "nowhere.lock"),
            ExitStatus.SOURCE,
            "--lock nowhere.lock: no such file",
            id="pin-missing-lock",
        ),
    ],
)
def test_messages_name_the_flags_that_were_given(
    repo: Repo, args: tuple[str, ...], status: int, message: str
) -> None:
    done = tagpin(repo, *args)
    assert done.returncode == status and done.stdout == "", done.stderr
    assert message in done.stderr
    assert "plugin parameter" not in done.stderr and "image-updater parameter" not in done.stderr
    assert "the app" not in done.stderr


def test_a_tag_missing_from_digests_says_how_to_add_it_not_to_lock_an_app(
    repo: Repo, tmp_path: Path
) -> None:
    (tmp_path / "empty.lock").write_text("apiVersion: tagpin.dev/v1\nkind: ImageLock\nimages: []\n")
    for command in (("render", "apps/web"), ("pin", "apps/web/stream.yaml")):
        done = tagpin(repo, *command, "--digests", str(tmp_path / "empty.lock"))
        assert done.returncode == ExitStatus.LOCK and done.stdout == "", done.stderr
        assert "(--digests never asks ECR); add it to " in done.stderr
        assert "leave out --digests to ask ECR" in done.stderr
        assert "in the app directory" not in done.stderr
