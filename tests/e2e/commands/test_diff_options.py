"""`tagpin diff` takes render's --repo-root, --digests and --image-updater, and --debug works
after any subcommand; checked across real commits in a temporary git repository, offline."""

from __future__ import annotations

import subprocess
from pathlib import Path

from cmp.errors import ExitStatus
from tests.e2e.commands.test_diff import (
    APP_FILES,
    DIGEST_V1,
    DIGEST_V2,
    HOST,
    TAGPIN,
    Repo,
    lock_text,
    offline_env,
)


def run(repo: Repo, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [TAGPIN, *args],
        cwd=repo.root,
        env={**offline_env(repo.root.parent), **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_debug_after_the_subcommand_shows_the_traceback(tmp_path: Path) -> None:
    (tmp_path / "repo").mkdir()
    repo = Repo(tmp_path / "repo")
    repo.commit(
        {**APP_FILES, "apps/web/templates/deployment.yaml.j2": "{{ values.nope }}\n"}, "broken"
    )
    for args in (
        ["render", "apps/web", "--debug"],
        ["--debug", "render", "apps/web"],
        ["diff", "apps/web", "--debug"],
    ):
        done = run(repo, *args)
        assert done.returncode == ExitStatus.TEMPLATE, (args, done.stderr)
        assert "values.nope is not defined" in done.stderr
        assert "Traceback (most recent call last)" in done.stderr, args
    quiet = run(repo, "render", "apps/web")
    assert "Traceback" not in quiet.stderr


def test_repo_root_names_a_subdirectory_of_the_git_repository(tmp_path: Path) -> None:
    (tmp_path / "repo").mkdir()
    repo = Repo(tmp_path / "repo")
    files = {f"platform/{name}": text for name, text in APP_FILES.items()}
    files["platform/apps/web/templates/labels.yaml.j2"] = (
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: labels\n"
        "data:\n{% include 'lib/team.j2' %}"
    )
    files["platform/lib/team.j2"] = "  team: shop\n"
    repo.commit(files, "platform")
    repo.commit({"platform/lib/team.j2": "  team: checkout\n"}, "new team")

    args = ("diff", "platform/apps/web", "--base", "HEAD~1", "--head", "HEAD")
    without = run(repo, *args)
    assert without.returncode == ExitStatus.TEMPLATE, without.stderr  # lib/ is under platform/
    done = run(repo, *args, "--repo-root", "platform")
    assert done.returncode == ExitStatus.DIFFERENT, done.stderr
    assert "-  team: shop\n+  team: checkout\n" in done.stdout


def test_digests_and_image_updater_apply_to_both_sides(tmp_path: Path) -> None:
    (tmp_path / "repo").mkdir()
    repo = Repo(tmp_path / "repo")
    files = {k: v for k, v in APP_FILES.items() if not k.endswith("tagpin.lock")}
    repo.commit(files, "no lock in git")
    repo.commit({"apps/web/values.yaml": "tag: v1\nreplicas: 3\n"}, "scale")
    pr_digest = "sha256:" + "3" * 64
    digests = tmp_path / "digests.lock"
    digests.write_text(
        lock_text(v1=DIGEST_V1, v2=DIGEST_V2).replace(
            "images:\n", f"images:\n- digest: {pr_digest}\n  image: {HOST}/shop/web:pr-7-a\n"
        )
    )

    args = ("diff", "apps/web", "--base", "HEAD~1", "--head", "HEAD", "-U", "20")
    strict = run(repo, *args)
    assert strict.returncode == ExitStatus.LOCK, strict.stderr  # no lock: strict refuses

    offline = run(repo, *args, "--digests", str(digests))
    assert offline.returncode == ExitStatus.DIFFERENT, offline.stderr
    assert f"   - image: {HOST}/shop/web:v1@{DIGEST_V1}" in offline.stdout

    branch = run(
        repo,
        *args,
        "--digests",
        str(digests),
        "--image-updater",
        f"image-list=web={HOST}/shop/web",
        "--image-updater",
        "web.allow-tags=regexp:^pr-7-",
        "--image-updater",
        "web.update-strategy=alphabetical",
    )
    assert branch.returncode == ExitStatus.DIFFERENT, branch.stderr
    assert f"   - image: {HOST}/shop/web:pr-7-a@{pr_digest}" in branch.stdout
    assert "-  replicas: 2\n+  replicas: 3\n" in branch.stdout
