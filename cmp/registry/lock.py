"""The lock layer: a render answers from the app's tagpin.lock (or `--digests FILE`) first.

TAGPIN_LOCK says whether ECR fills the lock's gaps (use), checks it (verify) or is never asked
(strict); cmp.registry.build's `with_lock` puts the layer in front of the others. The file
itself, its entries written as image references, is read and written by cmp.images.lockfile;
this layer only needs each entry's repository, tag and digest.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from typing import TYPE_CHECKING, NamedTuple, Protocol

from cmp.errors import LockError, RegistryError
from cmp.registry.base import DeferredRegistry, Lookup, Registry, TagInfo
from cmp.registry.observe import SILENT, RegistryObserver
from cmp.settings import LOCK_FILE, LOCK_SETTING
from cmp.settings import LockMode as LockMode  # TAGPIN_LOCK's choices

if TYPE_CHECKING:
    from cmp.registry.names import EcrRepository

    class LockedDigest(Protocol):
        """One entry of a lock: the digest a tag of a repository is locked to."""

        @property
        def repository(self) -> EcrRepository: ...

        @property
        def tag(self) -> str: ...

        @property
        def digest(self) -> str: ...


APP_LOCK_FIX = f"run `tagpin lock` in the app directory and commit {LOCK_FILE}"


class Lock(NamedTuple):
    """A lock a render answers from: its entries, how messages name it, what TAGPIN_LOCK
    makes of it (`use`, `verify` or `strict`), and, for a tag it lacks when ECR is never
    asked, why not (`strict_reason`) and what to do (`fix`)."""

    entries: tuple[LockedDigest, ...]
    shown: str
    mode: LockMode
    strict_reason: str = f"{LOCK_SETTING}=strict never asks ECR"
    fix: str = APP_LOCK_FIX


class LockProblem(LockError, RegistryError):
    """A lock that cannot answer, or disagrees with ECR. A RegistryError too, so
    `describe_many` gathers every repository's problems into one report; exits as a LockError."""


class LockedRegistry:
    """`Registry` answering from a lock.

    Tags not in it go to `fallback` (ECR); with no fallback (strict) they are a LockProblem.
    With `verify`, ECR answers every tag and each locked digest must match ECR's.
    """

    def __init__(
        self,
        entries: Iterable[LockedDigest],
        fallback: Callable[[], Registry] | None,
        *,
        shown: str = LOCK_FILE,
        verify: bool = False,
        strict_reason: str = f"{LOCK_SETTING}=strict never asks ECR",
        fix: str = APP_LOCK_FIX,
        observer: RegistryObserver = SILENT,
    ) -> None:
        self._observer = observer
        self._table: dict[EcrRepository, dict[str, TagInfo]] = {}
        for entry in entries:
            tags = self._table.setdefault(entry.repository, {})
            tags[entry.tag] = TagInfo(entry.tag, entry.digest)
        if verify and fallback is None:
            raise ValueError("verifying a lock needs a registry to verify it against")
        # Built on first use, once, though repositories are asked from several threads.
        self._fallback = DeferredRegistry(fallback) if fallback is not None else None
        self._shown = shown
        self._verify = verify
        self._strict_reason = strict_reason
        self._fix = fix  # what to do about a tag missing from it, in the command's words

    def describe_cached(self, repo: EcrRepository, tags: Collection[str]) -> Lookup | None:
        """The lock's answer when it holds every tag (and is not being verified), else None."""
        locked = self._table.get(repo, {})
        if self._verify or any(tag not in locked for tag in tags):
            return None
        self._observer.answered("lock", "tags", "fresh")
        return Lookup(found={tag: locked[tag] for tag in tags})

    def prefetch(
        self, requests: Mapping[EcrRepository, Collection[str]]
    ) -> Collection[EcrRepository]:
        """The questions the lock leaves to its fallback (all of them when verifying) go on:
        they are asked of it next, so building it now costs nothing more."""
        inner = self._fallback
        if inner is None:
            return ()
        rest: dict[EcrRepository, list[str]] = {}
        for repo, tags in requests.items():
            locked = self._table.get(repo, {})
            unlocked = [tag for tag in tags if self._verify or tag not in locked]
            if unlocked:
                rest[repo] = unlocked
        return inner.get().prefetch(rest) if rest else ()

    def describe_tags(self, repo: EcrRepository, tags: Collection[str]) -> Lookup:
        locked = self._table.get(repo, {})
        found = {tag: locked[tag] for tag in tags if tag in locked}
        rest = [tag for tag in tags if tag not in locked]
        if not rest and not self._verify:
            self._observer.answered("lock", "tags", "fresh")
            return Lookup(found=found)
        inner = self._fallback
        if inner is None:
            raise LockProblem(
                *(
                    f"{repo.uri}:{tag}: not in {self._shown} ({self._strict_reason}); {self._fix}"
                    for tag in sorted(rest)
                )
            )
        if self._verify:
            return self._verified(repo, found, inner.describe_tags(repo, list(tags)))
        answer = inner.describe_tags(repo, rest)
        return Lookup(
            found={**found, **answer.found},
            missing=answer.missing,
            repository_missing=answer.repository_missing and not found,
            fetched=answer.fetched,  # the lock's own answers were never fetched: no age
        )

    def _verified(self, repo: EcrRepository, locked: Mapping[str, TagInfo], ecr: Lookup) -> Lookup:
        problems: list[str] = []
        for tag, info in sorted(locked.items()):
            current = ecr.found.get(tag)
            if current is None:
                where = "the repository" if ecr.repository_missing else "the tag"
                problems.append(
                    f"{repo.uri}:{tag}: {self._shown} locks {info.digest}, but "
                    f"{where} no longer exists in ECR; restore it or run `tagpin lock`"
                )
            elif current.digest != info.digest:
                problems.append(
                    f"{repo.uri}:{tag}: {self._shown} locks {info.digest}, but ECR "
                    f"now has {current.digest}; if the new image is intended run "
                    "`tagpin lock --update` and commit the lock, else restore the tag"
                )
        if problems:
            raise LockProblem(*problems)
        return ecr

    def list_tags(self, repo: EcrRepository) -> Lookup:
        inner = self._fallback
        if inner is None:
            self._observer.answered("lock", "listing", "fresh")
            return Lookup(found=dict(self._table.get(repo, {})))
        return inner.list_tags(repo)
