"""`tagpin diff` across real commits in a temporary git repository: exit 0 when equal, 1 with
the changed lines when different, an error's own code otherwise. Digests come from each
revision's tagpin.lock, so no test needs AWS."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cmp.errors import ExitStatus
from cmp.source.gitrev import checkout, resolve_revision
from tests.support.cli import tagpin

HOST = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
DIGEST_V1 = "sha256:" + "1" * 64
DIGEST_V2 = "sha256:" + "2" * 64
TAGPIN = str(Path(sys.executable).with_name("tagpin"))


def lock_text(**tags: str) -> str:
    images = "".join(
        f"- digest: {digest}\n  image: {HOST}/shop/web:{tag}\n"
        for tag, digest in sorted(tags.items())
    )
    return f"---\napiVersion: tagpin.dev/v1\nkind: ImageLock\nimages:\n{images}"


APP_FILES = {
    "apps/web/tagpin.yaml": "{}\n",
    "apps/web/values.yaml": "tag: v1\nreplicas: 2\n",
    "apps/web/tagpin.lock": lock_text(v1=DIGEST_V1),
    "apps/web/templates/deployment.yaml.j2": (
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n"
        "  replicas: {{ values.replicas }}\n  template:\n    spec:\n      containers:\n"
        f"      - name: web\n        image: {HOST}/shop/web:{{{{ values.tag }}}}\n"
    ),
}


class Repo:
    """A throwaway git repository; commits with a fixed identity and no user configuration."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "AWS_"))}
        self.env.update(
            GIT_CONFIG_GLOBAL=os.devnull,
            GIT_CONFIG_NOSYSTEM="1",
            GIT_AUTHOR_NAME="t",
            GIT_AUTHOR_EMAIL="t@example.com",
            GIT_COMMITTER_NAME="t",
            GIT_COMMITTER_EMAIL="t@example.com",
        )
        self.git("init", "-q", "-b", "main")

    def git(self, *args: str) -> str:
        done = subprocess.run(
            ["git", *args], cwd=self.root, env=self.env, capture_output=True, text=True, check=True
        )
        return done.stdout

    def write(self, files: dict[str, str]) -> None:
        for name, text in files.items():
            path = self.root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)

    def commit(self, files: dict[str, str], message: str) -> str:
        self.write(files)
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)
        return self.git("rev-parse", "HEAD").strip()


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    (tmp_path / "repo").mkdir()
    repository = Repo(tmp_path / "repo")
    repository.commit(APP_FILES, "web at v1")
    return repository


