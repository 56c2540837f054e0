"""Caches in front of a registry: in this process's memory (cachetools), and on disk, shared
between processes.

Argo CD starts one tagpin per render; the disk cache with per-repository locks lets them share
answers so many renders of apps using one repository make one ECR call for it.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import quote

from cachetools import FIFOCache

from cmp.atomicfile import read_regular, write_atomically
from cmp.registry.base import (
    CachedTag,
    Fetched,
    Lookup,
    Registry,
    RegistryUnavailable,
    TagInfo,
    ages,
    answer_from,
    is_digest,
)
from cmp.registry.freshness import freshness
from cmp.registry.observe import SILENT, RegistryObserver
from cmp.registry.pushes import PushFloors
from cmp.settings import CacheMode as CacheMode  # TAGPIN_CACHE's choices

if TYPE_CHECKING:
    from cmp.registry.names import EcrRepository
    from cmp.registry.observe import Layer, Question

FORMAT = "v1"
STALE_TEMP_AGE = 300.0  # seconds; a temp file this old belongs to a writer that died
_LOCK_POLL = 0.02  # seconds between attempts to take a busy lock
# Repository locks are shared by hash: a fixed set of lock files, however many repository
# names renders ask for (names that do not exist included: a template can ask for hundreds).
# Two repositories sharing a lock only wait for each other's ECR call.
LOCK_STRIPES = 256
_MAX_FILE_NAME = 200  # leave room for the temp-file affixes below the usual 255-byte limit


class CachedRepository(NamedTuple):
    """One repository's cache file: tag entries and, maybe, the list of every tag."""

    tags: Mapping[str, CachedTag] = MappingProxyType({})
    tag_list: tuple[str, ...] | None = None
    tag_list_fetched_at: float | None = None
    tag_list_seen: float | None = None


