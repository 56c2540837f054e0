"""`tagpin lock`, `tagpin diff`, cmp.testing and `tagpin pin`'s flags on Kustomize apps and
manifest streams, with a real kustomize (kubectl kustomize) and moto's ECR where ECR answers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cmp.testing import render_app
from tests.e2e.source.test_kustomize import BASE, overlay
from tests.support.apptree import build_tree
from tests.support.cli import tagpin
from tests.support.moto_ecr import ACCOUNT, REGION

BIN = Path(sys.executable).parent
HOST = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"
WEB = f"{HOST}/shop/web"
DIGEST_V2 = "sha256:" + "2" * 64
DIGEST_V3 = "sha256:" + "3" * 64


def lock_text(**tags: str) -> str:
    images = "".join(
        f"- digest: {digest}\n  image: {WEB}:{tag}\n" for tag, digest in sorted(tags.items())
    )
    return f"---\napiVersion: tagpin.dev/v1\nkind: ImageLock\nimages:\n{images}"


def git(root: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(
        GIT_CONFIG_GLOBAL=os.devnull,
        GIT_CONFIG_NOSYSTEM="1",
        GIT_AUTHOR_NAME="t",
        GIT_AUTHOR_EMAIL="t@example.com",
        GIT_COMMITTER_NAME="t",
        GIT_COMMITTER_EMAIL="t@example.com",
    )
    return subprocess.run(
        ["git", *args], cwd=root, env=env, capture_output=True, text=True, check=True
    ).stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = build_tree(tmp_path / "repo", {**BASE, **overlay()})
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "shop at v2")
    return root


def env_with(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ARGOCD_", "TAGPIN_"))}
    env.update(
        PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        TAGPIN_CACHE_DIR=str(tmp_path / "cache"),
        TAGPIN_APP_LOOKUP="off",
        **extra,
    )
    return env


def test_lock_then_cmp_testing_render_a_kustomize_app_offline(
    repo: Path, tmp_path: Path, moto_ecr, monkeypatch: pytest.MonkeyPatch
) -> None:
    digest = moto_ecr.push("shop/web", "v2")
    locked = tagpin("lock", str(repo / "apps/shop"), env=env_with(tmp_path), binary=True)
    assert locked.returncode == 0, locked.stderr.decode()
    lock = (repo / "apps/shop/tagpin.lock").read_text()
    assert f"image: {WEB}:v2" in lock and digest in lock
    assert ":v1" not in lock  # the base's tag, replaced by the overlay's images: newTag
    monkeypatch.setenv("PATH", f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    text = render_app(repo / "apps/shop", namespace="shop")
    assert f"image: {WEB}:v2@{digest}" in text
    assert (
        text.encode()
        == tagpin(
            "render",
            str(repo / "apps/shop"),
            "-n",
            "shop",
            env=env_with(tmp_path, TAGPIN_LOCK="strict"),
            binary=True,
        ).stdout
    )


def test_diff_shows_an_overlay_tag_bump_as_a_digest_change(repo: Path, tmp_path: Path) -> None:
    build_tree(repo, {"apps/shop/tagpin.lock": lock_text(v2=DIGEST_V2, v3=DIGEST_V3)})
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "lock")
    build_tree(repo, overlay(tag="v3"))
    done = tagpin(
        "diff", "apps/shop", env=env_with(tmp_path, TAGPIN_LOCK="strict"), cwd=repo, binary=True
    )
    assert done.returncode == 1, done.stderr.decode()
    changed = [line for line in done.stdout.decode().splitlines()[2:] if line[:1] in "+-"]
    assert changed == [
        f"-        image: {WEB}:v2@{DIGEST_V2}",
        f"+        image: {WEB}:v3@{DIGEST_V3}",
    ]


DEPLOYMENT = f"""\
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: shop}}
spec:
  template:
    spec:
      containers:
      - {{name: web, image: "{WEB}:v2"}}
