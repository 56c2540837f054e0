"""Building the image: a broken Dockerfile fails CI, and the arm64 image builds and runs.

build-image.sh stops at a COPY whose source is missing and says so; a Dockerfile that forgets
USER still builds, and the check the image tests run on every build (`runtime_problems`) is
what fails it. The arm64 image (Graviton nodes) is built under qemu-user-static and renders in
an emulated container exactly what the venv renders on this machine. Builds on one machine take
turns, and a build killed halfway does not break the next one."""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.cmpserver import AppSpec
from tests.support.image import (
    BUILD_SCRIPT,
    BUILD_TIMEOUT,
    REPO,
    Sidecar,
    build_image,
    new_tag,
    podman,
    remove_image,
    runtime_problems,
    venv_cmp_server,
)


def broken_copy(directory: Path, old: str, new: str) -> Path:
    """The repository's Dockerfile with one change (the context stays the repository)."""
    text = (REPO / "Dockerfile").read_text()
    assert text.count(old) == 1, f"the Dockerfile no longer has {old!r} once"
    path = directory / "Dockerfile.broken"
    path.write_text(text.replace(old, new))
    return path


@pytest.fixture
def tag() -> Iterator[str]:
    name = new_tag("broken")
    yield name
    remove_image(name)


def test_a_wrong_copy_path_fails_the_build_where_it_is(tmp_path: Path, tag: str) -> None:
    dockerfile = broken_copy(tmp_path, "COPY cmp/ cmp/", "COPY cmd/ cmd/")
    built = build_image(tag, "--file", str(dockerfile))
    assert built.returncode != 0
    assert re.search(r"COPY cmd/ cmd/.*\n(.*\n)*.*cmd.*no such file or directory", built.stderr)
    assert f"build-image.sh: podman build of {tag} failed" in built.stderr
    assert podman("image", "exists", tag, check=False).returncode == 1
    # It stopped there: no later stage ran.
    assert "AS kustomize" not in built.stderr


def test_an_image_built_without_user_fails_the_sidecar_contract(tmp_path: Path, tag: str) -> None:
    dockerfile = broken_copy(tmp_path, "USER 999:999\n", "")
    built = build_image(tag, "--file", str(dockerfile))
    assert built.returncode == 0, built.stderr[-4000:]
    assert runtime_problems(tag) == ["runs as user 'root', not 999:999"]


def stage_containers() -> list[str]:
    """buildah's working containers on a stage image (NAME-tmp): a build's later stages run in
    them, and podman build removes them when it ends."""
    listed = podman("ps", "--all", "--external", "--format", "{{.ID}} {{.Image}}").stdout
    return [line for line in listed.splitlines() if re.search(r"-tmp(:latest)?$", line)]


def wait_for(condition: Callable[[], object], build: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + BUILD_TIMEOUT
    while not condition():
        assert build.poll() is None, f"the build ended before {what}"
        assert time.monotonic() < deadline, f"no {what} after {BUILD_TIMEOUT} s"
        time.sleep(0.2)


def test_builds_take_turns_and_a_killed_build_does_not_break_the_next(
    tmp_path: Path, tag: str
) -> None:
    """The build is reproducible, so builds share their stage images' IDs: a build waits for
    the one running, and the working containers a killed build leaves in podman's storage (CI's
    timeout, Ctrl-C) are removed by the next build instead of failing it with "image is in use
    by a container"."""
    storage = Path(podman("info", "--format", "{{.Store.GraphRoot}}").stdout.strip()).parent
    log = tmp_path / "killed.log"
    with open(storage / "tagpin-build-image.lock", "a") as held, open(log, "wb") as stderr:
        fcntl.flock(held, fcntl.LOCK_EX)  # another build is running
        killed = subprocess.Popen(
            ["bash", str(BUILD_SCRIPT), new_tag("killed")],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,
            env={**os.environ, "PYTHON": sys.executable},
        )
        try:
            wait_for(
                lambda: "waiting for another image build" in log.read_text(), killed, "it waited"
            )
            assert stage_containers() == []
            fcntl.flock(held, fcntl.LOCK_UN)
            wait_for(stage_containers, killed, "its sbom-tool stage ran")
        finally:
            os.killpg(killed.pid, signal.SIGKILL)
            killed.wait()
    assert stage_containers(), "the kill left no working container: nothing was proven"
    built = build_image(tag)
    assert built.returncode == 0, built.stderr[-4000:]
    assert "working container(s) a killed build left" in built.stderr
    assert stage_containers() == []
    assert runtime_problems(tag) == []


@pytest.mark.slow
def test_the_arm64_image_builds_and_renders_what_the_venv_renders(tmp_path: Path) -> None:
    """Minutes: mmdebstrap's maintainer scripts, pip and compileall run under emulation."""
    tag = new_tag("arm64")
    sidecar = None
    try:
        built = build_image(tag, "--arch", "arm64")
        assert built.returncode == 0, built.stderr[-4000:]
        architecture = podman("image", "inspect", "--format", "{{.Architecture}}", tag).stdout
        assert architecture.split() == ["arm64"]
        assert runtime_problems(tag) == []
        sidecar = Sidecar(tag, tmp_path / "sidecar" / "_cmp_server", arch="arm64")
        assert sidecar.exec(["uname", "-m"]).stdout == b"aarch64\n"
        version = sidecar.exec(["tagpin", "--version"])
        assert version.returncode == 0 and version.stdout.startswith(b"tagpin, version ")
        repo = tmp_path / "repo"
        shutil.copytree(REPO / "examples", repo / "examples")
        (repo / ".git").mkdir()
        web = AppSpec(name="web", source_path="examples/web", destination_namespace="shop")
        in_arm64 = sidecar.cmp_server(timeout=180).generate(repo, web, exclude=[".git"])
        on_host = venv_cmp_server(tmp_path).generate(repo, web, exclude=[".git"])
        assert in_arm64.ok and on_host.ok, (in_arm64.error, on_host.error)
        assert in_arm64.stdout == on_host.stdout
    finally:
        if sidecar is not None:
            sidecar.remove()
        remove_image(tag)
