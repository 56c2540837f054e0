"""Building the image: a broken Dockerfile fails CI, and the arm64 image builds and runs.

build-image.sh stops at a COPY whose source is missing and says so; a Dockerfile that forgets
USER still builds, and the check the image tests run on every build (`runtime_problems`) is
what fails it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.image import (
    REPO,
    build_image,
    new_tag,
    podman,
    remove_image,
    runtime_problems,
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