"""


def test_pin_reads_files_and_stdin_in_order_and_takes_digests_from_a_lock(tmp_path: Path) -> None:
    build_tree(
        tmp_path,
        {
            "a.yaml": DEPLOYMENT,
            "digests.lock": lock_text(v2=DIGEST_V2),
            "b.json": '{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}}',
        },
    )
    env = env_with(tmp_path, AWS_CONFIG_FILE=str(tmp_path / "none"))
    done = tagpin(
        "pin",
        "a.yaml",
        "-",
        "b.json",
        "--digests",
        "digests.lock",
        env=env,
        stdin=b"apiVersion: v1\nkind: Service\nmetadata: {name: web}\n",
        cwd=tmp_path,
        binary=True,
    )
    assert done.returncode == 0, done.stderr.decode()
    text = done.stdout.decode()
    assert [line for line in text.splitlines() if line.startswith("kind:")] == [
        "kind: Deployment",
        "kind: Service",
        "kind: ConfigMap",
    ]
    assert f"image: {WEB}:v2@{DIGEST_V2}" in text
    # --lock under TAGPIN_LOCK=strict: a tag it lacks fails, naming the image; nothing printed.
    build_tree(tmp_path, {"tagpin.lock": lock_text(v1=DIGEST_V2)})
    strict = tagpin(
        "pin",
        "a.yaml",
        "--lock",
        "tagpin.lock",
        env={**env, "TAGPIN_LOCK": "strict"},
        cwd=tmp_path,
        binary=True,
    )
    assert (strict.returncode, strict.stdout) == (11, b"")
    assert f"{WEB}:v2: not in tagpin.lock".encode() in strict.stderr
    assert b"Deployment/web in a.yaml:1" in strict.stderr


def test_pin_applies_image_updater_overrides_and_tagpin_yaml_paths(
    tmp_path: Path, moto_ecr
) -> None:
    digests = {tag: moto_ecr.push("shop/web", tag) for tag in ("v2", "pr-42-abc", "pr-7-def")}
    build_tree(
        tmp_path,
        {
            "in.yaml": DEPLOYMENT
            + "---\n"
            + (
                "apiVersion: x.dev/v1\nkind: Job\nmetadata: {name: j}\n"
                f"spec: {{runner: '{WEB}:v2'}}\n"
            ),
            "tagpin.yaml": "images:\n  paths:\n  - {kind: Job, path: spec.runner}\n",
        },
    )
    done = tagpin(
        "pin",
        "in.yaml",
        "--config",
        "tagpin.yaml",
        "--image-updater",
        f"image-list=web={WEB}",
        "--image-updater",
        "web.allow-tags=regexp:^pr-42-",
        "--image-updater",
        "web.update-strategy=alphabetical",
        env=env_with(tmp_path),
        cwd=tmp_path,
        binary=True,
    )
    assert done.returncode == 0, done.stderr.decode()
    text = done.stdout.decode()
    assert f"image: {WEB}:pr-42-abc@{digests['pr-42-abc']}" in text
    # tagpin.yaml's images.paths (--config) made the Job's field an image field too.
    assert f"runner: {WEB}:pr-42-abc@{digests['pr-42-abc']}" in text
    assert digests["v2"] not in text


@pytest.mark.parametrize(
    "stdin,status,message",
    [
        (
            b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n  bad: indent\n",
            6,
            b"<stdin>:4:3: invalid YAML",
        ),
        (  # an empty stream is no failure for a filter (issue 23 item 20); JSON NaN is
            b'{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "x": NaN}',
            6,
            b"<stdin>:1: invalid JSON: x: NaN is not JSON",
        ),
        (
            b'{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}} {"kind": ',
            6,
            b"<stdin>:1: invalid JSON",
        ),
        (DEPLOYMENT.replace(":v2", ":v2@sha256:abc").encode(), 7, b"Deployment/web"),
    ],
)
def test_pin_failures_print_nothing_and_exit_as_render_does(
    tmp_path: Path, stdin: bytes, status: int, message: bytes
) -> None:
    done = tagpin(
        "pin", "-", env=env_with(tmp_path, TAGPIN_LOCK="strict"), stdin=stdin, binary=True
    )
    assert (done.returncode, done.stdout) == (status, b""), done.stderr.decode()
    assert message in done.stderr


def test_pin_of_a_template_apps_output_is_that_output(tmp_path: Path) -> None:
    """The sidecar's output is a fixed point of `tagpin pin`: the same objects, the same bytes
    (its images are already pinned, so nothing is asked either)."""
    example = Path(__file__).resolve().parents[2] / "examples" / "web"
    env = env_with(tmp_path, TAGPIN_LOCK="strict", AWS_CONFIG_FILE=str(tmp_path / "none"))
    rendered = tagpin(
        "render", str(example), "--app-name", "web", "-n", "shop", env=env, binary=True
    )
    assert rendered.returncode == 0, rendered.stderr.decode()
    pinned = tagpin(
        "pin",
        "-",
        "-n",
        "shop",
        "--digests",
        str(example / "tagpin.lock"),
        env=env,
        stdin=rendered.stdout,
        binary=True,
    )
    assert pinned.returncode == 0, pinned.stderr.decode()
    assert pinned.stdout == rendered.stdout


def test_pin_reads_the_live_applications_overrides_like_render(
    tmp_path: Path, moto_ecr, fake_kube, kubeconfig: Path
) -> None:
    """`--app-name` makes `tagpin pin` read the live Application's Image Updater annotations
    (fake Kubernetes API), and its bytes equal `tagpin render`'s for the same objects."""
    prefix = "argocd-image-updater.argoproj.io/"
    fake_kube.add(
        "argocd",
        "web",
        {
            f"{prefix}image-list": f"web={WEB}",
            f"{prefix}web.allow-tags": "regexp:^pr-42-",
            f"{prefix}web.update-strategy": "alphabetical",
        },
    )
    digests = {tag: moto_ecr.push("shop/web", tag) for tag in ("v2", "pr-42-abc")}
    app = build_tree(tmp_path / "app", {"tagpin.yaml": "{}\n", "templates/web.yaml": DEPLOYMENT})
    env = dict(
        os.environ,
        KUBECONFIG=str(kubeconfig),
        ARGOCD_NAMESPACE="argocd",
        TAGPIN_CACHE_DIR=str(tmp_path / "cache"),
    )
    rendered = tagpin("render", str(app), "--app-name", "web", env=env, binary=True)
    assert rendered.returncode == 0, rendered.stderr.decode()
    piped = tagpin(
        "pin", "--app-name", "web", str(app / "templates/web.yaml"), env=env, binary=True
    )
    assert piped.returncode == 0, piped.stderr.decode()
    assert piped.stdout == rendered.stdout
    assert f"image: {WEB}:pr-42-abc@{digests['pr-42-abc']}".encode() in piped.stdout
    production = tagpin(
        "pin", str(app / "templates/web.yaml"), env=env, binary=True
    )  # no app: git's tag
    assert f"image: {WEB}:v2@{digests['v2']}".encode() in production.stdout


# Moved from tests/e2e/source/test_kustomize.py: it waits on a real process for 30 s.
def test_a_hung_kustomize_is_stopped_by_the_timeout(repo: Path, tmp_path: Path) -> None:
    fake = tmp_path / "bin" / "kustomize"
    build_tree(fake.parent, {"kustomize": "#!/bin/sh\nsleep 30\n"})
    fake.chmod(0o755)
    env = {
        "PATH": f"{fake.parent}{os.pathsep}/usr/bin:/bin",
        "TAGPIN_CACHE": "off",
        "TAGPIN_APP_LOOKUP": "off",
        "TAGPIN_KUSTOMIZE_TIMEOUT": "1",
    }
    result = tagpin("render", str(repo / "apps/shop"), env=env, binary=True)
    assert result.returncode == 5 and result.stdout == b""
    assert b"did not finish in 1 s (TAGPIN_KUSTOMIZE_TIMEOUT)" in result.stderr
