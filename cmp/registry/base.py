"""The registry contract: what tagpin asks a registry (tag → digest), the answers it gets back,
and `describe_many`, which asks it about many repositories at once.

Every layer (the lock, the local caches, Redis, ECR) is a `Registry` and asks the one under it
only through this protocol. An answer (`Lookup`) carries how old each of its digests is
(`Fetched`), so a layer keeps the age of what a lower one answered and judges it with the one
freshness rule (cmp.registry.freshness).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, NamedTuple, Protocol, TypeGuard

from cmp.errors import Problems, RegistryError

if TYPE_CHECKING:
    from cmp.registry.names import EcrRepository


# ECR only stores sha256 manifest digests; anything else in a cache or a response is corrupt.
DIGEST_PATTERN = re.compile(r"sha256:[0-9a-f]{64}")


class RegistryUnavailable(RegistryError):
    """The registry could not answer now (unreachable, timed out, throttled, a server error, the
    deadline passed): asking again later may work. Unlike access denied or bad credentials, this
    is the case where a cache may answer for it (TAGPIN_SERVE_STALE_HOURS)."""


class TagInfo(NamedTuple):
    """One tag of a repository and the immutable manifest digest it points to now."""

    tag: str
    digest: str
    pushed_at: float | None = None  # epoch seconds, UTC
    media_type: str | None = None  # an index/manifest-list type for multi-arch images


class Fetched(NamedTuple):
    """When an answer was fetched from ECR, by the fetcher's clock read just before it asked,
    and the push announced for the repository to that fetcher then (cmp.registry.pushes)."""

    at: float  # epoch seconds
    seen: float | None = None


class Lookup(NamedTuple):
    """The answer for one repository: the tags found, the tags that do not exist, and when each
    found tag was fetched from ECR. A found tag without an age was fetched by the very call that
    returned it (ECR's answers carry none): the layer that asked stamps it (`ages`). A listing's
    tags all share its age."""

    found: Mapping[str, TagInfo] = MappingProxyType({})
    missing: frozenset[str] = frozenset()
    repository_missing: bool = False
    fetched: Mapping[str, Fetched] = MappingProxyType({})


class CachedTag(NamedTuple):
    """One tag's answer as a cache keeps it (memory, disk; Redis's entries read as one): the
    digest and when it was fetched."""

    info: TagInfo
    fetched_at: float  # the fetcher's clock just before it asked the registry
    seen: float | None = None  # the push time announced for the repository then (PushFloors)

    @property
    def fetched(self) -> Fetched:
        return Fetched(self.fetched_at, self.seen)


def answer_from(kept: Mapping[str, CachedTag], below: Lookup | None = None) -> Lookup:
    """The answer made of what a cache kept, with what `below` (the layer under it, asked for
    the rest) says is missing."""
    found = {tag: entry.info for tag, entry in kept.items()}
    fetched = {tag: entry.fetched for tag, entry in kept.items()}
    if below is None:
        return Lookup(found=found, fetched=fetched)
    return Lookup(found, below.missing, below.repository_missing, fetched)


def ages(answer: Lookup, asked: Fetched) -> dict[str, Fetched]:
    """The age of every tag `answer` found: its own, else `asked`, when the layer that got the
    answer asked for it."""
    return {tag: answer.fetched.get(tag, asked) for tag in answer.found}


class Registry(Protocol):
    """One layer of tag resolution, asked about one repository at a time; raises
    `RegistryError` when it cannot answer."""

    def describe_tags(self, repo: EcrRepository, tags: Collection[str]) -> Lookup:
        """Every requested tag ends up in `found` or in `missing`."""
        ...

    def list_tags(self, repo: EcrRepository) -> Lookup:
        """Every tagged image of the repository (for branch deploys), `found` keyed by tag."""
        ...

    def describe_cached(self, repo: EcrRepository, tags: Collection[str]) -> Lookup | None:
        """The answer when this layer (with the layers under it that can) holds every tag
        now, with no network call and no lock to wait for; else None. A warm render answers
        from here without starting a thread pool (`describe_many`)."""
        ...

    def prefetch(
        self, requests: Mapping[EcrRepository, Collection[str]]
    ) -> Collection[EcrRepository]:
        """A hint that these questions come next (those no cache answered): a layer a round
        trip away may read them all in one (Redis). Returns the repositories this layer (with
        those under it) can now answer with no further network call, so `describe_many` asks
        them without a thread. Never raises and never builds or imports a layer."""
        ...


class DeferredRegistry:
    """A `Registry` built on first use: a render the cache answers never imports the adapter
    (for ECR, a module and settings that cost a few ms at every start)."""

    def __init__(self, build: Callable[[], Registry]) -> None:
        import threading

        self._build = build
        self._lock = threading.Lock()  # repositories are described from several threads
        self._registry: Registry | None = None

    def get(self) -> Registry:
        """The registry, built now if it was not yet."""
        with self._lock:
            if self._registry is None:
                self._registry = self._build()
            return self._registry

    def describe_tags(self, repo: EcrRepository, tags: Collection[str]) -> Lookup:
        return self.get().describe_tags(repo, tags)

    def list_tags(self, repo: EcrRepository) -> Lookup:
        return self.get().list_tags(repo)

    def describe_cached(self, repo: EcrRepository, tags: Collection[str]) -> Lookup | None:
        return None  # answering now would mean building it

    def prefetch(
        self, requests: Mapping[EcrRepository, Collection[str]]
    ) -> Collection[EcrRepository]:
        return ()  # so would reading ahead


def is_digest(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and DIGEST_PATTERN.fullmatch(value) is not None


def epoch_seconds(moment: datetime | float | int | None) -> float | None:
    """Epoch seconds UTC: botocore hands out `tzlocal()` datetimes, which must not leak out."""
    if moment is None:
        return None
    if isinstance(moment, datetime):
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.timestamp()
    return float(moment)


def describe_many(
    registry: Registry,
    requests: Mapping[EcrRepository, Collection[str]],
    max_workers: int = 8,
) -> dict[EcrRepository, Lookup]:
    """Describe the tags of many repositories in parallel (they and their regions are independent);
    those the caches hold, or Redis answered in the one read `prefetch` makes, in turn.

    Every repository is asked even when another fails, so one run reports every registry problem.
    """
    if not requests:
        return {}

    def describe(repo: EcrRepository) -> Lookup | RegistryError:
        try:
            return registry.describe_tags(repo, requests[repo])
        except RegistryError as error:
            return error

    # Answers every cache already holds come first: a warm render then starts no thread pool
    # (and imports nothing for one).
    known: dict[EcrRepository, Lookup | RegistryError] = {}
    for repo in requests:
        hit = registry.describe_cached(repo, requests[repo])
        if hit is not None:
            known[repo] = hit
    pending = [repo for repo in requests if repo not in known]
    # One round trip for what Redis holds of them all; what it answers needs no thread.
    ready = registry.prefetch({repo: requests[repo] for repo in pending}) if pending else ()
    for repo in pending:
        if repo in ready:
            known[repo] = describe(repo)
    pending = [repo for repo in pending if repo not in known]
    workers = max(1, min(max_workers, len(pending)))
    if workers == 1:
        asked = [describe(repo) for repo in pending]
    else:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tagpin-registry") as pool:
            asked = list(pool.map(describe, pending))
    known.update(zip(pending, asked, strict=True))
    answers = [known[repo] for repo in requests]
    # Problems in request order, so the message is the same from run to run.
    problems = Problems()
    results: dict[EcrRepository, Lookup] = {}
    for repo, answer in zip(requests, answers, strict=True):
        if isinstance(answer, RegistryError):
            problems.add(answer)
        else:
            results[repo] = answer
    problems.raise_if_any()
    return results