def offline_env(tmp_path: Path) -> dict[str, str]:
    """No AWS configuration at all, and a strict lock so nothing could ever ask ECR."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ARGOCD_", "TAGPIN_"))}
    env.update(
        AWS_CONFIG_FILE=str(tmp_path / "nowhere"),
        TAGPIN_LOCK="strict",
        TAGPIN_CACHE_DIR=str(tmp_path / "cache"),
        TAGPIN_APP_LOOKUP="off",
    )
    return env


def in_repo(repo: Repo, *args: str) -> subprocess.CompletedProcess[str]:
    return tagpin(*args, cwd=repo.root, env=offline_env(repo.root.parent))


def bump(repo: Repo) -> str:
    return repo.commit(
        {
            "apps/web/values.yaml": "tag: v2\nreplicas: 2\n",
            "apps/web/tagpin.lock": lock_text(v2=DIGEST_V2),
        },
        "web to v2",
    )


def test_equal_revisions_exit_0_and_print_nothing(repo: Repo) -> None:
    repo.commit({"README.md": "not part of the app\n"}, "docs only")
    done = in_repo(repo, "diff", "apps/web", "--base", "HEAD~1", "--head", "HEAD")
    assert (done.returncode, done.stdout) == (0, ""), done.stderr


def test_a_bump_exits_1_and_shows_the_image_line_with_both_digests(repo: Repo) -> None:
    bump(repo)
    done = in_repo(repo, "diff", "apps/web", "--base", "HEAD~1", "--head", "HEAD")
    assert done.returncode == ExitStatus.DIFFERENT, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("--- a/apps/web (HEAD~1 (")
    assert lines[1].startswith("+++ b/apps/web (HEAD (")
    changed = [line for line in lines[2:] if line[:1] in "+-"]
    assert changed == [
        f"-      - image: {HOST}/shop/web:v1@{DIGEST_V1}",
        f"+      - image: {HOST}/shop/web:v2@{DIGEST_V2}",
    ]
    assert "changed Deployment.apps web" in done.stderr


def test_a_new_digest_for_the_same_tag_is_visible(repo: Repo) -> None:
    repo.commit({"apps/web/tagpin.lock": lock_text(v1=DIGEST_V2)}, "v1 was rebuilt")
    done = in_repo(repo, "diff", "apps/web", "--base", "HEAD~1", "--head", "HEAD")
    assert done.returncode == ExitStatus.DIFFERENT
    assert f"+      - image: {HOST}/shop/web:v1@{DIGEST_V2}" in done.stdout.splitlines()


def test_reverting_the_commit_restores_the_exact_old_render(repo: Repo) -> None:
    before = in_repo(repo, "render", "apps/web").stdout
    bump(repo)
    assert DIGEST_V2 in in_repo(repo, "render", "apps/web").stdout
    repo.git("revert", "--no-edit", "HEAD")
    reverted = in_repo(repo, "render", "apps/web")
    assert reverted.returncode == 0, reverted.stderr
    assert reverted.stdout == before and f"shop/web:v1@{DIGEST_V1}" in before
    done = in_repo(repo, "diff", "apps/web", "--base", "HEAD~2", "--head", "HEAD")
    assert (done.returncode, done.stdout) == (0, "")


def test_head_defaults_to_the_working_tree_and_base_to_HEAD(repo: Repo) -> None:
    repo.write({"apps/web/values.yaml": "tag: v1\nreplicas: 3\n"})  # not committed
    done = in_repo(repo, "diff", "apps/web")
    assert done.returncode == ExitStatus.DIFFERENT, done.stderr
    assert "+++ b/apps/web (working tree)" in done.stdout
    assert "-  replicas: 2\n+  replicas: 3\n" in done.stdout
    committed_only = in_repo(repo, "diff", "apps/web", "--head", "HEAD")
    assert (committed_only.returncode, committed_only.stdout) == (0, "")


def test_an_app_added_since_base_is_all_additions(repo: Repo) -> None:
    repo.commit(
        {name.replace("apps/web", "apps/api"): text for name, text in APP_FILES.items()}, "add api"
    )
    done = in_repo(repo, "diff", "apps/api", "--base", "HEAD~1", "--head", "HEAD")
    assert done.returncode == ExitStatus.DIFFERENT, done.stderr
    body = done.stdout.splitlines()[3:]
    assert body and all(line.startswith("+") for line in body)
    assert "no such app at HEAD~1" in done.stderr


@pytest.mark.parametrize(
    ("change", "args", "status", "message"),
    [
        pytest.param(
            {"apps/web/templates/deployment.yaml.j2": "{{ values.nope }}\n"},
            ("--base", "HEAD~1", "--head", "HEAD"),
            ExitStatus.TEMPLATE,
            "at HEAD (",
            id="template-error-at-head",
        ),
        pytest.param(
            {"apps/web/values.yaml": "tag: v9\nreplicas: 2\n"},
            ("--base", "HEAD~1", "--head", "HEAD"),
            ExitStatus.LOCK,
            f"{HOST}/shop/web:v9: not in tagpin.lock",
            id="tag-missing-from-strict-lock",
        ),
        pytest.param(
            {},
            ("--base", "no-such-branch"),
            ExitStatus.CONFIG,
            "'no-such-branch' is not a commit",
            id="unknown-revision",
        ),
        pytest.param(
            {},
            ("--base", "HEAD", "--head", "HEAD", "apps/nothing"),
            ExitStatus.CONFIG,
            "apps/nothing: no such app at HEAD",
            id="no-app-on-either-side",
        ),
    ],
)
def test_errors_exit_with_their_code_and_print_nothing(
    repo: Repo, change: dict[str, str], args: tuple[str, ...], status: ExitStatus, message: str
) -> None:
    if change:
        repo.commit(change, "break something")
    app = [] if any(a.startswith("apps/") for a in args) else ["apps/web"]
    done = in_repo(repo, "diff", *app, *args)
    assert done.returncode == status, done.stderr
    assert done.stdout == ""
    assert message in done.stderr


def test_outside_a_git_repository_is_a_config_error(tmp_path: Path) -> None:
    app = tmp_path / "plain" / "app"
    app.mkdir(parents=True)
    (app / "tagpin.yaml").write_text("{}\n")
    done = tagpin("diff", app, env=offline_env(tmp_path), cwd=tmp_path)
    assert done.returncode == ExitStatus.CONFIG
    assert "not inside a git repository" in done.stderr


def test_diff_leaves_git_state_and_working_tree_alone(repo: Repo) -> None:
    bump(repo)
    repo.write({"apps/web/values.yaml": "tag: v2\nreplicas: 5\n"})
    state = [
        repo.git("status", "--porcelain"),
        repo.git("rev-parse", "HEAD"),
        repo.git("stash", "list"),
        repo.git("worktree", "list"),
    ]
    assert in_repo(repo, "diff", "apps/web", "--base", "HEAD~1").returncode == 1
    assert [
        repo.git("status", "--porcelain"),
        repo.git("rev-parse", "HEAD"),
        repo.git("stash", "list"),
        repo.git("worktree", "list"),
    ] == state


def test_checkout_writes_files_modes_and_symlinks_despite_export_ignore(repo: Repo) -> None:
    repo.write({".gitattributes": "apps/web/values.yaml export-ignore\n", "bin/run": "#!/bin/sh\n"})
    (repo.root / "bin" / "run").chmod(0o755)
    os.symlink("../apps/web/values.yaml", repo.root / "bin" / "values-link")
    repo.git("add", "-A")
    repo.git("commit", "-q", "-m", "attributes, modes, links")
    with checkout(repo.root, resolve_revision(repo.root, "HEAD")) as root:
        assert (root / "apps/web/values.yaml").read_text() == "tag: v1\nreplicas: 2\n"
        assert os.access(root / "bin/run", os.X_OK)
        assert not os.access(root / "apps/web/tagpin.yaml", os.X_OK)
        assert os.readlink(root / "bin/values-link") == "../apps/web/values.yaml"
        assert not (root / ".git").exists()
    assert not root.exists()


def test_the_example_workflow_writes_the_diff_comment(repo: Repo) -> None:
    """The shell step of examples/ci/github-actions-diff.yaml, run against the temporary repo."""
    import yaml

    workflow = yaml.safe_load(
        (
            Path(__file__).resolve().parents[3] / "examples" / "ci" / "github-actions-diff.yaml"
        ).read_text()
    )
    job = workflow["jobs"]["diff"]
    step = next(s for s in job["steps"] if s.get("id") == "diff")
    base = repo.git("rev-parse", "HEAD").strip()
    head = bump(repo)
    env = offline_env(repo.root.parent)
    env.update(
        job["env"],
        BASE_SHA=base,
        HEAD_SHA=head,
        PATH=f"{Path(TAGPIN).parent}{os.pathsep}{env['PATH']}",
    )
    done = subprocess.run(
        ["bash", "-e", "-c", step["run"]],
        cwd=repo.root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    body = (repo.root / "body.md").read_text()
    assert "<code>apps/web</code> changes" in body
    assert f"+      - image: {HOST}/shop/web:v2@{DIGEST_V2}" in body.splitlines()
