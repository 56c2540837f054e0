"""`tagpin pin` promises what `tagpin render` prints for the same objects: the same bytes on
stdout, the same messages on stderr, the same exit status. One table of cases, each run both
ways on the same objects and settings: a plain-YAML app rendered (`tagpin render .`) and its
one file pinned (`tagpin pin templates/objects.yaml --config tagpin.yaml`), from the app
directory, so both name the file alike.

Both run one pipeline (cmp/pipeline.py); this is what keeps it one. The case that started it:
with an unusable cache directory, `render` printed the cache's warning before its exit-9
error and `pin` dropped it."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

from tests.support.apptree import build_tree
from tests.support.cli import tagpin
from tests.support.moto_ecr import ACCOUNT, REGION, MotoEcr

HOST = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"
WEB = f"{HOST}/shop/web"
LOCKED = "sha256:" + "1" * 64


def deployment(image: str, name: str = "web") -> str:
    return (
        f"apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n"
        f"  template:\n    spec:\n      containers:\n        - name: {name}\n"
        f"          image: {image}\n"
    )


def lock(*images: str) -> str:
    entries = "".join(f"- image: {image}\n  digest: {LOCKED}\n" for image in images)
    return f"apiVersion: tagpin.dev/v1\nkind: ImageLock\nimages:\n{entries}"


class Case(NamedTuple):
    objects: str  # templates/objects.yaml: what `helm template` would have printed
    env: dict[str, str] = {}  # settings, besides the test's ECR (moto) and a private cache
    flags: tuple[str, ...] = ()  # given to both commands
    config: str = "{}\n"  # tagpin.yaml
    lock: str | None = None  # tagpin.lock (render reads the app's; pin gets --lock)
    status: int = 0  # what both must exit with
    said: str = ""  # on stderr, both times
    # The one difference by design: how to fix a lock. An app's is written by `tagpin lock`;
    # the file `tagpin pin --lock` names is the user's own. (render's words, pin's words)
    fix: tuple[str, str] = ("", "")


def unreachable() -> str:
    """An ECR endpoint nothing listens on: every call is refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


