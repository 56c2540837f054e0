"""Typos in Image Updater keys fail the render loudly, through Argo CD's own plugin mechanics
(tests/support/cmpserver.py): the live Application is read from the Kubernetes API stand-in,
tags come from moto's ECR, and what Argo CD would show is the emulator's error text. (The key
table itself is checked in-process in tests/unit/imageupdater/test_updater_typos.py.)"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cmp.errors import ExitStatus
from tests.support.cmpserver import AppSpec, CmpServer
from tests.support.moto_ecr import ACCOUNT, REGION

REPO = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent
WEB = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/shop/web"
PREFIX = "argocd-image-updater.argoproj.io/"


@pytest.fixture
def user_repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    app = root / "apps" / "web"
    app.mkdir(parents=True)
    (app / "tagpin.yaml").write_text("{}\n")
    (app / "templates").mkdir()
    (app / "templates" / "deployment.yaml").write_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  template:\n"
        f"    spec:\n      containers:\n      - name: web\n        image: {WEB}:v1.0.0\n"
    )
    (root / ".git").mkdir()
    return root


@pytest.fixture
def tags(moto_ecr) -> dict[str, str]:
    return {tag: moto_ecr.push("shop/web", tag) for tag in ("v1.0.0", "v2.0.0", "pr-43-2-abc")}


@pytest.fixture
def server(tmp_path: Path, moto_ecr, kubeconfig: Path) -> CmpServer:
    sidecar_env = {
        "PATH": f"{BIN}{os.pathsep}/usr/bin:/bin",
        "HOME": str(tmp_path / "home"),
        "TAGPIN_CACHE_DIR": str(tmp_path / "cache"),
        "KUBECONFIG": str(kubeconfig),
        "ARGOCD_NAMESPACE": "argocd",
        **{k: v for k, v in os.environ.items() if k.startswith("AWS_")},
    }
    workdir = tmp_path / "cmp-tmp"
    workdir.mkdir()
    return CmpServer.from_plugin_yaml(
        REPO / "plugin.yaml", sidecar_env=sidecar_env, workdir=workdir, timeout=60
    )


def generate(server: CmpServer, repo: Path, updater: dict[str, str] | None = None) -> Any:
    parameters: list[dict[str, Any]] = []
    if updater:
        parameters.append({"name": "image-updater", "map": updater})
    app = AppSpec(
        name="web",
        source_path="apps/web",
        plugin={"name": "tagpin", "parameters": parameters},
    )
    return server.generate(repo, app, exclude=[".git"])


def image(result: Any) -> str:
    return str(result.objects[0]["spec"]["template"]["spec"]["containers"][0]["image"])


def test_the_issue_s_missing_s_fails_instead_of_deploying_the_highest_release(
    server: CmpServer, user_repo: Path, fake_kube, tags
) -> None:
    fake_kube.add("argocd", "web", {f"{PREFIX}image-list": f"api={WEB}"})
    result = generate(server, user_repo, {"api.allow-tag": "regexp:^pr-43-"})
    assert not result.ok and result.objects == [] and result.exit_code == ExitStatus.CONFIG
    assert (
        "image-updater parameter key 'api.allow-tag' is not an Argo CD Image Updater key; "
        "did you mean 'api.allow-tags'?" in result.error
    )

    # Spelled right, the branch's tag deploys.
    result = generate(
        server,
        user_repo,
        {"api.allow-tags": "regexp:^pr-43-", "api.update-strategy": "alphabetical"},
    )
    assert result.ok, result.error
    assert image(result) == f"{WEB}:pr-43-2-abc@{tags['pr-43-2-abc']}"


@pytest.mark.parametrize(
    ("annotations", "message"),
    [
        (
            {f"{PREFIX}image-list": f"web={WEB}", f"{PREFIX}web.update-stratgy": "alphabetical"},
            f"annotation '{PREFIX}web.update-stratgy' is not an Argo CD Image Updater key; "
            f"did you mean '{PREFIX}web.update-strategy'?",
        ),
        (
            {f"{PREFIX}image-lists": f"web={WEB}"},
            f"annotation '{PREFIX}image-lists' is not an Argo CD Image Updater key; "
            f"did you mean '{PREFIX}image-list'?",
        ),
        (
            {f"{PREFIX}image-list": f"web={WEB}", f"{PREFIX}wbe.allow-tags": "regexp:^pr-43-"},
            f"annotation '{PREFIX}wbe.allow-tags' names the alias 'wbe', which the image-list "
            f"does not define (aliases: web); did you mean '{PREFIX}web.allow-tags'?",
        ),
        (
            {f"{PREFIX}image-list": f"web={WEB}", f"{PREFIX}web.update-strategy": "newest"},
            "unknown update-strategy 'newest'; choose one of semver, newest-build, "
            "alphabetical, digest",
        ),
        (
            {f"{PREFIX}image-list": "web="},
            "image-list entry 'web=' has an alias but no image",
        ),
    ],
)
def test_typos_in_live_annotations_fail_the_render_with_exit_3(
    server: CmpServer,
    user_repo: Path,
    fake_kube,
    tags,
    annotations: dict[str, str],
    message: str,
) -> None:
    fake_kube.add("argocd", "web", annotations)
    result = generate(server, user_repo)
    assert not result.ok and result.objects == [] and result.exit_code == ExitStatus.CONFIG
    assert message in result.error


def test_keys_tagpin_does_not_use_are_accepted_silently(
    server: CmpServer, user_repo: Path, fake_kube, tags
) -> None:
    unused = {
        "web.helm.image-name": "image.repository",
        "web.helm.image-tag": "image.tag",
        "web.helm.image-spec": "image.spec",
        "web.kustomize.image-name": "shop/web",
        "web.pull-secret": "pullsecret:argocd/ecr",
        "web.platforms": "linux/amd64",
        "web.force-update": "true",
        "force-update": "false",
        "pull-secret": "ext:/scripts/ecr-login.sh",
        "write-back-method": "git",
        "write-back-target": "kustomization",
        "git-branch": "main",
        "git-repository": "git@example.com:org/repo.git",
    }
    fake_kube.add(
        "argocd",
        "web",
        {
            f"{PREFIX}image-list": f" web = {WEB} ",  # whitespace around `=` is trimmed
            f"{PREFIX}web.allow-tags": "regexp:^v1\\.",
            f"{PREFIX}web.update-strategy": "alphabetical",
            **{PREFIX + key: value for key, value in unused.items()},
        },
    )
    result = generate(server, user_repo)
    assert result.ok, result.error
    assert image(result) == f"{WEB}:v1.0.0@{tags['v1.0.0']}"
    assert "warning" not in result.stderr


@pytest.fixture(params=["in-process", "served"])
def render_mode(request: pytest.FixtureRequest, server: CmpServer) -> Iterator[CmpServer]:
    """The sidecar rendering in-process, or through a render server's forked worker."""
    if request.param == "in-process":
        yield server
        return
    from tests.e2e.test_render_server import Server

    directory = Path(tempfile.mkdtemp(prefix="tp-", dir="/tmp"))  # socket paths must be short
    render_server = Server(directory / "render.sock", directory / "server.log")
    server.sidecar_env.update(
        TAGPIN_RENDER_SERVER="on", TAGPIN_RENDER_SERVER_SOCKET=str(render_server.socket)
    )
    yield server
    render_server.stop()
    assert " worker " in render_server.log_text()  # the worker did render
    shutil.rmtree(directory, ignore_errors=True)


def test_warnings_are_printed_even_when_the_render_fails(
    render_mode: CmpServer, user_repo: Path, fake_kube, tags
) -> None:
    server = render_mode
    fake_kube.add(
        "argocd",
        "web",
        {
            f"{PREFIX}image-list": f"web={WEB}",
            f"{PREFIX}web.update-strategy": "name",  # renamed: a warning
            f"{PREFIX}web.allow-tags": "regexp:^pr-99-",  # no such tag: the render fails
        },
    )
    result = generate(server, user_repo)
    assert not result.ok and result.exit_code == ExitStatus.RESOLVE
    assert "update-strategy 'name' was renamed to 'alphabetical'" in result.stderr
    assert "no tag satisfies image-updater alias web" in result.stderr
