"""Branch deploys end to end: tagpin reads Image Updater annotations from the live Application
(a Kubernetes API stand-in on 127.0.0.1, reached through a kubeconfig file) and from the
`image-updater` parameter, lists the repository's tags in moto's ECR, and pins the chosen tag."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cmp.errors import ExitStatus
from cmp.imageupdater.plan import OVERRIDE_ANNOTATION
from tests.support.cli import tagpin
from tests.support.moto_ecr import ACCOUNT, REGION
from tests.support.push_fleet import manifest

HOST = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"
WEB = f"{HOST}/shop/web"
PREFIX = "argocd-image-updater.argoproj.io/"
# The branch deploy of pull request 42: its newest sortable tag.
PR_42_NEWEST = {
    f"{PREFIX}image-list": f"web={WEB}",
    f"{PREFIX}web.allow-tags": "regexp:^pr-42-",
    f"{PREFIX}web.update-strategy": "alphabetical",
}


@pytest.fixture
def app(tmp_path: Path) -> Path:
    root = tmp_path / "app"
    (root / "templates").mkdir(parents=True)
    (root / "tagpin.yaml").write_text("{}\n")
    (root / "values.yaml").write_text(f"tag: main\nsidecar: {WEB}:main\n")
    (root / "templates" / "web.yaml.j2").write_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  template:\n"
        "    spec:\n      containers:\n"
        f"      - name: web\n        image: {WEB}:{{{{ values.tag }}}}\n"
        "      - name: sidecar\n        image: {{ values.sidecar }}\n"
        "      - name: proxy\n        image: nginx:1.27\n"
    )
    return root


@pytest.fixture
def env(tmp_path: Path, moto_ecr, kubeconfig: Path) -> dict[str, str]:
    return dict(
        os.environ,
        KUBECONFIG=str(kubeconfig),
        ARGOCD_NAMESPACE="argocd",
        TAGPIN_CACHE_DIR=str(tmp_path / "cache"),
    )


@pytest.fixture
def branch_tags(moto_ecr) -> dict[str, str]:
    return {
        tag: moto_ecr.push("shop/web", tag, manifest(tag))
        for tag in (
            "main",
            "v1.2.0",
            "v1.3.0",
            "v2.0.0-rc.1",
            "pr-41-1700000300-aaa111",
            "pr-42-1700000100-bbb222",
            "pr-42-1700000200-ccc333",
        )
    }


def render(app: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return tagpin("render", app, "--app-name", "web", *args, env=env)


def images(output: str) -> list[str]:
    return [line.split("image:", 1)[1].strip() for line in output.splitlines() if "image:" in line]


def test_production_without_annotations_renders_what_git_says(
    app: Path, env, fake_kube, branch_tags
) -> None:
    fake_kube.add("argocd", "web")
    done = render(app, env)
    assert done.returncode == 0, done.stderr
    assert images(done.stdout) == [f"{WEB}:main@{branch_tags['main']}"] * 2 + ["nginx:1.27"]
    assert OVERRIDE_ANNOTATION not in done.stdout


def test_live_allow_tags_annotation_pins_the_branch_newest_tag(
    app: Path, env, fake_kube, branch_tags, moto_ecr
) -> None:
    fake_kube.add("argocd", "web", PR_42_NEWEST)
    moto_ecr.reset_calls()
    done = render(app, env)
    assert done.returncode == 0, done.stderr
    chosen = f"{WEB}:pr-42-1700000200-ccc333@{branch_tags['pr-42-1700000200-ccc333']}"
    assert images(done.stdout) == [chosen, chosen, "nginx:1.27"]
    # One listing of the repository serves both containers; no per-tag lookup is needed.
    assert sum(moto_ecr.counts().values()) == 1
    # Why the image changed is on the workload, and in the summary on stderr.
    assert f"{OVERRIDE_ANNOTATION}: |" in done.stdout
    assert (
        "alias web, strategy alphabetical, allow-tags regexp:^pr-42-, from annotation"
        in done.stdout
    )
    assert "override:" in done.stderr and "pr-42-1700000200-ccc333" in done.stderr
    assert [r.path for r in fake_kube.requests] == [
        "/apis/argoproj.io/v1alpha1/namespaces/argocd/applications/web"
    ]


def test_the_parameter_wins_over_the_live_annotation(
    app: Path, env, fake_kube, branch_tags
) -> None:
    fake_kube.add("argocd", "web", PR_42_NEWEST)
    done = render(app, env, "--image-updater", "web.allow-tags=regexp:^pr-41-")
    assert done.returncode == 0, done.stderr
    assert images(done.stdout)[0] == (
        f"{WEB}:pr-41-1700000300-aaa111@{branch_tags['pr-41-1700000300-aaa111']}"
    )
    assert "from parameter" in done.stdout


@pytest.mark.parametrize(
    "constraint, expected",
    [
        ("~1.2", "v1.2.0"),
        ("^1.2", "v1.3.0"),
        ("2.x-0", "v2.0.0-rc.1"),
        (">=1.2 <2", "v1.3.0"),
    ],
)
def test_semver_constraints_from_the_image_list(
    app: Path, env, fake_kube, branch_tags, constraint: str, expected: str
) -> None:
    fake_kube.add("argocd", "web", {f"{PREFIX}image-list": f"web={WEB}:{constraint}"})
    done = render(app, env)
    assert done.returncode == 0, done.stderr
    assert images(done.stdout)[0] == f"{WEB}:{expected}@{branch_tags[expected]}"


def test_digest_strategy_tracks_a_mutable_tag(app: Path, env, fake_kube, moto_ecr) -> None:
    moto_ecr.push("shop/web", "main", manifest("first build"))
    fake_kube.add(
        "argocd",
        "web",
        {f"{PREFIX}image-list": f"web={WEB}:main", f"{PREFIX}web.update-strategy": "digest"},
    )
    moved = moto_ecr.push("shop/web", "main", manifest("second build"))
    done = render(app, env, "--set", "tag=v0-in-git")
    assert done.returncode == 0, done.stderr
    assert images(done.stdout)[0] == f"{WEB}:main@{moved}"


def test_newest_build_orders_by_push_time_so_a_re_push_keeps_its_old_time(
    app: Path, env, fake_kube, moto_ecr
) -> None:
    """Documented caveat: ECR keeps an image's first push time when the same bytes get a new
    tag, so newest-build does not see a rebuilt revert as new; alphabetical on sortable tags
    does."""
    moto_ecr.push("shop/web", "pr-7-1-old", manifest("A"))
    time.sleep(1.1)  # moto stores push times in whole seconds
    newer = moto_ecr.push("shop/web", "pr-7-2-new", manifest("B"))
    rebuilt = moto_ecr.push("shop/web", "pr-7-3-revert", manifest("A"))
    base = {f"{PREFIX}image-list": f"web={WEB}", f"{PREFIX}web.allow-tags": "regexp:^pr-7-"}

    fake_kube.add("argocd", "web", {**base, f"{PREFIX}web.update-strategy": "newest-build"})
    done = render(app, env)
    assert done.returncode == 0, done.stderr
    assert images(done.stdout)[0] == f"{WEB}:pr-7-2-new@{newer}"

    fake_kube.add("argocd", "web", {**base, f"{PREFIX}web.update-strategy": "alphabetical"})
    done = render(app, env)
    assert done.returncode == 0, done.stderr
    assert images(done.stdout)[0] == f"{WEB}:pr-7-3-revert@{rebuilt}"


def test_no_matching_tag_is_an_error_never_a_fallback(
    app: Path, env, fake_kube, branch_tags
) -> None:
    fake_kube.add(
        "argocd",
        "web",
        {f"{PREFIX}image-list": f"web={WEB}", f"{PREFIX}web.allow-tags": "regexp:^pr-99-"},
    )
    done = render(app, env)
    assert done.returncode == ExitStatus.RESOLVE and done.stdout == ""
    assert f"{WEB}: no tag satisfies image-updater alias web" in done.stderr
    assert "allow-tags regexp:^pr-99-" in done.stderr
    assert "Deployment/web" in done.stderr


def test_invalid_allow_tags_matches_nothing_and_says_so(
    app: Path, env, fake_kube, branch_tags
) -> None:
    fake_kube.add(
        "argocd", "web", {f"{PREFIX}image-list": f"web={WEB}", f"{PREFIX}web.allow-tags": "^pr-42-"}
    )  # no regexp: prefix
    done = render(app, env)
    assert done.returncode == ExitStatus.RESOLVE and done.stdout == ""
    assert "no tag satisfies" in done.stderr


def test_missing_application_warns_under_auto_and_fails_when_on(
    app: Path, env, fake_kube, branch_tags
) -> None:
    done = render(app, env)
    assert done.returncode == 0, done.stderr
    assert "warning:" in done.stderr and "web" in done.stderr
    assert images(done.stdout)[0] == f"{WEB}:main@{branch_tags['main']}"

    done = render(app, dict(env, TAGPIN_APP_LOOKUP="on"))
    assert done.returncode == ExitStatus.APP_LOOKUP and done.stdout == ""
    assert "Application argocd/web does not exist" in done.stderr


def test_apps_in_any_namespace_are_looked_up_in_their_own_namespace(
    app: Path, env, fake_kube, branch_tags
) -> None:
    fake_kube.add(
        "team-a",
        "web",
        {
            f"{PREFIX}image-list": f"web={WEB}",
            f"{PREFIX}web.allow-tags": "regexp:^pr-41-",
            f"{PREFIX}web.update-strategy": "alphabetical",
        },
    )
    tagpin = str(Path(sys.executable).with_name("tagpin"))
    done = subprocess.run(
        [tagpin, "render", str(app), "--app-name", "team-a_web"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "pr-41-1700000300-aaa111" in images(done.stdout)[0]
    assert fake_kube.requests[-1].path.endswith("/namespaces/team-a/applications/web")
