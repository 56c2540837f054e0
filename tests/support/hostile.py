"""An app in a git repository, rendered the way the sidecar renders it: through the cmp-server
emulator and the shipped plugin.yaml, in `tagpin generate` itself or in a real render server's
worker. For the attack tests (tests/e2e/source/test_hostile_repos.py,
tests/e2e/test_memory_cap.py)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.support.apptree import build_tree, clean_env
from tests.support.cmpserver import AppSpec, CmpServer, GenerateResult
from tests.support.listener import start_listener

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

HOST = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
DIGEST = "sha256:" + "1" * 64
LOCK = (
    "apiVersion: tagpin.dev/v1\nkind: ImageLock\nimages:\n"
    f"- image: {HOST}/shop/web:v1\n  digest: {DIGEST}\n"
)
APP = {
    "apps/web/tagpin.yaml": "{}\n",
    "apps/web/templates/deploy.yaml": (
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  template:\n"
        f"    spec:\n      containers:\n      - name: web\n        image: {HOST}/shop/web:v1\n"
    ),
}
LOCKED_APP = {**APP, "apps/web/tagpin.lock": LOCK}
OFFLINE = {"TAGPIN_LOCK": "strict", "AWS_CONFIG_FILE": os.devnull}


Sidecar = Callable[..., GenerateResult]


@pytest.fixture
def cmp_sidecar(tmp_path: Path) -> Sidecar:
    """GenerateManifests through the cmp-server emulator and the shipped plugin.yaml, with the
    sidecar's settings `settings` and the Application's plugin block `plugin`."""

    def generate(
        repo: Path, settings: Mapping[str, str], plugin: Mapping[str, Any] | None = None
    ) -> GenerateResult:
        workdir = tmp_path / "cmp-tmp"
        workdir.mkdir(exist_ok=True)
        server = CmpServer.from_plugin_yaml(
            REPO / "plugin.yaml",
            workdir=workdir,
            timeout=60,
            sidecar_env={
                "PATH": f"{BIN}{os.pathsep}/usr/bin:/bin",
                "HOME": str(tmp_path),
                "TAGPIN_APP_LOOKUP": "off",
                "TAGPIN_CACHE_DIR": str(tmp_path / "cache"),
                **OFFLINE,
                **settings,
            },
        )
        return server.generate(
            repo, AppSpec(name="web", source_path="apps/web", plugin=plugin), exclude=[".git"]
        )

    return generate


@pytest.fixture(params=["in-process", "render-server"])
def render_mode(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """The sidecar's settings for rendering in `tagpin generate` itself, or in a worker of a
    real `tagpin render-server` (the image's default)."""
    if request.param == "in-process":
        yield {"TAGPIN_RENDER_SERVER": "off"}
        return
    directory = Path(tempfile.mkdtemp(prefix="tp-", dir="/tmp"))  # a socket path is short
    socket, log = directory / "render.sock", directory / "server.log"
    server = start_listener(socket, log, clean_env())
    deadline = time.monotonic() + 30
    while "serving" not in (log.read_text() if log.exists() else ""):
        assert time.monotonic() < deadline and server.poll() is None, "no render server"
        time.sleep(0.05)
    try:
        yield {"TAGPIN_RENDER_SERVER": "on", "TAGPIN_RENDER_SERVER_SOCKET": str(socket)}
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
        shutil.rmtree(directory, ignore_errors=True)


def worker_peaks_mib(settings: Mapping[str, str]) -> list[float]:
    """The peak RSS of every worker the render server of `settings` (a `render_mode`) has
    reaped, from its log; empty for in-process renders."""
    socket = settings.get("TAGPIN_RENDER_SERVER_SOCKET")
    if not socket:
        return []
    log = Path(socket).with_name("server.log")
    deadline = time.monotonic() + 30
    while " worker " not in log.read_text():  # written when the server reaps the worker
        assert time.monotonic() < deadline, "no worker line in the render server's log"
        time.sleep(0.05)
    return [
        float(line.split("peak RSS ")[1].split()[0])
        for line in log.read_text().splitlines()
        if "peak RSS " in line
    ]


def git(repo: Path, *args: str, stdin: bytes | None = None) -> bytes:
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(repo),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_AUTHOR_NAME": "t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }
    return subprocess.run(
        ["git", *args], cwd=repo, env=env, input=stdin, capture_output=True, check=True
    ).stdout


def committed_repo(root: Path, files: dict[str, str]) -> Path:
    build_tree(root, files)
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "app")
    return root


def raw_tree(repo: Path, entries: list[tuple[str, str, str]]) -> str:
    """Write a tree object as given (mode, name, object id), duplicates and all: what a
    host without object checks accepts from a crafted push."""
    body = b"".join(
        f"{mode} {name}".encode() + b"\0" + bytes.fromhex(oid) for mode, name, oid in entries
    )
    return (
        git(repo, "hash-object", "-w", "-t", "tree", "--literally", "--stdin", stdin=body)
        .decode()
        .strip()
    )


def blob(repo: Path, content: str) -> str:
    return git(repo, "hash-object", "-w", "--stdin", stdin=content.encode()).decode().strip()
