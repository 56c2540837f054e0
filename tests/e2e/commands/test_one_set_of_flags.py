"""`render`, `diff` and `lock` take the same render flags and mean the same by them; without
--app-name an app renders with its directory's name; offline, in temporary git repositories."""

from __future__ import annotations

import json
import re
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

REPO = Path(__file__).resolve().parents[3]


def run(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [TAGPIN, *args],
        cwd=cwd,
        env={**offline_env(cwd.parent), **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def readme_app(root: Path) -> Repo:
    """The README's ten-line app, built from the README's own text, committed."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("## A ten-line app", 1)[1].split("\n## ", 1)[0]
    listing, template = re.findall(r"```(?:text|yaml)\n(.*?)```", section, re.DOTALL)
    files = {}
    for line in listing.splitlines():
        path, _, content = line.partition(" ")
        files[path] = content.strip() + "\n"
    files["apps/web/templates/deployment.yaml.j2"] = template
    root.mkdir()
    repo = Repo(root)
    repo.commit(files, "the README's app")
    return repo


def test_the_readmes_app_renders_locks_and_diffs_without_an_app_name(tmp_path: Path) -> None:
    repo = readme_app(tmp_path / "repo")
    digests = str(REPO / "examples" / "web" / "tagpin.lock")  # holds shop/web:v1.4.2

    rendered = run(repo.root, "render", "apps/web", "--digests", digests)
    assert rendered.returncode == 0, rendered.stderr
    assert "metadata:\n  name: web\n" in rendered.stdout
    assert "app: web\n" in rendered.stdout

    locked = run(repo.root, "lock", "apps/web", "--digests", digests)
    assert locked.returncode == 0, locked.stderr
    assert "shop/web:v1.4.2" in (repo.root / "apps/web/tagpin.lock").read_text()

    repo.write({"apps/web/values.yaml": (repo.root / "apps/web/values.yaml").read_text()})
    diffed = run(repo.root, "diff", "apps/web", "--digests", digests)
    assert diffed.returncode == 0, diffed.stderr  # the lock is new, the render the same


def test_the_directory_name_is_for_templates_only_never_a_live_application(
    tmp_path: Path,
) -> None:
    repo = readme_app(tmp_path / "repo")
    done = run(repo.root, "render", "apps/web", TAGPIN_APP_LOOKUP="on")
    assert done.returncode == ExitStatus.CONFIG and done.stdout == ""
    assert "no app name is known: pass --app-name" in done.stderr


TARGETED = {
    **{k: v for k, v in APP_FILES.items() if not k.endswith("tagpin.lock")},
    "apps/web/templates/deployment.yaml.j2": (
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n"
        "  annotations: {source: '{{ app.source.repo_url }}'}\nspec:\n  template:\n"
        "    spec:\n      containers:\n      - name: web\n"
        f"        image: {HOST}/shop/web:{{{{ app.source.target_revision or values.tag }}}}\n"
    ),
}


def test_lock_takes_target_revision_repo_url_and_digests(tmp_path: Path) -> None:
    (tmp_path / "repo").mkdir()
    repo = Repo(tmp_path / "repo")
    repo.commit(TARGETED, "image tag from the target revision")
    (tmp_path / "all.lock").write_text(lock_text(v1=DIGEST_V1, v2=DIGEST_V2))
    args = ["--digests", str(tmp_path / "all.lock"), "--lock-file", str(tmp_path / "web.lock")]
    done = run(
        repo.root,
        "lock",
        "apps/web",
        "--target-revision",
        "v2",
        "--repo-url",
        "https://git.example.com/shop.git",
        "--refresh",
        *args,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "web.lock").read_text().endswith(lock_text(v2=DIGEST_V2).split("---\n")[1])
    assert not (repo.root / "apps/web/tagpin.lock").exists()


def test_diff_takes_output_repo_url_target_revision_and_refresh(tmp_path: Path) -> None:
    (tmp_path / "repo").mkdir()
    repo = Repo(tmp_path / "repo")
    repo.commit(TARGETED, "image tag from the target revision")
    (tmp_path / "all.lock").write_text(lock_text(v1=DIGEST_V1, v2=DIGEST_V2))
    repo.write({"apps/web/values.yaml": "tag: v2\n"})
    common = ["diff", "apps/web", "--digests", str(tmp_path / "all.lock"), "--refresh"]

    as_json = run(
        repo.root, *common, "-o", "json", "--repo-url", "https://git.example.com/x", "-U", "99"
    )
    assert as_json.returncode == ExitStatus.DIFFERENT, as_json.stderr
    changed = [line for line in as_json.stdout.splitlines()[2:] if line[:1] in "+-"]
    assert changed == [
        f'-              "image": "{HOST}/shop/web:v1@{DIGEST_V1}",',
        f'+              "image": "{HOST}/shop/web:v2@{DIGEST_V2}",',
    ]
    assert '"source": "https://git.example.com/x"' in as_json.stdout

    pinned = run(repo.root, *common, "--target-revision", "v1")
    assert (pinned.returncode, pinned.stdout) == (0, ""), pinned.stderr


def test_lock_refuses_an_output_format_and_writes_no_file_named_after_it(
    tmp_path: Path,
) -> None:
    (tmp_path / "repo").mkdir()
    repo = Repo(tmp_path / "repo")
    repo.commit(APP_FILES, "web")
    done = run(repo.root, "lock", "apps/web", "-o", "json")
    assert done.returncode == ExitStatus.USAGE and done.stdout == ""
    assert "use --lock-file FILE" in done.stderr
    assert not (repo.root / "json").exists()


def test_lock_checks_the_image_updater_keys_a_render_would_refuse(tmp_path: Path) -> None:
    (tmp_path / "repo").mkdir()
    repo = Repo(tmp_path / "repo")
    repo.commit(APP_FILES, "web")
    typo = run(repo.root, "lock", "apps/web", "--image-updater", "web.allow-tag=^pr-")
    assert typo.returncode == ExitStatus.CONFIG, typo.stderr
    assert "did you mean 'web.allow-tags'?" in typo.stderr
    done = run(
        repo.root,
        "lock",
        "apps/web",
        "--image-updater",
        f"image-list=web={HOST}/shop/web",
        "--image-updater",
        "web.allow-tags=regexp:^pr-",
    )
    assert done.returncode == 0, done.stderr
    assert "tagpin: --image-updater is not locked" in done.stderr
    entries = json.dumps((repo.root / "apps/web/tagpin.lock").read_text())
    assert "shop/web:v1" in entries