class DiskCache:
    """One JSON file per repository under `root`, written atomically and merged under a lock.

    Any I/O problem turns the cache off for what it affects; the first one adds a warning to
    `warnings` (one in all, however many files it affects). Nothing here prints or fails a render.
    """

    def __init__(
        self,
        root: Path,
        *,
        warnings: list[str] | None = None,
        lock_timeout: float = 10.0,
        clock: Callable[[], float] = time.time,
        observer: RegistryObserver = SILENT,
    ) -> None:
        self.root = Path(root)
        self._observer = observer
        self.warnings: list[str] = warnings if warnings is not None else []
        self._lock_timeout = lock_timeout
        self._clock = clock
        self._warned = False
        self._usable: bool | None = None  # checked once, on first use
        self._writable = True
        self._swept: set[Path] = set()
        self._guard = threading.Lock()

    def path_for(self, repo: EcrRepository) -> Path:
        name = quote(repo.name, safe="")
        if len(name) > _MAX_FILE_NAME:
            name = name[:100] + "-" + hashlib.sha256(repo.name.encode()).hexdigest()
        registry = repo.registry
        return self.root / FORMAT / registry.region / registry.account / f"{name}.json"

    def lock_path_for(self, repo: EcrRepository) -> Path:
        key = f"{repo.registry.host}/{repo.name}".encode()
        stripe = int.from_bytes(hashlib.sha256(key).digest()[:4], "big") % LOCK_STRIPES
        return self.root / FORMAT / "locks" / f"{stripe:03d}.lock"

    def read(self, repo: EcrRepository) -> CachedRepository | None:
        """The repository's cached entries, or None when there are none (or they are unusable)."""
        if not self._check_root():
            return None
        path = self.path_for(repo)
        try:
            raw = read_regular(path)
        except FileNotFoundError:
            return None
        except OSError as error:
            self._warn(f"cannot read the image cache {path}: {_reason(error)}")
            return None
        cached = _decode(raw, repo)
        if cached is None:
            self._warn(
                f"ignored a corrupt image cache file {path}; it will be rewritten",
            )
        return cached

    @contextmanager
    def locked(self, repo: EcrRepository) -> Iterator[bool]:
        """Hold the repository's lock (across processes); yields False when it could not be taken
        within the timeout or at all, in which case the caller goes on without it."""
        if not self._check_root() or not self._writable:
            yield False
            return
        path = self.lock_path_for(repo)
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
            handle = os.open(path, flags, 0o600)
        except OSError as error:
            self._unwritable(path.parent, error)
            yield False
            return
        try:
            acquired = self._acquire(handle)
            if not acquired:
                self._warn(
                    f"the image cache lock for {repo.name} was busy for "
                    f"{self._lock_timeout:g} s; resolving without waiting for it",
                )
            yield acquired
        finally:
            os.close(handle)  # closing releases the flock

    def merge(
        self,
        repo: EcrRepository,
        infos: Mapping[str, TagInfo],
        fetched_at: float,
        *,
        tag_list: bool = False,
        seen: float | None = None,
        fetched: Mapping[str, Fetched] | None = None,
    ) -> None:
        """Add entries to the repository's file, keeping the newest entry per tag.

        An entry is aged `fetched[tag]` when that is given (an answer that kept its age through
        the layers, from Redis say), else (`fetched_at`, `seen`). Call it inside
        `locked(repo)` so concurrent writers never lose each other's entries.
        """
        if not self._check_root() or not self._writable:
            return
        path = self.path_for(repo)
        current = self.read(repo) or CachedRepository()
        tags = dict(current.tags)
        default = Fetched(fetched_at, seen)
        for tag, info in infos.items():
            known = tags.get(tag)
            when = default if fetched is None else fetched.get(tag, default)
            if known is None or known.fetched_at <= when.at:
                tags[tag] = CachedTag(info, *when)
        listed, listed_at = current.tag_list, current.tag_list_fetched_at
        listed_seen = current.tag_list_seen
        if tag_list and (listed_at is None or listed_at <= fetched_at):
            listed, listed_at, listed_seen = tuple(sorted(infos)), fetched_at, seen
        merged = CachedRepository(tags, listed, listed_at, listed_seen)
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._sweep(path.parent)
            # No fsync (~4 ms a file, 40 in a cold render of 40 repositories): what a crash of
            # the machine could leave, an old version or a torn or empty file, is an old answer
            # the freshness rule judges by its age, or one whose checksum fails and is fetched
            # again (`_decode`).
            write_atomically(path, _encode(merged, repo))
        except OSError as error:
            self._unwritable(path.parent, error)

    # -- recovery ---------------------------------------------------------------------------

    def _check_root(self) -> bool:
        """Refuse a cache directory another user owns: its contents could pin any digest."""
        if self._usable is None:
            try:
                self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
                owner = self.root.stat().st_uid
            except OSError as error:
                self._warn(
                    f"cannot use the image cache directory {self.root}: {_reason(error)}; "
                    "resolving without a cache",
                )
                self._usable = False
                return False
            self._usable = owner == os.getuid()
            if not self._usable:
                self._warn(
                    f"the image cache directory {self.root} belongs to another user; "
                    "resolving without a cache",
                )
        return self._usable

    def _unwritable(self, where: Path, error: OSError) -> None:
        self._writable = False
        self._warn(
            f"cannot write the image cache in {where}: {_reason(error)}; "
            "new digests will not be cached",
        )

    def _warn(self, message: str) -> None:
        with self._guard:
            if not self._warned:
                self._warned = True
                self.warnings.append(message)

    def _acquire(self, handle: int) -> bool:
        deadline = time.monotonic() + self._lock_timeout
        waiting = False
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                if not waiting:
                    waiting = True  # another process is filling this repository
                    self._observer.waited("disk")
                if time.monotonic() >= deadline:
                    return False
                time.sleep(_LOCK_POLL)
            except OSError as error:
                if error.errno in (errno.ENOLCK, errno.EINVAL, errno.EOPNOTSUPP):
                    return False  # a file system without flock: no single-flight, still correct
                raise

    def _sweep(self, directory: Path) -> None:
        """Delete temp files left by writers that were killed before their rename."""
        if directory in self._swept:
            return
        self._swept.add(directory)
        cutoff = self._clock() - STALE_TEMP_AGE
        for leftover in directory.glob(".*.tmp"):
            try:
                if leftover.stat().st_mtime < cutoff:
                    leftover.unlink()
            except OSError:
                continue  # another process swept it first