CASES = {
    "pinned": Case(deployment(f"{WEB}:v1")),
    "an unusable cache directory, then ECR unreachable": Case(
        deployment(f"{WEB}:v1"),
        env={"TAGPIN_CACHE_DIR": "{file}", "AWS_ENDPOINT_URL_ECR": "{unreachable}"},
        status=9,
        said="cache",
    ),
    "ECR unreachable": Case(
        deployment(f"{WEB}:v1"),
        env={"AWS_ENDPOINT_URL_ECR": "{unreachable}", "TAGPIN_ECR_MAX_ATTEMPTS": "1"},
        status=9,
    ),
    "a missing tag": Case(deployment(f"{WEB}:v9"), status=8, said="tag 'v9' does not exist"),
    "a missing repository": Case(
        deployment(f"{HOST}/shop/gone:v1"), status=8, said="repository 'shop/gone' does not"
    ),
    "a missing tag that reads like a number": Case(
        deployment(f"{WEB}:1.1"), status=8, said="tag '1.1' does not exist"
    ),
    "a look-alike host": Case(
        deployment(f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com.evil.example/shop/web:v1"),
        status=7,
    ),
    "an image outside ECR": Case(deployment("nginx:1.27"), said='not pinned: "nginx:1.27"'),
    "requireDigests and an image outside ECR": Case(
        deployment("nginx:1.27"),
        config="images: {requireDigests: true}\n",
        status=7,
        said="requireDigests",
    ),
    "an image field tagpin.yaml names": Case(
        "apiVersion: example.com/v1\nkind: Job\nmetadata: {name: job}\n"
        f"spec: {{runner: {{image: '{WEB}:v1'}}}}\n",
        config="images:\n  paths: [{kind: Job, path: spec.runner.image}]\n",
    ),
    "a bad image-updater key": Case(
        deployment(f"{WEB}:v1"),
        flags=("--image-updater", "image-list=web=" + WEB, "--image-updater", "web.allow-tag=x"),
        status=3,
        said="allow-tag",
    ),
    "branch tags asked of a lock alone": Case(
        deployment(f"{WEB}:v1"),
        flags=(
            "--image-updater",
            "image-list=web=" + WEB,
            "--image-updater",
            "web.allow-tags=regexp:^pr-",
        ),
        env={"TAGPIN_LOCK": "strict"},
        lock=lock(f"{WEB}:v1"),
        status=8,
        said="TAGPIN_LOCK=use",
    ),
    "a lock lacking a tag, strict": Case(
        deployment(f"{WEB}:v1") + "---\n" + deployment(f"{WEB}:v2", "worker"),
        env={"TAGPIN_LOCK": "strict"},
        lock=lock(f"{WEB}:v1"),
        status=11,
        said=f"{WEB}:v2",
        fix=(
            "run `tagpin lock` in the app directory and commit tagpin.lock",
            "add it to tagpin.lock, or set TAGPIN_LOCK=use to ask ECR for the tags it lacks",
        ),
    ),
    "a lock answering first": Case(deployment(f"{WEB}:v1"), lock=lock(f"{WEB}:v1")),
    "a key given twice": Case(
        deployment(f"{WEB}:v1").replace(
            "kind: Deployment\n", "kind: Deployment\nkind: Deployment\n"
        ),
        said="given twice",
    ),
    "a block scalar at the very end": Case(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm}\ndata:\n  text: |\n    a",
        said="line break",
    ),
    "an object without a kind": Case(
        "apiVersion: v1\nmetadata: {name: cm}\n", status=6, said="templates/objects.yaml"
    ),
    "YAML that does not parse": Case("a: [\n", status=6, said="templates/objects.yaml"),
    "a misspelt setting": Case(deployment(f"{WEB}:v1"), env={"TAGPIN_CAHCE": "off"}, said="CAHCE"),
    "a bad setting": Case(deployment(f"{WEB}:v1"), env={"TAGPIN_CACHE": "sometimes"}, status=3),
}


@pytest.fixture
def pushed(moto_ecr: MotoEcr) -> Iterator[MotoEcr]:
    moto_ecr.push("shop/web", "v1")
    moto_ecr.push("shop/web", "pr-1")
    yield moto_ecr


@pytest.mark.parametrize("name", CASES)
def test_pin_prints_what_render_prints_for_the_same_objects(
    name: str, pushed: MotoEcr, tmp_path: Path
) -> None:
    case = CASES[name]
    files = {"tagpin.yaml": case.config, "templates/objects.yaml": case.objects}
    if case.lock is not None:
        files["tagpin.lock"] = case.lock
    app = build_tree(tmp_path / "app", files)
    (tmp_path / "file").write_text("not a directory\n")
    places = {"{file}": str(tmp_path / "file"), "{unreachable}": unreachable()}
    env = {**os.environ, "TAGPIN_APP_LOOKUP": "off"}
    for key, value in case.env.items():
        env[key] = places.get(value, value)

    rendered = tagpin("render", ".", "-n", "shop", *case.flags, env=env, cwd=app)
    lock_flag = ("--lock", "tagpin.lock") if case.lock is not None else ()
    pinned = tagpin(
        "pin",
        "templates/objects.yaml",
        "-n",
        "shop",
        "--config",
        "tagpin.yaml",
        *lock_flag,
        *case.flags,
        env=env,
        cwd=app,
    )

    assert rendered.returncode == case.status, rendered.stderr
    assert case.said in rendered.stderr
    assert case.fix[0] in rendered.stderr and case.fix[1] in pinned.stderr
    assert (pinned.returncode, pinned.stderr.replace(case.fix[1], case.fix[0]), pinned.stdout) == (
        rendered.returncode,
        rendered.stderr,
        rendered.stdout,
    )
    assert (rendered.stdout == "") == (case.status != 0)  # nothing on stdout on failure
