"""End to end: `tagpin` processes pin ECR tags to digests through real boto3 calls to moto's
HTTP server on 127.0.0.1 (real sockets, real request signing), with the calls counted at the
server. Faults moto cannot produce come from a scripted endpoint (tests/support/fake_ecr.py)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from cmp.errors import ExitStatus
from tests.support.cli import tagpin
from tests.support.fake_ecr import access_denied, throttling
from tests.support.moto_ecr import ACCOUNT, REGION
from tests.support.renders import BOTO_PROBE

HOST = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"


def write_app(root: Path, images: dict[str, str], extra: str = "") -> Path:
    """An app with one Deployment per image name → reference."""
    app = root / "app"
    (app / "templates").mkdir(parents=True, exist_ok=True)
    (app / "tagpin.yaml").write_text(extra or "{}\n")
    values = "images:\n" + "".join(f"  {name}: {ref!r}\n" for name, ref in images.items())
    (app / "values.yaml").write_text(values)
    (app / "templates" / "workloads.yaml.j2").write_text(
        "{% for name, image in values.images | dictsort %}\n"
        "---\n"
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {{ name }}\nspec:\n"
        "  template:\n    spec:\n      containers:\n      - name: main\n"
        "        image: {{ image }}\n"
        "{% endfor %}\n"
    )
    return app


def render(
    app: Path, *args: str, env: dict[str, str] | None = None, probe: bool = False
) -> subprocess.CompletedProcess[str]:
    return tagpin(
        "render", app, "--app-name", "app", *args, env=env, probe=BOTO_PROBE if probe else None
    )


@pytest.fixture
def cache_env(tmp_path: Path, moto_ecr) -> dict[str, str]:
    env = dict(os.environ)
    env.update(TAGPIN_CACHE_DIR=str(tmp_path / "cache"), TAGPIN_APP_LOOKUP="off")
    return env


def images_in(output: str) -> list[str]:
    return [line.split("image:", 1)[1].strip() for line in output.splitlines() if "image:" in line]


def test_cold_render_asks_once_per_repository_and_warm_render_not_at_all(
    tmp_path: Path, moto_ecr, cache_env: dict[str, str]
) -> None:
    images: dict[str, str] = {}
    digests: dict[str, str] = {}
    for number in range(12):
        repo = f"team/service-{number:02d}"
        for tag in ("v1", "v2"):
            digests[f"{repo}:{tag}"] = moto_ecr.push(repo, tag)
        images[f"svc{number:02d}a"] = f"{HOST}/{repo}:v1"
        images[f"svc{number:02d}b"] = f"{HOST}/{repo}:v2"
    app = write_app(tmp_path, images)
    moto_ecr.reset_calls()

    cold = render(app, env=cache_env)
    assert cold.returncode == 0, cold.stderr
    assert moto_ecr.calls("DescribeImages") == 12
    assert sum(moto_ecr.counts().values()) == 12
    assert sorted(images_in(cold.stdout)) == sorted(
        f"{HOST}/{ref}@{digest}" for ref, digest in digests.items()
    )

    moto_ecr.reset_calls()
    warm = render(app, env=cache_env, probe=True)
    assert warm.returncode == 0, warm.stderr
    assert sum(moto_ecr.counts().values()) == 0
    assert "IMPORTED=\n" in warm.stderr  # neither boto3 nor botocore was imported
    assert warm.stdout == cold.stdout


def test_revert_reproduces_the_old_bytes_and_a_rebuild_under_a_new_tag_is_visible(
    tmp_path: Path, moto_ecr, cache_env: dict[str, str]
) -> None:
    """The seed's failure: a revert rebuilt a byte-identical image, ECR only added a tag, the
    push time stayed old, and the deploy tool never rolled back."""
    digest_v1 = moto_ecr.push(
        "shop/web",
        "v1",
        b'{"schemaVersion":2,"mediaType":'
        b'"application/vnd.oci.image.manifest.v1+json","layers":[],"v":1}',
    )
    digest_v2 = moto_ecr.push("shop/web", "v2")
    app = write_app(tmp_path, {"web": f"{HOST}/shop/web:v1"})

    def at_tag(tag: str) -> str:
        done = render(app, "--set", f"images.web={HOST}/shop/web:{tag}", env=cache_env)
        assert done.returncode == 0, done.stderr
        return done.stdout

    at_v1, at_v2, reverted = at_tag("v1"), at_tag("v2"), at_tag("v1")
    assert at_v1 != at_v2
    assert reverted == at_v1  # byte for byte
    assert digest_v1 in at_v1 and digest_v2 in at_v2

    # The revert commit's CI rebuilt the same bytes and pushed them as v3: same digest as v1,
    # old push time. The output still differs from v2, so Argo CD rolls back.
    assert (
        moto_ecr.push(
            "shop/web",
            "v3",
            b'{"schemaVersion":2,"mediaType":'
            b'"application/vnd.oci.image.manifest.v1+json","layers":[],"v":1}',
        )
        == digest_v1
    )
    rebuilt = at_tag("v3")
    assert rebuilt != at_v2
    assert f"{HOST}/shop/web:v3@{digest_v1}" in rebuilt


def test_multi_arch_images_pin_the_index_digest(
    tmp_path: Path, moto_ecr, cache_env: dict[str, str]
) -> None:
    index_digest = moto_ecr.push("shop/api", "v5", index=True)
    done = render(write_app(tmp_path, {"api": f"{HOST}/shop/api:v5"}), env=cache_env)
    assert done.returncode == 0, done.stderr
    assert images_in(done.stdout) == [f"{HOST}/shop/api:v5@{index_digest}"]


def test_cross_account_repositories_are_asked_with_their_registry_id(
    tmp_path: Path, moto_ecr, cache_env: dict[str, str]
) -> None:
    other = "111122223333"
    digest = moto_ecr.push("platform/base", "2024.1", account=other)
    image = f"{other}.dkr.ecr.{REGION}.amazonaws.com/platform/base:2024.1"
    done = render(write_app(tmp_path, {"base": image}), env=cache_env)
    assert done.returncode == 0, done.stderr
    assert images_in(done.stdout) == [f"{image}@{digest}"]


def test_pinned_and_non_ecr_images_are_kept_and_strict_apps_refuse_unpinned_ones(
    tmp_path: Path, moto_ecr, cache_env: dict[str, str]
) -> None:
    pinned = f"{HOST}/shop/web:v1@sha256:" + "a" * 64
    images = {"a": pinned, "b": "nginx:1.27", "c": "quay.io/org/tool:3"}
    moto_ecr.reset_calls()
    done = render(write_app(tmp_path, images), env=cache_env)
    assert done.returncode == 0, done.stderr
    assert images_in(done.stdout) == [pinned, "nginx:1.27", "quay.io/org/tool:3"]
    assert sum(moto_ecr.counts().values()) == 0

    strict = render(write_app(tmp_path, images, "images:\n  requireDigests: true\n"), env=cache_env)
    assert strict.returncode == ExitStatus.IMAGE and strict.stdout == ""
    assert "'nginx:1.27' is not pinned to a digest" in strict.stderr
    assert "'quay.io/org/tool:3' is not pinned" in strict.stderr


def test_every_missing_tag_and_repository_is_reported_at_once(
    tmp_path: Path, moto_ecr, cache_env: dict[str, str]
) -> None:
    moto_ecr.push("shop/web", "v1")
    app = write_app(
        tmp_path,
        {
            "ok": f"{HOST}/shop/web:v1",
            "gone1": f"{HOST}/shop/web:v404",
            "gone2": f"{HOST}/shop/web:v405",
            "norepo": f"{HOST}/shop/nothing:v1",
        },
    )
    done = render(app, env=cache_env)
    assert done.returncode == ExitStatus.RESOLVE and done.stdout == ""
    assert (
        f"{HOST}/shop/web:v404: tag 'v404' does not exist in repository 'shop/web'" in done.stderr
    )
    assert f"{HOST}/shop/web:v405: tag 'v405'" in done.stderr
    assert f"{HOST}/shop/nothing:v1: repository 'shop/nothing' does not exist" in done.stderr
    assert "Deployment/gone1 in templates/workloads.yaml.j2" in done.stderr
    assert "spec.template.spec.containers[0].image" in done.stderr


def test_unreachable_ecr_ends_in_a_clear_error_in_bounded_time(tmp_path: Path, aws_env) -> None:
    import socket

    with socket.socket() as probe:  # a port on loopback that nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    env = dict(
        os.environ,
        AWS_ENDPOINT_URL_ECR=f"http://127.0.0.1:{closed_port}",
        TAGPIN_CACHE="off",
        TAGPIN_APP_LOOKUP="off",
    )
    started = time.monotonic()
    done = render(write_app(tmp_path, {"web": f"{HOST}/shop/web:v1"}), env=env)
    elapsed = time.monotonic() - started
    assert done.returncode == ExitStatus.REGISTRY and done.stdout == ""
    assert "cannot reach ECR" in done.stderr
    assert elapsed < 60, "must end well inside Argo CD's 60 s request deadline"


def test_throttling_ends_after_bounded_attempts(tmp_path: Path, fake_ecr) -> None:
    fake_ecr.script(otherwise=throttling())
    env = dict(os.environ, TAGPIN_CACHE="off", TAGPIN_APP_LOOKUP="off", TAGPIN_ECR_MAX_ATTEMPTS="3")
    done = render(write_app(tmp_path, {"web": f"{HOST}/shop/web:v1"}), env=env)
    assert done.returncode == ExitStatus.REGISTRY and done.stdout == ""
    assert "throttl" in done.stderr.lower()
    assert fake_ecr.operations() == ["DescribeImages"] * 3


def test_access_denied_names_the_missing_permission(tmp_path: Path, fake_ecr) -> None:
    fake_ecr.script(otherwise=access_denied(repo="shop/web"))
    env = dict(os.environ, TAGPIN_CACHE="off", TAGPIN_APP_LOOKUP="off")
    done = render(write_app(tmp_path, {"web": f"{HOST}/shop/web:v1"}), env=env)
    assert done.returncode == ExitStatus.REGISTRY and done.stdout == ""
    assert "ecr:DescribeImages" in done.stderr
    assert "testing" not in done.stderr  # the (fake) access key never appears
