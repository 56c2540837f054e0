"""The push record: which pushes the webhook announced on an Application, and the freshness rule
they impose on every image cache.

The webhook's hard-refresh patch also writes `tagpin.dev/pushes` on the Application: per
repository, the newest pushed tag, its digest and the time the webhook recorded the push. The
render reads the live Application anyway (branch deploys), so it learns of the push with no other
infrastructure, on every replica. The record is evidence, never truth: it only makes the render
distrust cached answers for those repositories and ask ECR again. A digest in the record is
never deployed; it is there for people reading the Application.

This module is imported by every render that reads the Application: standard library only.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, NamedTuple

from cmp.jsonread import JsonError, loads

if TYPE_CHECKING:
    from cmp.registry.names import EcrRepository

PUSHES_ANNOTATION = "tagpin.dev/pushes"
RECORD_VERSION = 1
MAX_REPOSITORIES = 16  # per Application; older entries fold into `older`
MAX_RECORD_BYTES = 256 * 1024  # all of an object's annotations may hold (Kubernetes' limit)
DEFAULT_CLOCK_SKEW = 2.0  # seconds; TAGPIN_PUSH_CLOCK_SKEW
_TICK = 1e-6  # a new push always moves a repository's time by at least this much

RepositoryKey = tuple[str, str, str]  # (account, region, repository name)


class Push(NamedTuple):
    """The newest push of one repository the webhook announced."""

    tag: str
    digest: str | None
    at: float  # epoch seconds on the webhook's clock when it patched (after the push)


class PushRecord(NamedTuple):
    """The annotation's content: pushes by repository (`host/path`), and `older`, the newest
    time among pushes folded out to keep the record small (it applies to every repository the
    record does not list)."""

    pushes: Mapping[str, Push]
    older: float | None = None


class BadRecord(ValueError):
    """The annotation is not a push record this version can read."""


# --- reading and writing the annotation ----------------------------------------------------


def parse_record(text: str) -> PushRecord:
    """The record in `text`; BadRecord says what is wrong. Strict: a record the webhook did not
    write has no business being half-understood."""
    try:
        document = loads(text, max_bytes=MAX_RECORD_BYTES)
    except JsonError as error:
        raise BadRecord(f"not JSON tagpin reads: {error}") from None
    if not isinstance(document, dict) or document.get("v") != RECORD_VERSION:
        raise BadRecord(f"not a version {RECORD_VERSION} push record")
    raw = document.get("pushes")
    if not isinstance(raw, dict):
        raise BadRecord("`pushes` is not an object")
    pushes: dict[str, Push] = {}
    for repository, entry in raw.items():
        if not isinstance(entry, dict):
            raise BadRecord(f"the entry for {repository!r} is not an object")
        tag, digest, at = entry.get("tag"), entry.get("digest"), entry.get("at")
        if not isinstance(tag, str) or not (digest is None or isinstance(digest, str)):
            raise BadRecord(f"the entry for {repository!r} has no valid tag or digest")
        pushes[repository] = Push(tag, digest, _time(at, repository))
    older = document.get("older")
    return PushRecord(pushes, None if older is None else _time(older, "older"))


def _time(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise BadRecord(f"the time of {where!r} is not a number")
    return float(value)


def format_record(record: PushRecord) -> str:
    """Compact, sorted JSON: the same record always gives the same annotation."""
    document: dict[str, object] = {
        "v": RECORD_VERSION,
        "pushes": {
            repository: {"tag": push.tag, "digest": push.digest, "at": push.at}
            for repository, push in sorted(record.pushes.items())
        },
    }
    if record.older is not None:
        document["older"] = record.older
    return json.dumps(document, sort_keys=True, separators=(",", ":"))


def record_pushes(
    current: PushRecord,
    pushes: Iterable[tuple[str, str, str | None]],
    now: float,
    limit: int = MAX_REPOSITORIES,
) -> PushRecord:
    """`current` with each (repository, tag, digest) pushed at `now`, bounded to `limit`
    repositories.

    A repository's time only moves forward, by at least a microsecond, even if this webhook's
    clock is behind the one that wrote `current`: every announced push must change the record,
    or caches that already saw the old one would keep answering. Repositories beyond `limit`
    (the least recently pushed) fold into `older`, which makes every unlisted repository's
    cache stale as of that time: the bound costs ECR calls, never a hidden push.
    """
    merged = dict(current.pushes)
    for repository, tag, digest in pushes:
        known = merged.get(repository)
        floor = max(known.at if known else -math.inf, current.older or -math.inf)
        merged[repository] = Push(tag, digest, max(now, floor + _TICK))
    older = current.older
    if len(merged) > limit:
        newest_first = sorted(merged.items(), key=lambda item: (-item[1].at, item[0]))
        merged = dict(newest_first[:limit])
        folded = max(push.at for _, push in newest_first[limit:])
        older = folded if older is None else max(older, folded)
    return PushRecord(merged, older)


# --- the freshness rule --------------------------------------------------------------------


class PushFloors:
    """Per repository, the newest push announced to this render: the one seam every cache
    (memory, disk, a shared store) consults before answering.

    A cache entry records `fetched_at` (the fetching process's clock, taken before it asked
    ECR) and `seen`, the push time this object reported for the repository when it was fetched.
    `admits(repo, fetched_at, seen)` is True when the entry may answer: no push is announced,
    or the entry was fetched by a render that already knew this very push (`seen` equals its
    time; that fetch started after the push), or it was fetched at least `skew` seconds after
    the push time (clocks of webhook and sidecar pods may differ by up to `skew`).

    Renders fill it from the live Application (`announce`) before resolving; until then it
    admits everything, which is what a render without the webhook does.
    """

    def __init__(self, skew: float = DEFAULT_CLOCK_SKEW) -> None:
        self.skew = skew
        self._times: dict[RepositoryKey, float] = {}
        self._older: float | None = None
        # For metrics: the newest push announced, and whether a cached answer was refused
        # (False) or only admitted (True) for each repository with a push announced.
        self._pushes: dict[RepositoryKey, Push] = {}
        self._decided: dict[RepositoryKey, bool] = {}

    def announce(self, record: PushRecord) -> None:
        """Take the record's pushes. Repositories outside ECR are skipped: no cache holds them.
        A repository is read as the webhook writes it (`<host>/<name>`, `repository_named`),
        the way the webhook's generation bump in Redis reads it too."""
        from cmp.registry.names import repository_named

        for repository, push in record.pushes.items():
            parsed = repository_named(repository)
            if parsed is not None:
                key = _key(parsed)
                if push.at >= self._times.get(key, -math.inf):
                    self._pushes[key] = push
                self._times[key] = max(self._times.get(key, -math.inf), push.at)
        if record.older is not None:
            self._older = record.older if self._older is None else max(self._older, record.older)

    def announce_annotations(self, annotations: Mapping[str, str]) -> list[str]:
        """Read the record from an Application's annotations, if there is one; warnings out.

        An unreadable record makes every repository stale as of now: it was meant to announce
        something, and asking ECR is the safe reading of a record one cannot read."""
        text = annotations.get(PUSHES_ANNOTATION)
        if text is None:
            return []
        try:
            self.announce(parse_record(text))
        except BadRecord as error:
            import time

            self._older = time.time() - self.skew
            return [
                f"{PUSHES_ANNOTATION} on the Application is unreadable ({error}); "
                "every image is resolved from ECR, not from the cache"
            ]
        return []

    def announced(self, repo: EcrRepository) -> float | None:
        """The newest announced push time for `repo`, or None when none is."""
        listed = self._times.get(_key(repo))
        if listed is None or self._older is None:
            return self._older if listed is None else listed
        return max(listed, self._older)  # the webhook never writes older > listed; be safe

    def pushed(self, repo: EcrRepository) -> Push | None:
        """The newest push the record lists for `repo` (not one folded into `older`)."""
        return self._pushes.get(_key(repo))

    def admits(self, repo: EcrRepository, fetched_at: float, seen: float | None) -> bool:
        announced = self.announced(repo)
        if announced is None:
            return True
        admitted = seen == announced or fetched_at >= announced + self.skew
        key = _key(repo)
        self._decided[key] = self._decided.get(key, True) and admitted
        return admitted

    def decisions(self) -> list[bool]:
        """Per repository whose cached answers met an announced push: True when they were
        admitted, False when one was refused (the layers under it were asked)."""
        return list(self._decided.values())

    def __bool__(self) -> bool:
        return bool(self._times) or self._older is not None


def _key(repo: EcrRepository) -> RepositoryKey:
    # Account, Region and name: a FIPS or dual-stack host names the same repository.
    return (repo.registry.account, repo.registry.region, repo.name)
