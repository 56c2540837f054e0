"""`tagpin branch set|clear|status` as people and CI run it: the real `tagpin` process, the
Kubernetes API stand-in (tests/support/fake_kube.py) reached through a kubeconfig, and moto's ECR.
Each refusal is checked to leave the Application exactly as it was, and a set is followed to
what the render then deploys."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from cmp.errors import ExitStatus
from tests.e2e.test_webhook_attacks import deeply_nested_application
from tests.support.cli import tagpin
from tests.support.fake_kube import FakeKube
from tests.support.moto_ecr import ACCOUNT, REGION

WEB = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/shop/web"
API = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/shop/api"
PREFIX = "argocd-image-updater.argoproj.io/"
RECORD = "tagpin.dev/branch-deploy"
REFRESH = "argocd.argoproj.io/refresh"
TAGPIN = str(Path(sys.executable).with_name("tagpin"))
PRODUCTION = {f"{PREFIX}image-list": f"web={WEB}", f"{PREFIX}web.update-strategy": "semver"}


@pytest.fixture
def env(tmp_path: Path, moto_ecr, kubeconfig: Path) -> dict[str, str]:
    return dict(
        os.environ,
        KUBECONFIG=str(kubeconfig),
        ARGOCD_NAMESPACE="argocd",
        TAGPIN_CACHE_DIR=str(tmp_path / "cache"),
        USER="alice",
    )


@pytest.fixture
def tags(moto_ecr) -> dict[str, str]:
    return {
        tag: moto_ecr.push("shop/web", tag)
        for tag in (
            "v1.2.0",
            "v1.3.0",
            "pr-41-1700000300-aaa",
            "pr-42-1700000100-bbb",
            "pr-42-1700000200-ccc",
        )
    }


def patches(fake: FakeKube) -> list[dict[str, Any]]:
    return [r.json() for r in fake.requests if r.method == "PATCH"]


def record(fake: FakeKube, name: str = "web") -> dict[str, Any]:
    return json.loads(fake.annotations("argocd", name)[RECORD])


def render_image(tmp_path: Path, env: dict[str, str]) -> str:
    """What the sidecar renders for app `web` now: the image Argo CD would apply."""
    app = tmp_path / "app"
    (app / "templates").mkdir(parents=True, exist_ok=True)
    (app / "tagpin.yaml").write_text("{}\n")
    (app / "templates" / "web.yaml").write_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  template:\n"
        f"    spec:\n      containers:\n      - name: web\n        image: {WEB}:v1.2.0\n"
    )
    done = tagpin("render", str(app), "--app-name", "web", env=env)
    assert done.returncode == 0, done.stderr
    return next(
        line.split("image:")[1].strip() for line in done.stdout.splitlines() if "image:" in line
    )


def test_set_status_clear_round_trip(tmp_path: Path, env, fake_kube: FakeKube, tags) -> None:
    fake_kube.add("argocd", "web", PRODUCTION)
    assert render_image(tmp_path, env) == f"{WEB}:v1.3.0@{tags['v1.3.0']}"

    done = tagpin("branch", "set", "web", "--allow-tags", "^pr-42-", env=env)
    assert done.returncode == 0, done.stderr
    chosen = f"{WEB}:pr-42-1700000200-ccc@{tags['pr-42-1700000200-ccc']}"
    assert done.stdout == f"Application argocd/web alias web: {chosen}\n"
    annotations = fake_kube.annotations("argocd", "web")
    assert annotations[f"{PREFIX}web.allow-tags"] == "regexp:^pr-42-"
    assert annotations[f"{PREFIX}web.update-strategy"] == "alphabetical"
    assert annotations[REFRESH] == "hard"
    written = record(fake_kube)["web"]
    assert written["by"] == "alice" and written["at"].endswith("Z")
    assert written["tag"] == "pr-42-1700000200-ccc"
    assert written["previous"] == {"allow-tags": None, "update-strategy": "semver"}
    # One patch, guarded by the resourceVersion that was read.
    [patch] = patches(fake_kube)
    assert patch["metadata"]["resourceVersion"] == "1"
    # What tagpin said will deploy is what the sidecar now renders.
    assert render_image(tmp_path, env) == chosen

    done = tagpin("branch", "clear", "web", env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"Application argocd/web alias web: {WEB}:v1.3.0@{tags['v1.3.0']}\n"
    assert {k: v for k, v in fake_kube.annotations("argocd", "web").items()} == {
        **PRODUCTION,
        REFRESH: "hard",
    }
    assert render_image(tmp_path, env) == f"{WEB}:v1.3.0@{tags['v1.3.0']}"


def test_default_strategy_is_alphabetical_and_the_render_deploys_what_set_printed(
    tmp_path: Path, env, fake_kube: FakeKube, tags
) -> None:
    fake_kube.add("argocd", "web", {f"{PREFIX}image-list": f"web={WEB}"})
    done = tagpin("branch", "set", "web", "--allow-tags", "^pr-42-", "--by", "ci:pr-42", env=env)
    assert done.returncode == 0, done.stderr
    chosen = f"{WEB}:pr-42-1700000200-ccc@{tags['pr-42-1700000200-ccc']}"
    assert done.stdout.endswith(f": {chosen}\n")
    assert fake_kube.annotations("argocd", "web")[f"{PREFIX}web.update-strategy"] == "alphabetical"
    assert render_image(tmp_path, env) == chosen

    status = tagpin("branch", "status", "web", "--output", "json", env=env)
    assert status.returncode == 0, status.stderr
    [row] = json.loads(status.stdout)
    assert row["app"] == "argocd/web" and row["alias"] == "web"
    assert row["allowTags"] == "regexp:^pr-42-" and row["strategy"] == "alphabetical"
    assert row["source"] == "annotation"
    assert (row["tag"], row["digest"]) == ("pr-42-1700000200-ccc", tags["pr-42-1700000200-ccc"])
    assert row["setBy"] == "ci:pr-42" and row["setAt"].endswith("Z")

    # A second set (a new push to another PR) keeps what the first one replaced.
    done = tagpin("branch", "set", "web", "--allow-tags", "regexp:^pr-41-", env=env)
    assert done.returncode == 0, done.stderr
    assert record(fake_kube)["web"]["previous"] == {"allow-tags": None, "update-strategy": None}

    done = tagpin("branch", "clear", "web", env=env)
    assert done.returncode == 0, done.stderr
    annotations = fake_kube.annotations("argocd", "web")
    assert f"{PREFIX}web.allow-tags" not in annotations
    assert f"{PREFIX}web.update-strategy" not in annotations
    assert RECORD not in annotations and annotations[REFRESH] == "hard"
    # Back to the image-list's default strategy, semver: the highest release.
    assert done.stdout.endswith(f": {WEB}:v1.3.0@{tags['v1.3.0']}\n")
    assert render_image(tmp_path, env) == f"{WEB}:v1.3.0@{tags['v1.3.0']}"


def test_clear_restores_the_previous_rule(env, fake_kube: FakeKube, tags) -> None:
    before = {**PRODUCTION, f"{PREFIX}web.allow-tags": "regexp:^v1\\.2\\."}
    fake_kube.add("argocd", "web", before)
    assert tagpin("branch", "set", "web", "--allow-tags", "^pr-41-", env=env).returncode == 0
    done = tagpin("branch", "clear", "web", env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.endswith(f": {WEB}:v1.2.0@{tags['v1.2.0']}\n")
    annotations = fake_kube.annotations("argocd", "web")
    assert {k: v for k, v in annotations.items() if k != REFRESH} == before


def test_clear_with_another_rule_in_force_leaves_it(env, fake_kube: FakeKube, tags) -> None:
    fake_kube.add("argocd", "web", PRODUCTION)
    assert tagpin("branch", "set", "web", "--allow-tags", "^pr-42-", env=env).returncode == 0
    before = copy.deepcopy(fake_kube.applications[("argocd", "web")])
    done = tagpin("branch", "clear", "web", "--if-allow-tags", "^pr-41-", env=env)
    assert done.returncode == 0, done.stderr
    assert "deploys 'regexp:^pr-42-' (set by alice), not 'regexp:^pr-41-'; left as it is" in (
        done.stderr
    )
    assert fake_kube.applications[("argocd", "web")] == before

    nothing = tagpin("branch", "clear", "web", "--alias", "api", env=env)
    assert nothing.returncode == 0 and "nothing to clear" in nothing.stderr


def test_image_adds_an_image_list_entry(env, fake_kube: FakeKube, tags, moto_ecr) -> None:
    api_digest = moto_ecr.push("shop/api", "pr-42-1-x")
    fake_kube.add("argocd", "web", PRODUCTION)
    done = tagpin("branch", "set", "web", "--image", API, "--allow-tags", "^pr-42-", env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"Application argocd/web alias api: {API}:pr-42-1-x@{api_digest}\n"
    annotations = fake_kube.annotations("argocd", "web")
    assert annotations[f"{PREFIX}image-list"] == f"web={WEB}, api={API}"
    done = tagpin("branch", "clear", "web", env=env)
    assert done.returncode == 0, done.stderr
    assert fake_kube.annotations("argocd", "web")[f"{PREFIX}image-list"] == f"web={WEB}"
    assert "git's tag deploys" in done.stdout


@pytest.mark.parametrize(
    ("annotations", "args", "status", "message"),
    [
        (
            PRODUCTION,
            ["--allow-tags", "^pr-99-"],
            ExitStatus.RESOLVE,
            f"no tag of {WEB} satisfies alias web, strategy alphabetical, allow-tags "
            "regexp:^pr-99-, from annotation (of 5 tags); nothing written",
        ),
        (
            PRODUCTION,
            ["--allow-tags", "^pr-42-", "--strategy", "semver"],
            ExitStatus.RESOLVE,
            "strategy semver, allow-tags regexp:^pr-42-",
        ),
        (
            PRODUCTION,
            ["--allow-tags", "^pr-(42"],
            ExitStatus.CONFIG,
            "allow-tags 'regexp:^pr-(42' is not a valid regular expression",
        ),
        (
            PRODUCTION,
            ["--allow-tags", "^pr-42-(?=x)"],
            ExitStatus.CONFIG,
            "allow-tags 'regexp:^pr-42-(?=x)' is not a valid regular expression (invalid perl "
            "operator: (?=",
        ),
        (
            PRODUCTION,
            ["--allow-tags", "^pr-42-", "--alias", "wbe"],
            ExitStatus.CONFIG,
            "image-list defines no alias 'wbe' (aliases: web); pass --image REPOSITORY",
        ),
        (
            {},
            ["--allow-tags", "^pr-42-"],
            ExitStatus.CONFIG,
            "has no aliased entry in its argocd-image-updater.argoproj.io/image-list annotation: "
            "pass --image REPOSITORY",
        ),
        (
            {f"{PREFIX}image-list": f"web={WEB}, api={API}"},
            ["--allow-tags", "^pr-42-"],
            ExitStatus.CONFIG,
            "has several aliases (api, web): pass --alias NAME",
        ),
        (
            {**PRODUCTION, f"{PREFIX}web.allow-tag": "x"},
            ["--allow-tags", "^pr-42-"],
            ExitStatus.CONFIG,
            f"did you mean '{PREFIX}web.allow-tags'?",
        ),
        (
            {**PRODUCTION, f"{PREFIX}wbe.allow-tags": "x"},
            ["--allow-tags", "^pr-42-"],
            ExitStatus.CONFIG,
            "names the alias 'wbe', which the image-list does not define",
        ),
        (
            {f"{PREFIX}image-list": "web=nginx"},
            ["--allow-tags", "^pr-42-"],
            ExitStatus.CONFIG,
            "not in a private Amazon ECR registry",
        ),
    ],
)
def test_each_refusal_leaves_the_application_unchanged(
    env,
    fake_kube: FakeKube,
    tags,
    annotations: dict[str, str],
    args: list[str],
    status: int,
    message: str,
) -> None:
    fake_kube.add("argocd", "web", annotations)
    before = copy.deepcopy(fake_kube.applications[("argocd", "web")])
    done = tagpin("branch", "set", "web", *args, env=env)
    assert done.returncode == status, done.stderr
    assert message in done.stderr
    assert done.stdout == ""
    assert patches(fake_kube) == []
    assert fake_kube.applications[("argocd", "web")] == before


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (f"{API}, evil={WEB}", "is not one image repository: it contains ' ' ',' '='"),
        (f"{API},evil={WEB}", "is not one image repository: it contains ',' '='"),
        (f"api={API}", "is not one image repository: it contains '='"),
        (f"{API}\tx", "is not one image repository: it contains '\\t'"),
        (f"{API}@sha256:{'ab' * 32}", f"names a digest: give the repository ({API})"),
        ("Shop/API", "uppercase"),
    ],
)
def test_an_image_that_is_not_one_repository_is_refused(
    env, fake_kube: FakeKube, tags, image: str, message: str
) -> None:
    """The attack: `--image "<repo>, api=<other repo>"` (a bot passing user input) wrote an
    extra alias into image-list, and `--image <repo>@sha256:…` was accepted."""
    fake_kube.add("argocd", "web", PRODUCTION)
    done = tagpin("branch", "set", "web", "--image", image, "--allow-tags", "^pr-42-", env=env)
    assert (done.returncode, done.stdout) == (ExitStatus.CONFIG, ""), done.stderr
    assert message in done.stderr
    assert patches(fake_kube) == []


def test_unreadable_branch_records_and_applications_cost_only_their_own_team(
    env, fake_kube: FakeKube, tags
) -> None:
    """The attack: a `tagpin.dev/branch-deploy` record of nested JSON, or with a non-string
    `previous`, made `status` and `clear` exit 70 on that app, and the namespace-wide status
    fail for every team; so did one Application nested too deeply to decode."""
    fake_kube.add("argocd", "shop", PRODUCTION)
    fake_kube.add("argocd", "deep", {**PRODUCTION, RECORD: "[" * 5000 + "]" * 5000})
    previous = {"web": {"by": "mallory", "previous": {"allow-tags": ["regexp:."]}}}
    fake_kube.add("argocd", "odd", {**PRODUCTION, RECORD: json.dumps(previous)})
    fake_kube.add_raw("argocd", "evil", deeply_nested_application("evil"))

    done = tagpin("branch", "status", "-o", "json", env=env)
    assert done.returncode == 0, done.stderr
    rows = {row["app"]: row for row in json.loads(done.stdout)}
    assert sorted(rows) == ["argocd/deep", "argocd/odd", "argocd/shop"]
    assert rows["argocd/shop"]["tag"] == "v1.3.0"
    assert "nested too deeply (more than 256 levels)" in rows["argocd/deep"]["error"]
    assert "previous of alias 'web' is not a map" in rows["argocd/odd"]["error"]
    assert "Application argocd/evil cannot be read (nested too deeply" in done.stderr

    text = tagpin("branch", "status", "odd", env=env)
    assert text.returncode == 0, text.stderr
    assert text.stdout.startswith("argocd/odd: cannot show its branch deploys: Application ")
    for app in ("deep", "odd"):
        clear = tagpin("branch", "clear", app, env=env)
        assert (clear.returncode, clear.stdout) == (ExitStatus.CONFIG, ""), clear.stderr
        assert f"annotation {RECORD} is not the JSON object tagpin writes" in clear.stderr
    assert patches(fake_kube) == []
    evil = tagpin("branch", "status", "evil", env=env)
    assert (evil.returncode, evil.stdout) == (ExitStatus.APP_LOOKUP, ""), evil.stderr
    assert "nested too deeply (more than 256 levels)" in evil.stderr


def test_a_rule_in_the_git_parameter_is_refused(env, fake_kube: FakeKube, tags) -> None:
    fake_kube.add("argocd", "web", PRODUCTION)
    fake_kube.applications[("argocd", "web")]["spec"]["source"]["plugin"]["parameters"] = [
        {"name": "image-updater", "map": {"web.allow-tags": "regexp:^v"}}
    ]
    done = tagpin("branch", "set", "web", "--allow-tags", "^pr-42-", env=env)
    assert done.returncode == ExitStatus.CONFIG
    assert "the image-updater parameter in git sets web.allow-tags" in done.stderr
    assert patches(fake_kube) == []

    status = tagpin("branch", "status", "web", "-o", "json", env=env)
    assert json.loads(status.stdout)[0]["source"] == "parameter"


def test_a_missing_application_is_named_and_exits_as_an_unreadable_application(
    env, fake_kube: FakeKube
) -> None:
    """docs/branch-deploys.md: exit 10, the Application could not be read (not exit 3, a bad
    configuration)."""
    for command in (("set", "nope", "--allow-tags", "^pr-42-"), ("status", "nope")):
        done = tagpin("branch", *command, env=env)
        assert done.returncode == ExitStatus.APP_LOOKUP, done.stderr
        assert "Application argocd/nope does not exist" in done.stderr
        assert done.stdout == ""


@pytest.mark.parametrize(
    ("annotations", "refusal"),
    [
        pytest.param(
            {**PRODUCTION, f"{PREFIX}web.allow-tag": "regexp:^pr-42-"},
            f"annotation '{PREFIX}web.allow-tag' is not an Argo CD Image Updater key; "
            f"did you mean '{PREFIX}web.allow-tags'?",
            id="misspelt-option",
        ),
        pytest.param(
            {f"{PREFIX}image-lists": f"web={WEB}"},
            f"annotation '{PREFIX}image-lists' is not an Argo CD Image Updater key; "
            f"did you mean '{PREFIX}image-list'?",
            id="misspelt-image-list",
        ),
    ],
)
def test_status_shows_the_error_a_render_would_fail_with(
    tmp_path: Path, env, fake_kube: FakeKube, tags, annotations: dict[str, str], refusal: str
) -> None:
    fake_kube.add("argocd", "web", annotations)
    app = tmp_path / "app"
    (app / "templates").mkdir(parents=True)
    (app / "tagpin.yaml").write_text("{}\n")
    (app / "templates" / "web.yaml").write_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  template:\n"
        f"    spec:\n      containers:\n      - name: web\n        image: {WEB}:v1.2.0\n"
    )
    rendered = tagpin("render", str(app), "--app-name", "web", env=env)
    assert rendered.returncode == ExitStatus.CONFIG and refusal in rendered.stderr

    done = tagpin("branch", "status", "web", "-o", "json", env=env)
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert rows and all(row["error"] == f"a render refuses it: {refusal}" for row in rows)
    assert all(row["tag"] is None for row in rows)
    text = tagpin("branch", "status", "web", env=env)
    assert f"a render refuses it: {refusal}\n" in text.stdout
    assert "allow-tags any" not in text.stdout


def test_two_concurrent_sets_one_wins_the_other_gets_a_conflict(
    env, fake_kube: FakeKube, tags
) -> None:
    fake_kube.add("argocd", "web", PRODUCTION)
    both_read = threading.Barrier(2, timeout=60)
    seen = []

    def hold_first_two_reads(namespace: str, name: str) -> None:
        with fake_kube.lock:
            seen.append(name)
            first_two = len(seen) <= 2
        if first_two:
            both_read.wait()  # both have read resourceVersion 1 before either writes

    fake_kube.after_get.append(hold_first_two_reads)
    runs = [
        subprocess.Popen(
            [TAGPIN, "branch", "set", "web", "--allow-tags", rule, "--by", who],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rule, who in (("^pr-41-", "bob"), ("^pr-42-", "carol"))
    ]
    results = [(run.wait(timeout=120), *run.communicate()) for run in runs]
    codes = sorted(code for code, _, _ in results)
    assert codes == [ExitStatus.OK, ExitStatus.CONFLICT], results
    winner = next(i for i, (code, _, _) in enumerate(results) if code == 0)
    loser_err = results[1 - winner][2]
    winner_name, winner_rule = (("bob", "^pr-41-"), ("carol", "^pr-42-"))[winner]
    assert f"its branch deploy changed since it was read by {winner_name} at " in loser_err
    assert "nothing written" in loser_err and results[1 - winner][1] == ""
    annotations = fake_kube.annotations("argocd", "web")
    assert annotations[f"{PREFIX}web.allow-tags"] == f"regexp:{winner_rule}"
    assert list(record(fake_kube)) == ["web"] and record(fake_kube)["web"]["by"] == winner_name


def test_a_status_update_in_between_is_not_a_conflict(env, fake_kube: FakeKube, tags) -> None:
    fake_kube.add("argocd", "web", PRODUCTION)
    done_once: list[bool] = []

    def controller_writes_status(namespace: str, name: str) -> None:
        if not done_once:
            done_once.append(True)
            fake_kube.write(
                namespace, name, lambda app: app.update(status={"sync": {"status": "OutOfSync"}})
            )

    fake_kube.after_get.append(controller_writes_status)
    done = tagpin("branch", "set", "web", "--allow-tags", "^pr-42-", env=env)
    assert done.returncode == 0, done.stderr
    assert [p["metadata"]["resourceVersion"] for p in patches(fake_kube)] == ["1", "2"]
    assert fake_kube.annotations("argocd", "web")[f"{PREFIX}web.allow-tags"] == "regexp:^pr-42-"


# --- --wait ---------------------------------------------------------------------------------


def app_status(sync: str, health: str, images: list[str], message: str = "") -> dict[str, Any]:
    health_block = {"status": health, **({"message": message} if message else {})}
    return {"sync": {"status": sync}, "health": health_block, "summary": {"images": images}}


def test_wait_follows_the_app_until_the_digest_runs_synced_and_healthy(
    env, fake_kube: FakeKube, tags
) -> None:
    old = f"{WEB}:v1.3.0@{tags['v1.3.0']}"
    new = f"{WEB}:pr-42-1700000200-ccc@{tags['pr-42-1700000200-ccc']}"
    fake_kube.add("argocd", "web", PRODUCTION)
    fake_kube.script_status(
        "argocd",
        "web",
        [
            app_status("Synced", "Healthy", [old]),  # read by `set` itself
            app_status("OutOfSync", "Healthy", [old]),
            app_status("Synced", "Progressing", [new]),
            app_status("Synced", "Healthy", [new, "nginx:1.27"]),
        ],
    )
    done = tagpin(
        "branch", "set", "web", "--allow-tags", "^pr-42-", "--wait", "--interval", "0.05", env=env
    )
    assert done.returncode == 0, done.stderr
    progress = [line for line in done.stderr.splitlines() if line.startswith("argocd/web:")]
    assert [line.rsplit(" (", 1)[0] for line in progress] == [
        "argocd/web: sync OutOfSync, health Healthy, new image not running yet",
        "argocd/web: sync Synced, health Progressing, new image running",
        "argocd/web: sync Synced, health Healthy, new image running",
    ]
    assert done.stdout == f"Application argocd/web alias web: {new}\n"


def test_wait_fails_when_the_new_image_is_degraded(env, fake_kube: FakeKube, tags) -> None:
    new = f"{WEB}:pr-42-1700000200-ccc@{tags['pr-42-1700000200-ccc']}"
    fake_kube.add("argocd", "web", PRODUCTION)
    fake_kube.script_status(
        "argocd",
        "web",
        [
            app_status("Synced", "Degraded", [f"{WEB}:v1.3.0@{tags['v1.3.0']}"]),  # before: no fail
            app_status("Synced", "Degraded", [f"{WEB}:v1.3.0@{tags['v1.3.0']}"]),
            app_status(
                "Synced", "Degraded", [new], "Deployment web exceeded its progress deadline"
            ),
        ],
    )
    done = tagpin(
        "branch", "set", "web", "--allow-tags", "^pr-42-", "--wait", "--interval", "0.05", env=env
    )
    assert done.returncode == ExitStatus.NOT_DEPLOYED, done.stderr
    assert (
        f"Application argocd/web is Degraded running {tags['pr-42-1700000200-ccc']}: "
        "Deployment web exceeded its progress deadline"
    ) in done.stderr
    assert done.stdout.endswith(f": {new}\n")  # what was deployed is still said


def test_wait_times_out(env, fake_kube: FakeKube, tags) -> None:
    fake_kube.add("argocd", "web", PRODUCTION)
    fake_kube.script_status(
        "argocd", "web", [app_status("OutOfSync", "Healthy", [f"{WEB}:v1.3.0@{tags['v1.3.0']}"])]
    )
    done = tagpin(
        "branch",
        "set",
        "web",
        "--allow-tags",
        "^pr-42-",
        "--wait",
        "--timeout",
        "0.5",
        "--interval",
        "0.1",
        env=env,
    )
    assert done.returncode == ExitStatus.NOT_DEPLOYED, done.stderr
    assert "not Synced and Healthy with sha256:" in done.stderr
    assert (
        "after 0.5 s (last seen: sync OutOfSync, health Healthy, not running the new image)"
        in done.stderr
    )


# --- status ---------------------------------------------------------------------------------


def test_status_of_every_branch_app_in_the_namespace(env, fake_kube: FakeKube, tags) -> None:
    fake_kube.add(
        "argocd",
        "web",
        {f"{PREFIX}image-list": f"web={WEB}", f"{PREFIX}web.allow-tags": "regexp:^pr-404-"},
    )
    fake_kube.add("argocd", "shop", PRODUCTION)
    fake_kube.add("argocd", "plain")  # no image-list: not a branch app
    fake_kube.applications[("argocd", "shop")]["status"] = app_status(
        "Synced", "Healthy", [f"{WEB}:v1.3.0@{tags['v1.3.0']}", "nginx:1.27"]
    )
    done = tagpin("branch", "status", "-o", "json", env=env)
    assert done.returncode == 0, done.stderr
    rows = {row["app"]: row for row in json.loads(done.stdout)}
    assert sorted(rows) == ["argocd/shop", "argocd/web"]
    assert rows["argocd/shop"]["tag"] == "v1.3.0"
    assert rows["argocd/shop"]["running"] == [f"{WEB}:v1.3.0@{tags['v1.3.0']}"]
    assert (rows["argocd/shop"]["sync"], rows["argocd/shop"]["health"]) == ("Synced", "Healthy")
    assert rows["argocd/web"]["tag"] is None and "no tag of" in rows["argocd/web"]["error"]

    text = tagpin("branch", "status", env=env)
    assert text.returncode == 0, text.stderr
    assert "argocd/shop web: allow-tags any, strategy semver (from annotation)\n" in text.stdout
    assert f"  selects: {WEB}:v1.3.0@{tags['v1.3.0']}\n" in text.stdout


class Terminal:
    """A stderr that says it is a terminal, keeping what was written."""

    def __init__(self) -> None:
        self.text = ""

    def isatty(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self.text += text
        return len(text)

    def flush(self) -> None:
        pass


def test_on_a_terminal_the_progress_line_is_rewritten_in_place() -> None:
    from cmp.argocd.branch import LiveApp
    from cmp.argocd.branch_wait import wait_for

    digest = "sha256:" + "a" * 64
    statuses = [
        app_status("OutOfSync", "Healthy", []),
        app_status("Synced", "Healthy", [f"{WEB}:pr-1@{digest}"]),
    ]

    class Api:
        def get_application(self, namespace: str, name: str) -> dict[str, Any]:
            return {
                "metadata": {"namespace": namespace, "name": name, "resourceVersion": "2"},
                "status": statuses.pop(0),
            }

    ticks = iter([0.0, 0.0, 5.0])
    terminal = Terminal()
    app = LiveApp("argocd", "web", "1", {}, {}, {})
    wait_for(
        Api(),  # type: ignore[arg-type]
        app,
        digest,
        timeout=60,
        interval=5,
        progress=terminal,  # type: ignore[arg-type]
        clock=lambda: next(ticks),
        sleep=lambda seconds: None,
    )
    assert terminal.text == (
        "\r\x1b[Kargocd/web: sync OutOfSync, health Healthy, new image not running yet (0 s)"
        "\r\x1b[Kargocd/web: sync Synced, health Healthy, new image running (5 s)\n"
    )


def test_credentials_from_an_exec_plugin_as_the_render_uses_them(
    tmp_path: Path, fake_kube: FakeKube, moto_ecr, tags
) -> None:
    from tests.support.fake_kube import write_kubeconfig
    from tests.unit.argocd.test_kube import exec_user

    user = exec_user(tmp_path, "client.authentication.k8s.io/v1", {"token": fake_kube.token})
    config = write_kubeconfig(tmp_path / "kubeconfig", fake_kube.url, user)
    env = dict(os.environ, KUBECONFIG=str(config), TAGPIN_CACHE_DIR=str(tmp_path / "cache"))
    fake_kube.add("argocd", "web", PRODUCTION)
    done = tagpin("branch", "set", "web", "--allow-tags", "^pr-42-", env=env)
    assert done.returncode == 0, done.stderr
    assert len(patches(fake_kube)) == 1
    calls = (tmp_path / "calls.jsonl").read_text().splitlines()
    assert len(calls) == 1  # one credential for the read and the write


def test_a_write_that_keeps_losing_to_status_updates_gives_up_with_a_conflict() -> None:
    from cmp.argocd.branch import PATCH_ATTEMPTS, Change, LiveApp, apply
    from cmp.argocd.kube import KubeApiError
    from cmp.errors import ConflictError

    document = {
        "metadata": {
            "namespace": "argocd",
            "name": "web",
            "resourceVersion": "7",
            "annotations": dict(PRODUCTION),
        }
    }

    class Busy:
        patched = 0

        def get_application(self, namespace: str, name: str) -> dict[str, Any]:
            return document

        def patch_application(self, namespace: str, name: str, patch: dict[str, Any]) -> Any:
            self.patched += 1
            raise KubeApiError("409 Conflict", status=409)

    api = Busy()
    change = Change(LiveApp.from_object(document), "web", {REFRESH: "hard"}, None)
    with pytest.raises(ConflictError, match="kept changing"):
        apply(api, change)  # type: ignore[arg-type]
    assert api.patched == PATCH_ATTEMPTS
