"""Attacks by someone who can push to one app's repository: files written or read through
links (`tagpin diff`, tagpin.lock), oversized inputs, and inputs that used to end in
"a bug in tagpin" (exit 70). Each test is named after its attack; docs/reliability.md's threat
table lists them. Nothing outside the repository may be written, read or shown."""

from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path

import pytest

from cmp.errors import ExitStatus, LockError
from cmp.images import lockfile as lock
from cmp.testing import render_app
from tests.support.apptree import build_tree, cm, render_text, run_cli
from tests.support.hostile import (
    APP,
    LOCK,
    LOCKED_APP,
    OFFLINE,
    Sidecar,
    blob,
    committed_repo,
    git,
    raw_tree,
)
from tests.support.moto_ecr import ACCOUNT, REGION, MotoEcr

SECRET = "outside-secret-0xC0FFEE"

# --- D: `tagpin diff` writes only inside its temporary tree --------------------------------


def test_diff_of_a_tree_with_a_symlink_and_a_directory_of_one_name_writes_nothing_outside(
    tmp_path: Path,
) -> None:
    """A commit holding a symlink `zz -> <outside>` and a directory `zz/` (a duplicate entry
    `git fsck` flags) must not make `tagpin diff --head` write through the link."""
    outside = tmp_path / "outside"
    outside.mkdir()
    repo = committed_repo(tmp_path / "repo", LOCKED_APP)
    head_tree = git(repo, "rev-parse", "HEAD^{tree}").decode().strip()
    listing = git(repo, "ls-tree", head_tree).decode().splitlines()
    kept = [
        (line.split()[0].lstrip("0") or "0", line.split("\t")[1], line.split()[2])
        for line in listing
    ]
    inner = raw_tree(repo, [("100644", "pwned.txt", blob(repo, "written through a link\n"))])
    evil = raw_tree(
        repo, [*kept, ("120000", "zz", blob(repo, str(outside))), ("40000", "zz", inner)]
    )
    commit = git(repo, "commit-tree", evil, "-p", "HEAD", "-m", "evil").decode().strip()

    done = run_cli(["diff", "apps/web", "--head", commit], cwd=repo, env=OFFLINE)

    assert list(outside.iterdir()) == []
    assert (done.returncode, done.stdout) == (ExitStatus.SOURCE, b""), done.stderr.decode()
    assert "zz: malformed git tree at" in done.stderr.decode()


def test_diff_of_a_tree_listing_one_file_twice_is_a_clear_error(tmp_path: Path) -> None:
    repo = committed_repo(tmp_path / "repo", LOCKED_APP)
    listing = git(repo, "ls-tree", "HEAD").decode().splitlines()
    kept = [(line.split()[0], line.split("\t")[1], line.split()[2]) for line in listing]
    first, second = blob(repo, "one\n"), blob(repo, "two\n")
    evil = raw_tree(repo, [*kept, ("100644", "twice", first), ("100644", "twice", second)])
    commit = git(repo, "commit-tree", evil, "-p", "HEAD", "-m", "evil").decode().strip()

    done = run_cli(["diff", "apps/web", "--head", commit], cwd=repo, env=OFFLINE)

    assert (done.returncode, done.stdout) == (ExitStatus.SOURCE, b"")
    assert "twice: malformed git tree at" in done.stderr.decode()
    assert "listed twice" in done.stderr.decode()


# --- E: tagpin.lock obeys the repository's rules ---------------------------------------------


@pytest.fixture
def linked_lock(tmp_path: Path) -> Path:
    """An app whose tagpin.lock is a symlink to a file outside the repository."""
    (tmp_path / "outside.lock").write_text(f"images: [{SECRET}]\n")
    build_tree(tmp_path / "repo", APP)
    (tmp_path / "repo/apps/web/tagpin.lock").symlink_to(tmp_path / "outside.lock")
    return committed_repo(tmp_path / "repo", {})


@pytest.mark.parametrize(
    "command", [["render", "apps/web"], ["lock", "apps/web"], ["diff", "apps/web"]]
)
def test_a_lock_symlinked_outside_the_repository_is_refused_unread(
    linked_lock: Path, command: list[str]
) -> None:
    done = run_cli(command, cwd=linked_lock, env=OFFLINE)
    assert (done.returncode, done.stdout) == (ExitStatus.LOCK, b""), done.stderr.decode()
    assert "apps/web/tagpin.lock: resolves outside the repository" in done.stderr.decode()
    assert SECRET not in done.stderr.decode()


def test_a_lock_symlinked_outside_the_repository_is_refused_by_cmp_testing(
    linked_lock: Path,
) -> None:
    with pytest.raises(Exception) as caught:
        render_app(linked_lock / "apps/web", repo_root=linked_lock)
    assert "resolves outside the repository" in str(caught.value)
    assert SECRET not in str(caught.value)