class CachingRegistry:
    """`Registry` with the local caches in front of `inner`: memory, then disk.

    Both questions, a repository's tags and its listing (branch deploys), take one path:
    memory, then disk, then, holding the repository's lock so that one process of the machine
    asks while the others wait for its answer, disk again and `inner`. Each tag is answered by
    whichever cache holds it fresh; a listing is answered whole or not at all. What `inner`
    says is kept with the age it carries (an answer Redis kept for a minute is a minute old
    here too). "Not found" is never cached, so a freshly pushed tag is found at once.

    `mode`: ON reads and writes the disk cache; REFRESH never reads it but still writes
    (memory still answers what this process asked); OFF has no disk cache (`store` unused).
    `ttl` is how long a tag's digest is trusted (TAGPIN_CACHE_TTL), `tag_list_ttl` a listing
    (TAGPIN_TAG_LIST_TTL): new tags appear in listings quickly, while a pinned digest is
    re-verified less often.

    `stale_for` > 0 (seconds, opt-in): when `inner` is unavailable (`RegistryUnavailable`: down,
    throttling, server errors; never access denied), disk entries older than the TTL but younger
    than `stale_for` answer instead, with a warning naming each image and its age. All the tags
    asked of a repository must be covered, or the registry's error stands.

    `pushes` holds the pushes announced for the render (cmp.registry.pushes.PushFloors): no
    entry, in memory or on disk, fresh or stale, answers unless the one freshness rule
    (cmp.registry.freshness) says so. Every entry written records when it was fetched and the
    push time announced for its repository then.
    """

    def __init__(
        self,
        inner: Registry,
        store: DiskCache | None,
        clock: Callable[[], float] = time.time,
        *,
        mode: CacheMode = CacheMode.ON,
        ttl: float = 300.0,
        tag_list_ttl: float = 30.0,
        memory_size: int = 4096,
        stale_for: float = 0.0,
        warnings: list[str] | None = None,
        pushes: PushFloors | None = None,
        observer: RegistryObserver = SILENT,
    ) -> None:
        self._inner = inner
        self._observer = observer
        self._pushes = pushes if pushes is not None else PushFloors()
        self._stale_for = stale_for if mode is CacheMode.ON else 0.0
        self.warnings: list[str] = warnings if warnings is not None else []
        self._store = store if mode is not CacheMode.OFF else None
        self._clock = clock
        self._read_disk = mode is CacheMode.ON
        self._ttl = ttl
        self._tag_list_ttl = tag_list_ttl
        self._memory_lock = threading.Lock()
        # What this process asked or read, judged by its age like any cached answer (so no
        # TTL of its own); at most `memory_size` tags and a sixteenth as many listings, the
        # first remembered going first.
        self._tags: FIFOCache[tuple[EcrRepository, str], CachedTag] = FIFOCache(memory_size)
        self._lists: FIFOCache[EcrRepository, tuple[Lookup, Fetched]] = FIFOCache(
            max(1, memory_size // 16)
        )

    def describe_tags(self, repo: EcrRepository, tags: Collection[str]) -> Lookup:
        return self._answer(repo, frozenset(tags))

    def list_tags(self, repo: EcrRepository) -> Lookup:
        return self._answer(repo, None)

    def describe_cached(self, repo: EcrRepository, tags: Collection[str]) -> Lookup | None:
        """The answer if memory or disk holds every tag fresh, else None; never asks `inner`
        and takes no lock (a warm render's fast path in `describe_many`)."""
        return self._cached(repo, frozenset(tags), _Search())

    def prefetch(
        self, requests: Mapping[EcrRepository, Collection[str]]
    ) -> Collection[EcrRepository]:
        """Passed on: `describe_many` hints only what `describe_cached` could not answer."""
        return self._inner.prefetch(requests)

    # -- one path for both questions ---------------------------------------------------------
    #
    # `wanted` is the tags asked, or None for the listing; `search` gathers the tags' fresh
    # entries found so far (a listing is found whole, or not at all).

    def _answer(self, repo: EcrRepository, wanted: frozenset[str] | None) -> Lookup:
        search = _Search()
        answer = self._cached(repo, wanted, search)
        if answer is not None:
            return answer
        store = self._store
        if store is None:
            return self._fill(repo, wanted, search, None)
        with store.locked(repo):
            if self._read_disk:
                # Again under the lock: the process that held it may have just written.
                answer = self._from_disk(repo, wanted, search, store.read(repo))
                if answer is not None:
                    return answer
            return self._fill(repo, wanted, search, store)

    def _cached(
        self, repo: EcrRepository, wanted: frozenset[str] | None, search: _Search
    ) -> Lookup | None:
        """Memory, then disk, with no lock taken and nothing asked of `inner`."""
        answer = self._from_memory(repo, wanted, search)
        if answer is None and self._store is not None and self._read_disk:
            answer = self._from_disk(repo, wanted, search, self._store.read(repo))
        return answer

    def _from_memory(
        self, repo: EcrRepository, wanted: frozenset[str] | None, search: _Search
    ) -> Lookup | None:
        known = search.entries
        with self._memory_lock:
            if wanted is None:
                remembered = self._lists.get(repo)
            else:
                hits = {tag: self._tags.get((repo, tag)) for tag in wanted - known.keys()}
        if wanted is None:
            if remembered is None:
                return None
            listing, when = remembered
            if not self._is_fresh(repo, when, self._tag_list_ttl, "memory", search):
                return None
            self._observer.answered("memory", "listing", "fresh")
            return listing
        known.update(self._usable(repo, hits, self._ttl, "memory", search))  # entries keep ages
        return self._complete("memory", wanted, search)

    def _from_disk(
        self,
        repo: EcrRepository,
        wanted: frozenset[str] | None,
        search: _Search,
        cached: CachedRepository | None,
    ) -> Lookup | None:
        """The disk's fresh answer (remembered in memory) when it completes the question."""
        if cached is None:
            return None
        if wanted is None:
            listing = self._listing(repo, cached, self._tag_list_ttl, search)
            if listing is not None:
                self._observer.answered("disk", "listing", "fresh")
            return listing
        lacking = {t: cached.tags.get(t) for t in wanted - search.entries.keys()}
        usable = self._usable(repo, lacking, self._ttl, "disk", search)
        self._remember(repo, usable)
        search.entries.update(usable)
        return self._complete("disk", wanted, search)

    def _complete(self, layer: Layer, wanted: frozenset[str], search: _Search) -> Lookup | None:
        if len(search.entries) < len(wanted):
            return None
        self._observer.answered(layer, "tags", "fresh")
        return answer_from(search.entries)

    def _fill(
        self,
        repo: EcrRepository,
        wanted: frozenset[str] | None,
        search: _Search,
        store: DiskCache | None,
    ) -> Lookup:
        """Ask `inner` what the caches lack, keep its answer in memory and on disk (`store`,
        its lock held), or serve stale entries while it is unavailable (`stale_for`)."""
        question: Question = "tags" if wanted is not None else "listing"
        for layer in sorted(search.refused):
            self._observer.answered(layer, question, "pushed")
        known = search.entries
        asked = Fetched(self._clock(), self._pushes.announced(repo))
        try:
            if wanted is None:
                answer = self._inner.list_tags(repo)
            else:
                answer = self._inner.describe_tags(repo, sorted(wanted - known.keys()))
        except RegistryUnavailable:
            stale = None if store is None else self._stale(repo, wanted, search, store)
            if stale is None:
                raise
            self._observer.answered("disk", question, "stale")
            return stale
        aged = ages(answer, asked)
        fresh = {tag: CachedTag(info, *aged[tag]) for tag, info in answer.found.items()}
        if wanted is not None:
            self._remember(repo, fresh)
            if store is not None and fresh:
                store.merge(repo, answer.found, asked.at, fetched=aged)
            return answer_from({**known, **fresh}, answer)
        when = next(iter(aged.values()), asked)  # a listing's tags share its age
        listing = answer._replace(fetched=aged)
        if not answer.repository_missing:
            self._remember_list(repo, listing, when)
            if store is not None:
                store.merge(repo, answer.found, when.at, tag_list=True, seen=when.seen)
        return listing

    # -- helpers ----------------------------------------------------------------------------

    def _is_fresh(
        self, repo: EcrRepository, fetched: Fetched, max_age: float, layer: Layer, search: _Search
    ) -> bool:
        now = self._clock()
        verdict = freshness(repo, fetched, now=now, max_age=max_age, pushes=self._pushes)
        if verdict == "pushed":
            search.refused.add(layer)
        return verdict == "fresh"

    def _usable(
        self,
        repo: EcrRepository,
        entries: Mapping[str, CachedTag | None],
        max_age: float,
        layer: Layer,
        search: _Search,
    ) -> dict[str, CachedTag]:
        """The entries that may answer when entries are trusted for `max_age` seconds."""
        return {
            tag: entry
            for tag, entry in entries.items()
            if entry is not None and self._is_fresh(repo, entry.fetched, max_age, layer, search)
        }

    def _remember(self, repo: EcrRepository, entries: Mapping[str, CachedTag]) -> None:
        with self._memory_lock:
            for tag, entry in entries.items():
                self._tags[(repo, tag)] = entry

    def _remember_list(self, repo: EcrRepository, listing: Lookup, when: Fetched) -> Lookup:
        self._remember(repo, {t: CachedTag(i, *when) for t, i in listing.found.items()})
        with self._memory_lock:
            self._lists[repo] = (listing, when)
        return listing

    def _listing(
        self, repo: EcrRepository, cached: CachedRepository, max_age: float, search: _Search
    ) -> Lookup | None:
        """The disk's listing if it may answer when trusted for `max_age` (remembered)."""
        if cached.tag_list is None or cached.tag_list_fetched_at is None:
            return None
        when = Fetched(cached.tag_list_fetched_at, cached.tag_list_seen)
        if not self._is_fresh(repo, when, max_age, "disk", search):
            return None
        entries = [cached.tags.get(tag) for tag in cached.tag_list]
        if any(entry is None for entry in entries):
            return None
        found = {entry.info.tag: entry.info for entry in entries if entry is not None}
        listing = Lookup(found=found, fetched=dict.fromkeys(found, when))
        return self._remember_list(repo, listing, when)

    # -- serving stale entries while the registry is down (opt-in) --------------------------

    def _stale(
        self, repo: EcrRepository, wanted: frozenset[str] | None, search: _Search, store: DiskCache
    ) -> Lookup | None:
        """Disk entries younger than `stale_for` for the whole question, or None if any is
        lacking. Never one older than an announced push: a failed render is retried, a stale
        one sticks."""
        cached = store.read(repo) if self._stale_for > 0 else None
        if cached is None:
            return None
        if wanted is None:
            listing = self._listing(repo, cached, self._stale_for, search)
            if listing is not None and cached.tag_list_fetched_at is not None:
                age = _age(self._clock() - cached.tag_list_fetched_at)
                self.warnings.append(
                    f"ECR is unavailable, so the tags of {repo.uri} come from a listing cached "
                    f"{age} ago and may be out of date (TAGPIN_SERVE_STALE_HOURS)"
                )
            return listing
        known = search.entries
        lacking = {t: cached.tags.get(t) for t in wanted - known.keys()}
        stale = self._usable(repo, lacking, self._stale_for, "disk", search)
        if len(stale) < len(lacking):
            return None
        now = self._clock()
        pinned = ", ".join(
            f"{repo.uri}:{tag} (cached {_age(now - entry.fetched_at)} ago)"
            for tag, entry in sorted(stale.items())
        )
        self.warnings.append(
            f"ECR is unavailable, so these digests come from the image cache and may be out "
            f"of date: {pinned}; they are served for up to TAGPIN_SERVE_STALE_HOURS="
            f"{self._stale_for / 3600:g} while ECR is down"
        )
        return answer_from({**known, **stale})


class _Search:
    """What the local caches hold of one question so far: the tags' fresh entries, and the
    layers whose answer the push floor refused (reported once the layer below is asked)."""

    __slots__ = ("entries", "refused")

    def __init__(self) -> None:
        self.entries: dict[str, CachedTag] = {}
        self.refused: set[Layer] = set()


# -- the file format ------------------------------------------------------------------------


def _encode(cached: CachedRepository, repo: EcrRepository) -> bytes:
    body: dict[str, Any] = {
        "account": repo.registry.account,
        "region": repo.registry.region,
        "repository": repo.name,
        "tags": {
            tag: {
                "digest": entry.info.digest,
                "pushed_at": entry.info.pushed_at,
                "media_type": entry.info.media_type,
                "fetched_at": entry.fetched_at,
                **({} if entry.seen is None else {"seen": entry.seen}),
            }
            for tag, entry in sorted(cached.tags.items())
        },
        "tag_list": None
        if cached.tag_list is None
        else {
            "fetched_at": cached.tag_list_fetched_at,
            "tags": list(cached.tag_list),
            **({} if cached.tag_list_seen is None else {"seen": cached.tag_list_seen}),
        },
    }
    document = {"format": FORMAT, "checksum": _checksum(body), "body": body}
    return json.dumps(document, sort_keys=True, indent=1).encode() + b"\n"


def _decode(raw: bytes, repo: EcrRepository) -> CachedRepository | None:
    """The file's entries, or None when it is torn, tampered with or not for this repository."""
    try:
        document = json.loads(raw)
        body = document["body"]
        if document.get("format") != FORMAT or document.get("checksum") != _checksum(body):
            return None
        if (body["account"], body["region"], body["repository"]) != (
            repo.registry.account,
            repo.registry.region,
            repo.name,
        ):
            return None
        tags: dict[str, CachedTag] = {}
        for tag, entry in body["tags"].items():
            if not is_digest(entry["digest"]):
                return None
            pushed_at, media_type = entry["pushed_at"], entry["media_type"]
            info = TagInfo(
                tag=str(tag),
                digest=entry["digest"],
                pushed_at=None if pushed_at is None else float(pushed_at),
                media_type=None if media_type is None else str(media_type),
            )
            tags[tag] = CachedTag(info, float(entry["fetched_at"]), _optional_time(entry))
        listing = body["tag_list"]
        if listing is None:
            return CachedRepository(tags)
        return CachedRepository(
            tags,
            tuple(str(t) for t in listing["tags"]),
            float(listing["fetched_at"]),
            _optional_time(listing),
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def _optional_time(entry: Mapping[str, Any]) -> float | None:
    # Written only when a push was announced; files from earlier versions have none.
    seen = entry.get("seen")
    return None if seen is None else float(seen)


def _checksum(body: Mapping[str, Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return "sha256:" + hashlib.sha256(canonical).hexdigest()


def _reason(error: OSError) -> str:
    return error.strerror or type(error).__name__


def _age(seconds: float) -> str:
    if seconds < 3600:
        return f"{max(0, round(seconds / 60))} min"
    return f"{seconds / 3600:.1f} h"
