"""A repository as it was at one git revision, written to a temporary directory.

`tagpin diff` renders an app at two commits without touching the working tree, the index,
HEAD or any ref: files come from `git ls-tree` and `git cat-file`, which only read.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from cmp.errors import ConfigError, SourceError

GIT_TIMEOUT = 120  # seconds; reading a large repository's tree is the slow part
SYMLINK_MODE = "120000"
SUBMODULE_MODE = "160000"


@dataclass(frozen=True)
class Revision:
    """A revision as the user wrote it and the commit it names."""

    name: str
    commit: str

    @property
    def label(self) -> str:
        return self.name if self.name == self.commit else f"{self.name} ({self.commit[:7]})"


def git(repo: Path, args: Sequence[str], *, stdin: bytes | None = None) -> bytes:
    """Run git in `repo`, return its stdout; a failure is a ConfigError naming the command."""
    argv = ["git", "-C", str(repo), *args]
    try:
        done = subprocess.run(
            argv, input=stdin, capture_output=True, timeout=GIT_TIMEOUT, check=False, env=_git_env()
        )
    except FileNotFoundError:
        raise ConfigError("git is not installed or not on PATH; tagpin diff needs it") from None
    except subprocess.TimeoutExpired:
        raise ConfigError(f"`git {' '.join(args)}` took longer than {GIT_TIMEOUT} s") from None
    if done.returncode != 0:
        message = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise ConfigError(
            f"`git {' '.join(args)}` failed in {repo}: "
            f"{message[-1] if message else f'exit {done.returncode}'}"
        )
    return done.stdout


def _git_env() -> dict[str, str]:
    # Never prompt (a credential helper or pager would hang CI); keep messages in English.
    return {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_PAGER": "cat", "LC_ALL": "C"}


def repository_root(path: Path) -> Path:
    """The top of the git working tree holding `path`."""
    try:
        out = git(path, ["rev-parse", "--show-toplevel"])
    except ConfigError:
        raise ConfigError(
            f"{path} is not inside a git repository; tagpin diff renders revisions from git history"
        ) from None
    return Path(out.decode().strip())


def resolve_revision(repo: Path, name: str) -> Revision:
    """The commit `name` (a branch, tag, SHA or expression like HEAD~1) points to."""
    try:
        out = git(
            repo, ["rev-parse", "--verify", "--quiet", "--end-of-options", f"{name}^{{commit}}"]
        )
    except ConfigError:
        raise ConfigError(
            f"{name!r} is not a commit in {repo}; fetch it first (in CI: "
            "actions/checkout with fetch-depth: 0)"
        ) from None
    return Revision(name=name, commit=out.decode().strip())


@contextmanager
def checkout(repo: Path, revision: Revision) -> Iterator[Path]:
    """A temporary directory holding every file of `revision`; removed on exit."""
    with tempfile.TemporaryDirectory(prefix=f"tagpin-{revision.commit[:7]}-") as temporary:
        root = Path(temporary)
        write_tree(repo, revision.commit, root)
        yield root


def write_tree(repo: Path, commit: str, destination: Path) -> None:
    """Write the files of `commit` under `destination`: regular files with their executable
    bit, symlinks as symlinks; submodules are skipped (their commits are not here).

    The tree comes from anyone who can push, and a malformed one (a symlink `zz` and a
    directory `zz/` in the same tree) would otherwise lead a write through the link. So every
    file is created relative to its parent directory's descriptor, never following a link,
    never over an existing entry; the tree is checked first so such a tree ends in one error."""
    listing = git(repo, ["ls-tree", "-r", "-z", "--full-tree", commit])
    entries: list[tuple[str, str, PurePosixPath]] = []
    for record in listing.split(b"\0"):
        if not record:
            continue
        meta, _, raw_path = record.partition(b"\t")
        mode, kind, object_id = meta.decode().split(" ")
        if mode == SUBMODULE_MODE or kind != "blob":
            continue
        entries.append((mode, object_id, _safe_path(os.fsdecode(raw_path))))
    if not entries:
        return
    _check_tree(commit, [relative for _, _, relative in entries])
    blobs = _read_blobs(repo, [object_id for _, object_id, _ in entries])
    with _DirectoryWalker(destination) as walker:
        for mode, object_id, relative in entries:
            try:
                parent = walker.open(relative.parts[:-1])
                _create(parent, relative.name, mode, blobs[object_id])
            except OSError as exc:
                raise _malformed(commit, relative, exc.strerror or str(exc)) from None


def _check_tree(commit: str, paths: Sequence[PurePosixPath]) -> None:
    """Refuse a tree in which one path is listed twice, or is both a file and a directory."""
    files: set[PurePosixPath] = set()
    for path in paths:
        if path in files:
            raise _malformed(commit, path, "listed twice")
        files.add(path)
    for path in paths:
        for parent in path.parents:
            if parent in files:
                raise _malformed(
                    commit, parent, f"both a file or symlink and the directory holding {path}"
                )


def _malformed(commit: str, path: PurePosixPath, why: str) -> SourceError:
    return SourceError(
        f"{path}: malformed git tree at {commit[:7]} ({why}); `git fsck` reports "
        "such trees; refusing to write it"
    )


def _create(parent: int, name: str, mode: str, content: bytes) -> None:
    if mode == SYMLINK_MODE:
        os.symlink(os.fsdecode(content), name, dir_fd=parent)  # EEXIST if anything is there
        return
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    descriptor = os.open(name, flags, 0o644, dir_fd=parent)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(content)
        if mode == "100755":
            os.fchmod(handle.fileno(), 0o755)


class _DirectoryWalker:
    """Opens directories under a root one component at a time (O_NOFOLLOW), creating them as
    needed, keeping the descriptors of the last path open: ls-tree lists a directory's files
    together, so most entries reuse them."""

    def __init__(self, root: Path) -> None:
        self._root = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        self._open: list[tuple[str, int]] = []

    def __enter__(self) -> _DirectoryWalker:
        return self

    def __exit__(self, *_exc: object) -> None:
        self._close_from(0)
        os.close(self._root)

    def _close_from(self, depth: int) -> None:
        for _, descriptor in reversed(self._open[depth:]):
            os.close(descriptor)
        del self._open[depth:]

    def open(self, parts: Sequence[str]) -> int:
        depth = 0
        while (
            depth < len(self._open) and depth < len(parts) and self._open[depth][0] == parts[depth]
        ):
            depth += 1
        self._close_from(depth)
        for name in parts[depth:]:
            parent = self._open[-1][1] if self._open else self._root
            with contextlib.suppress(FileExistsError):
                os.mkdir(name, 0o755, dir_fd=parent)
            # ENOTDIR/ELOOP when `name` is a file or a link: nothing is followed.
            flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
            self._open.append((name, os.open(name, flags, dir_fd=parent)))
        return self._open[-1][1] if self._open else self._root


def _safe_path(path: str) -> PurePosixPath:
    # git refuses such paths itself; checked again because the tree comes from anyone who can push.
    relative = PurePosixPath(path)
    if relative.is_absolute() or any(part in ("..", ".git") for part in relative.parts):
        raise SourceError(f"{path}: refusing a repository path outside the checkout")
    return relative


def _read_blobs(repo: Path, object_ids: Sequence[str]) -> dict[str, bytes]:
    """Every blob in one `git cat-file --batch` call (one process however many files)."""
    unique = list(dict.fromkeys(object_ids))
    out = git(repo, ["cat-file", "--batch"], stdin="".join(f"{o}\n" for o in unique).encode())
    blobs: dict[str, bytes] = {}
    position = 0
    for object_id in unique:
        header_end = out.index(b"\n", position)
        name, kind, size = out[position:header_end].decode().split(" ")
        if name != object_id or kind != "blob":
            raise SourceError(f"git cat-file returned {kind} {name} for blob {object_id}")
        start = header_end + 1
        blobs[object_id] = out[start : start + int(size)]
        position = start + int(size) + 1  # each object ends with a newline
    return blobs