def test_a_lock_over_the_file_size_limit_is_refused_before_it_is_read(
    tmp_path: Path, cmp_sidecar: Sidecar, render_mode: dict[str, str]
) -> None:
    repo = committed_repo(
        tmp_path / "repo", {**LOCKED_APP, "apps/web/tagpin.lock": LOCK + "#" * 4096 + "\n"}
    )
    result = cmp_sidecar(repo, {**render_mode, "TAGPIN_MAX_FILE_BYTES": "4096"})
    assert result.exit_code == ExitStatus.LOCK and result.stdout == ""
    assert "tagpin.lock: larger than 4096 bytes (TAGPIN_MAX_FILE_BYTES)" in str(result.error)
    assert cmp_sidecar(repo, render_mode).ok  # the same lock under the default limit


def test_tagpin_lock_does_not_write_through_a_planted_temporary_file_link(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The app directory is the attacker's: a link planted where the temporary file will be
    created is refused (O_CREAT|O_EXCL|O_NOFOLLOW), the victim is untouched. The random part
    of the name is fixed here so the link sits exactly there."""
    victim = tmp_path / "victim"
    victim.write_text("untouched\n")
    app = build_tree(tmp_path / "app", {"tagpin.lock": LOCK})
    monkeypatch.setattr(secrets, "token_hex", lambda _n: "fixed")  # what cmp/atomicfile.py uses
    (app / f".tagpin.lock.{os.getpid()}.fixed.tmp").symlink_to(victim)
    entries = lock.parse_lock(LOCK, "tagpin.lock")
    with pytest.raises(LockError, match="tagpin.lock: cannot write: File exists"):
        lock.write_lock(app / "tagpin.lock", entries)
    assert victim.read_text() == "untouched\n"
    assert (app / "tagpin.lock").read_text() == LOCK  # the old lock stays


def test_tagpin_lock_replaces_a_lock_that_is_a_link_instead_of_writing_through_it(
    tmp_path: Path,
) -> None:
    victim = tmp_path / "victim"
    victim.write_text("untouched\n")
    repo = committed_repo(tmp_path / "repo", APP)
    (repo / "apps/web/tagpin.lock").symlink_to("../../../victim")
    done = run_cli(["lock", "apps/web"], cwd=repo, env=OFFLINE)
    assert done.returncode == ExitStatus.LOCK  # refused to read it: outside the repository
    assert victim.read_text() == "untouched\n"


# --- F: inputs that used to end in "a bug in tagpin" -----------------------------------------


@pytest.mark.parametrize(
    "key", ["image" + "[0]" * 30_000, ".".join(["a"] * 3_000)], ids=["30000-indexes", "3000-deep"]
)
def test_a_huge_dotted_values_key_is_a_quick_config_error(
    tmp_path: Path, cmp_sidecar: Sidecar, render_mode: dict[str, str], key: str
) -> None:
    repo = committed_repo(tmp_path / "repo", LOCKED_APP)
    result = cmp_sidecar(
        repo, render_mode, plugin={"parameters": [{"name": "values", "map": {key: "1"}}]}
    )
    assert result.exit_code == ExitStatus.CONFIG and result.stdout == ""
    assert "nests deeper than 100 levels" in str(result.error)
    assert len(str(result.error)) < 1_000  # the key is shortened, not echoed whole


def test_deeply_nested_argocd_app_parameters_json_is_a_quick_config_error(tmp_path: Path) -> None:
    repo = committed_repo(tmp_path / "repo", LOCKED_APP)
    deep = '[{"name": "values", "map": ' + "[" * 50_000 + "]" * 50_000 + "}]"
    done = run_cli(
        ["generate"],
        cwd=repo / "apps/web",
        env=OFFLINE | {"ARGOCD_APP_PARAMETERS": deep, "ARGOCD_APP_NAME": "web"},
    )
    assert (done.returncode, done.stdout) == (ExitStatus.CONFIG, b""), done.stderr.decode()
    assert b"ARGOCD_APP_PARAMETERS is not valid JSON: line 1: nested too deeply" in done.stderr


@pytest.mark.parametrize(
    "expression",
    [
        "'{0[items]}'.format(values)",
        "'{0!r}'.format(values.items)",
        "'{v}'.format_map({'v': values.keys})",
        "'%s' % values.items",
        "'%s' | format(values.items)",
        "'at ' ~ values.items",
        "values.items | string",
        "values.items | upper",
        "[values.items] | join(',')",
        "values.items",
        "kube",
        "values.list | map('string')",
        "values.items | to_yaml",
    ],
)
def test_formatting_a_sandboxed_object_shows_no_python_repr(
    tmp_path: Path, cmp_sidecar: Sidecar, render_mode: dict[str, str], expression: str
) -> None:
    """A bound method or object printed as text would show its heap address: a leak of the
    sidecar's memory layout, and output that differs on every run."""
    repo = committed_repo(
        tmp_path / "repo",
        {
            **LOCKED_APP,
            "apps/web/values.yaml": "list: [1, 2]\n",
            "apps/web/templates/leak.yaml.j2": cm("leak", v="{{ " + expression + " }}"),
        },
    )
    result = cmp_sidecar(repo, render_mode)
    assert result.exit_code == ExitStatus.TEMPLATE and result.stdout == "", result.error
    assert "templates/leak.yaml.j2:6: " in str(result.error)
    assert "0x" not in str(result.error)
    if "to_yaml" not in expression:  # an error of the filter itself, naming the object
        assert "not allowed in a template: cannot turn a" in str(result.error)


def test_printing_data_through_the_same_paths_still_works(
    tmp_path: Path, cmp_sidecar: Sidecar
) -> None:
    repo = committed_repo(
        tmp_path / "repo",
        {
            **LOCKED_APP,
            "apps/web/values.yaml": "name: web\nlist: [1, 2]\n",
            "apps/web/templates/ok.yaml.j2": cm(
                "ok",
                a="{{ '{0[name]}-{1}'.format(values, 2) | quote }}",
                b="{{ ('%s-%d' % (values.name, 3)) | quote }}",
                c="{{ ('x' ~ values.list) | quote }}",
                d="{{ values.list | map('string') | join(',') | quote }}",
                e="{{ '{name}'.format_map(values) | upper | quote }}",
            ),
        },
    )
    result = cmp_sidecar(repo, {})
    assert result.ok, result.error
    (leak,) = [o for o in result.objects if o["kind"] == "ConfigMap"]
    assert leak["data"] == {"a": "web-2", "b": "web-3", "c": "x[1, 2]", "d": "1,2", "e": "WEB"}


# --- F: caches on the sidecar's disk stay bounded --------------------------------------------


def test_renders_asking_for_hundreds_of_missing_repositories_leave_a_bounded_set_of_lock_files(
    tmp_path: Path, cmp_sidecar: Sidecar, moto_ecr: MotoEcr
) -> None:
    """Each repository name a render asks ECR about used to leave a lock file behind, real or
    not: 300 per render of this app, and more with every push of new names."""
    host = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"
    aws = {k: v for k, v in os.environ.items() if k.startswith("AWS_")}
    for round_ in range(2):
        images = "".join(
            f"      - {{name: c{i}, image: {host}/missing-{round_}/r{i}:v1}}\n" for i in range(300)
        )
        repo = committed_repo(
            tmp_path / f"repo-{round_}",
            {
                "apps/web/tagpin.yaml": "{}\n",
                "apps/web/templates/pod.yaml": (
                    "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n"
                    f"spec:\n  containers:\n{images}"
                ),
            },
        )
        result = cmp_sidecar(repo, {**aws, "TAGPIN_LOCK": "off"})
        assert result.exit_code == ExitStatus.RESOLVE, result.error
        assert f"{host}/missing-{round_}/r299:v1" in str(result.error)
    files = [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]
    assert 0 < len(files) <= 256  # LOCK_STRIPES, however many names were asked
    assert not [p for p in files if "missing" in str(p)]


def test_compiled_templates_are_evicted_oldest_first(tmp_path: Path) -> None:
    """Every changed template adds a compiled file to the sidecar's cache directory."""
    from cmp.source import cachedir

    directory = tmp_path / "jinja"
    directory.mkdir()
    for number in range(12):
        entry = directory / f"__jinja2_{number:02d}.cache"
        entry.write_bytes(b"x" * 100)
        os.utime(entry, (1_000_000 + number, 1_000_000 + number))
    (directory / "unrelated").write_bytes(b"kept")
    assert cachedir.trim(directory, ".cache", max_files=12, max_bytes=10_000) == 0
    assert cachedir.trim(directory, ".cache", max_files=8, max_bytes=10_000) == 6  # down to 6
    assert sorted(p.name for p in directory.iterdir()) == [
        *(f"__jinja2_{n:02d}.cache" for n in range(6, 12)),
        "unrelated",
    ]
    assert cachedir.trim(directory, ".cache", max_files=100, max_bytes=400) == 3  # bytes too
    assert len(list(directory.glob("*.cache"))) == 3


def test_a_sidecar_rendering_ever_new_templates_keeps_a_bounded_template_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In-process renders with the bound lowered to 10. Compiled files are keyed by template
    path, so each render of a newly named template (another app, a renamed file) adds one."""
    from cmp.source import cachedir

    monkeypatch.setattr(cachedir, "MAX_COMPILED_TEMPLATES", 10)
    cache = tmp_path / "cache"
    app = build_tree(tmp_path / "app", {"tagpin.yaml": "{}\n"})
    for number in range(30):
        shutil.rmtree(app / "templates", ignore_errors=True)
        build_tree(app, {f"templates/cm-{number}.yaml.j2": cm(f"cm-{number}", n=str(number))})
        assert f"cm-{number}" in render_text(app, settings_env={"TAGPIN_CACHE_DIR": str(cache)})
        compiled = list(cache.rglob("__jinja2_*.cache"))
        assert 1 <= len(compiled) <= 10
