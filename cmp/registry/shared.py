"""The fleet-wide digest cache: Redis (Argo CD's own, ElastiCache, Valkey) between the local
caches and ECR, so every repo-server replica shares one ECR answer per repository.

Layers: memory → disk (cmp.registry.cache) → Redis (here) → ECR, each answer written back up.
`SharedRegistry` is the `Registry` the disk cache asks on a miss; it answers from Redis, or takes
a short per-repository Redis lock (`SET NX PX`) so that one replica of the fleet asks ECR while
the others wait for its answer. Both questions are shared: tag → digest lookups, and the tag
listings of branch deploys (whose digests also fill the tag → digest entries).

Whoever can write Redis must not choose a digest tagpin deploys (GHSA-9766-5277-j5hr): every
entry carries an HMAC-SHA256 over what it says and where it belongs, keyed by
TAGPIN_REDIS_SIGNING_KEY; anything else is ignored and ECR asked. "Not found" is never shared.

Redis trouble never fails a render: the first problem (unreachable, timeout, auth, TLS, out of
memory) gives one warning and the rest of the render goes on without Redis. The client library
is imported on the first lookup the local caches miss, never on a warm render.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import urlsplit

from cmp.errors import ConfigError
from cmp.registry.base import Lookup, Registry, TagInfo, is_digest
from cmp.settings import Settings, env_name

if TYPE_CHECKING:
    from cmp.images.ecr import EcrRepository
    from cmp.registry.pushes import PushFloors

NAMESPACE = "tagpin:v1"
MIN_SIGNING_KEY_BYTES = 32
# A generation outlives every entry stamped with it by far: an entry must never become valid
# again because the generation key expired (SharedRegistry caps its TTL below this).
GENERATION_TTL_SECONDS = 7 * 24 * 3600
LOCK_TTL_SECONDS = 10.0  # a holder that died frees the repository this soon
# A listing bigger than this (some 5,000 tags) is not shared: each replica lists such a
# repository itself, and no replica ever reads more than this from Redis for one.
MAX_LISTING_BYTES = 1 << 20
POLL_SECONDS = 0.02  # how often a waiting replica looks for the holder's answer

# Named in messages.
URL_ENV = env_name("redis_url")
PASSWORD_ENV = env_name("redis_password")
SIGNING_KEY_ENV = env_name("redis_signing_key")


# Compare-and-delete: release the lock only while it still holds our token (it may have
# expired and been taken by another replica meanwhile).
_RELEASE = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
)


class RedisSettings(NamedTuple):
    url: str  # may carry a password
    password: str | None
    signing_key: bytes | None
    timeout: float = 0.5  # seconds, for connecting and for each command

    def __repr__(self) -> str:  # never a password or the key
        return f"RedisSettings({self.shown}, timeout={self.timeout:g})"

    @property
    def shown(self) -> str:
        """The server as messages name it: scheme, host and port, never a password."""
        parts = urlsplit(self.url)
        host = parts.hostname or "localhost"
        return f"{parts.scheme}://{host}:{parts.port or 6379}"


def redis_settings(
    settings: Settings, *, signing_key_required: bool = True
) -> RedisSettings | None:
    """TAGPIN_REDIS_* → the client's settings, or None when TAGPIN_REDIS_URL is unset (memory
    + disk only). Secret files are read here, when Redis is used, not when settings are built.

    The webhook writes no digests, so it needs no signing key (`signing_key_required=False`).
    """
    url = settings.redis_url.strip()
    if not url:
        return None
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme not in ("redis", "rediss"):
        raise ConfigError(
            f"{URL_ENV} must start with redis:// or rediss:// (TLS), e.g. "
            "redis://argocd-redis:6379/0"
        )
    try:
        urlsplit(url).port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise ConfigError(f"{URL_ENV} has an invalid port") from None
    password = _secret(settings.redis_password, settings.redis_password_file, PASSWORD_ENV)
    key = _secret(settings.redis_signing_key, settings.redis_signing_key_file, SIGNING_KEY_ENV)
    if key is None and signing_key_required:
        raise ConfigError(
            f"{URL_ENV} is set but {SIGNING_KEY_ENV} (or {SIGNING_KEY_ENV}_FILE) is not: "
            "entries shared through Redis must be signed; create a Secret with at least "
            f"{MIN_SIGNING_KEY_BYTES} random bytes (docs/install.md)"
        )
    if key is not None and len(key) < MIN_SIGNING_KEY_BYTES:
        raise ConfigError(
            f"{SIGNING_KEY_ENV} is {len(key)} bytes long; it must be at least "
            f"{MIN_SIGNING_KEY_BYTES} (openssl rand -hex 32)"
        )
    timeout_ms = settings.redis_timeout_ms
    return RedisSettings(
        url=url,
        password=None if password is None else password.decode("utf-8", "replace"),
        signing_key=key,
        timeout=timeout_ms / 1000,
    )


def _secret(direct: str, path: str, env: str) -> bytes | None:
    """NAME or the file NAME_FILE points to (a mounted Secret), surrounding whitespace dropped."""
    file_env = f"{env}_FILE"
    if direct and path:
        raise ConfigError(f"both {env} and {file_env} are set: keep one")
    if path:
        try:
            value = Path(path).read_bytes().strip()
        except OSError as error:
            raise ConfigError(f"cannot read {file_env}={path}: {error.strerror or error}") from None
        if not value:
            raise ConfigError(f"{file_env}={path} is empty")
        return value
    return direct.strip().encode() or None


# -- the store ------------------------------------------------------------------------------


class SharedCacheDown(Exception):
    """Redis could not be used; the message names the problem for the warning."""


class SharedEntry(NamedTuple):
    info: TagInfo
    fetched_at: float
    generation: str
    seen: float | None = None  # the push announced to the fetching render (PushFloors)


class SharedListing(NamedTuple):
    """Every tagged image of a repository, as one ECR listing saw it."""

    found: Mapping[str, TagInfo]
    fetched_at: float
    generation: str
    seen: float | None = None


def repository_id(account: str, region: str, name: str) -> str:
    return f"{account}:{region}:{name}"


def _repo_id(repo: EcrRepository) -> str:
    return repository_id(repo.registry.account, repo.registry.region, repo.name)


def tags_key(repo_id: str) -> str:
    return f"{NAMESPACE}:tags:{repo_id}"


def listing_key(repo_id: str) -> str:
    return f"{NAMESPACE}:list:{repo_id}"


def generation_key(repo_id: str) -> str:
    return f"{NAMESPACE}:generation:{repo_id}"


def lock_key(repo_id: str) -> str:
    return f"{NAMESPACE}:lock:{repo_id}"


def connect(settings: RedisSettings) -> Any:
    """A redis-py client with short timeouts and no retries: a slow Redis must cost one
    timeout, then the render goes on without it."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return redis.Redis.from_url(
        settings.url,
        password=settings.password,
        socket_connect_timeout=settings.timeout,
        socket_timeout=settings.timeout,
        retry=Retry(NoBackoff(), 0),
        retry_on_timeout=False,
        health_check_interval=0,
        client_name="tagpin",
    )


def _describe(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0][:200].rstrip(".")


class RedisStore:
    """Signed tag entries, generations and locks in Redis; every method raises SharedCacheDown."""

    def __init__(self, settings: RedisSettings, client: Any = None) -> None:
        self.settings = settings
        self._client = client
        self._guard = threading.Lock()

    def _redis(self) -> Any:
        with self._guard:
            if self._client is None:
                self._client = connect(self.settings)
            return self._client

    def _run(self, action: Callable[[Any], Any]) -> Any:
        try:
            import redis
        except ImportError as error:  # an image built without the client
            raise SharedCacheDown(f"the redis client is not installed ({error})") from None
        try:
            return action(self._redis())
        except (redis.RedisError, OSError, ValueError) as error:
            raise SharedCacheDown(_describe(error)) from None

    def read(
        self, repo: EcrRepository, tags: Collection[str]
    ) -> tuple[str, dict[str, bytes | None]]:
        """The repository's generation and the raw entry of each tag (None: none)."""
        repo_id = _repo_id(repo)
        ordered = sorted(tags)

        def action(client: Any) -> tuple[str, dict[str, bytes | None]]:
            pipe = client.pipeline(transaction=False)
            pipe.get(generation_key(repo_id))
            if ordered:
                pipe.hmget(tags_key(repo_id), ordered)
            generation, *values = pipe.execute()
            return _text(generation), dict(zip(ordered, values[0] if values else [], strict=True))

        result: tuple[str, dict[str, bytes | None]] = self._run(action)
        return result

    def read_listing(self, repo: EcrRepository) -> tuple[str, bytes | None]:
        """The repository's generation and its raw listing (None: none). At most
        MAX_LISTING_BYTES + 1 bytes are read: a longer value is not one tagpin wrote."""
        repo_id = _repo_id(repo)

        def action(client: Any) -> tuple[str, bytes | None]:
            pipe = client.pipeline(transaction=False)
            pipe.get(generation_key(repo_id))
            pipe.getrange(listing_key(repo_id), 0, MAX_LISTING_BYTES)
            generation, raw = pipe.execute()
            return _text(generation), raw or None  # GETRANGE answers b"" for no key

        result: tuple[str, bytes | None] = self._run(action)
        return result

    def generation(self, repo: EcrRepository) -> str:
        key = generation_key(_repo_id(repo))
        return _text(self._run(lambda client: client.get(key)))

    def write(self, repo: EcrRepository, entries: Mapping[str, bytes], ttl: float) -> None:
        repo_id = _repo_id(repo)

        def action(client: Any) -> None:
            pipe = client.pipeline(transaction=True)
            pipe.hset(tags_key(repo_id), mapping=dict(entries))
            pipe.pexpire(tags_key(repo_id), max(1, int(ttl * 1000)))
            pipe.execute()

        self._run(action)

    def write_listing(
        self,
        repo: EcrRepository,
        listing: bytes,
        list_ttl: float,
        entries: Mapping[str, bytes],
        ttl: float,
    ) -> None:
        """The listing (for `list_ttl`) and its tags' digest entries (for `ttl`), at once."""
        repo_id = _repo_id(repo)

        def action(client: Any) -> None:
            pipe = client.pipeline(transaction=True)
            pipe.set(listing_key(repo_id), listing, px=max(1, int(list_ttl * 1000)))
            if entries:
                pipe.hset(tags_key(repo_id), mapping=dict(entries))
                pipe.pexpire(tags_key(repo_id), max(1, int(ttl * 1000)))
            pipe.execute()

        self._run(action)

    def lock(self, repo: EcrRepository, ttl: float) -> str | None:
        """A token if this process now holds the repository's lock, None if another does."""
        import secrets

        token = secrets.token_hex(16)
        key = lock_key(_repo_id(repo))
        taken = self._run(lambda client: client.set(key, token, nx=True, px=int(ttl * 1000)))
        return token if taken else None

    def locked(self, repo: EcrRepository) -> bool:
        key = lock_key(_repo_id(repo))
        return bool(self._run(lambda client: client.exists(key)))

    def unlock(self, repo: EcrRepository, token: str) -> None:
        key = lock_key(_repo_id(repo))
        self._run(lambda client: client.eval(_RELEASE, 1, key, token))

    def bump_generation(self, repo_id: str) -> str:
        """A new generation for the repository: every entry shared before it becomes stale."""
        key = generation_key(repo_id)

        def action(client: Any) -> str:
            pipe = client.pipeline(transaction=True)
            pipe.incr(key)
            pipe.expire(key, GENERATION_TTL_SECONDS)
            generation, _ = pipe.execute()
            return _text(generation)

        result: str = self._run(action)
        return result


def _text(value: Any) -> str:
    if value is None:
        return "0"
    return value.decode() if isinstance(value, bytes) else str(value)


# -- signing --------------------------------------------------------------------------------


def _mac(key: bytes, repo: EcrRepository, tag: str, body: Mapping[str, Any]) -> str:
    """HMAC over the entry and where it belongs, so no valid entry can be moved to another
    tag, repository, account or Region."""
    message = json.dumps(
        [NAMESPACE, _repo_id(repo), tag, body], sort_keys=True, separators=(",", ":")
    ).encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def sign_entry(key: bytes, repo: EcrRepository, entry: SharedEntry) -> bytes:
    body = {
        "digest": entry.info.digest,
        "pushed_at": entry.info.pushed_at,
        "media_type": entry.info.media_type,
        "fetched_at": entry.fetched_at,
        "generation": entry.generation,
        "seen": entry.seen,
    }
    document = {"body": body, "hmac": _mac(key, repo, entry.info.tag, body)}
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def _stored_tag(tag: Any, digest: Any, pushed_at: Any, media_type: Any) -> TagInfo | None:
    """A tag's answer as an entry or a listing stores it, or None if it is not well-formed.
    Raises ValueError/TypeError on fields of the wrong type, as the callers expect."""
    if not isinstance(tag, str) or not is_digest(digest):
        return None
    return TagInfo(
        tag=tag,
        digest=digest,
        pushed_at=None if pushed_at is None else float(pushed_at),
        media_type=None if media_type is None else str(media_type),
    )


def verify_entry(key: bytes, repo: EcrRepository, tag: str, raw: bytes) -> SharedEntry | None:
    """The entry if it is well-formed and signed with `key` for this repository and tag."""
    try:
        document = json.loads(raw)
        body, mac = document["body"], document["hmac"]
        if not isinstance(mac, str) or not hmac.compare_digest(mac, _mac(key, repo, tag, body)):
            return None
        info = _stored_tag(tag, body["digest"], body["pushed_at"], body["media_type"])
        if info is None:
            return None
        seen = body.get("seen")  # absent in entries from before push records
        return SharedEntry(
            info,
            float(body["fetched_at"]),
            str(body["generation"]),
            None if seen is None else float(seen),
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def _listing_mac(key: bytes, repo: EcrRepository, body: Mapping[str, Any]) -> str:
    """HMAC over a listing, marked as one: "list" stands where a tag entry's repository id
    stands (ids always hold colons), so neither can pass for the other, nor a listing move to
    another repository, account or Region."""
    message = json.dumps(
        [NAMESPACE, "list", _repo_id(repo), body], sort_keys=True, separators=(",", ":")
    ).encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def sign_listing(key: bytes, repo: EcrRepository, listing: SharedListing) -> bytes:
    body = {
        "tags": [
            [info.tag, info.digest, info.pushed_at, info.media_type]
            for _, info in sorted(listing.found.items())
        ],
        "fetched_at": listing.fetched_at,
        "generation": listing.generation,
        "seen": listing.seen,
    }
    document = {"body": body, "hmac": _listing_mac(key, repo, body)}
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def verify_listing(key: bytes, repo: EcrRepository, raw: bytes) -> SharedListing | None:
    """The listing if it is well-formed and signed with `key` for this repository."""
    if len(raw) > MAX_LISTING_BYTES:
        return None
    try:
        document = json.loads(raw)
        body, mac = document["body"], document["hmac"]
        if not isinstance(mac, str) or not hmac.compare_digest(mac, _listing_mac(key, repo, body)):
            return None
        found: dict[str, TagInfo] = {}
        for tag, digest, pushed_at, media_type in body["tags"]:
            info = _stored_tag(tag, digest, pushed_at, media_type)
            if info is None:
                return None
            found[tag] = info
        seen = body["seen"]
        return SharedListing(
            found,
            float(body["fetched_at"]),
            str(body["generation"]),
            None if seen is None else float(seen),
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


# -- the layer ------------------------------------------------------------------------------


class SharedRegistry:
    """`Registry` answering from Redis, with fleet-wide single flight in front of `inner`.

    `ttl` is how long a shared entry is trusted (TAGPIN_CACHE_TTL), `list_ttl` a shared tag
    listing (TAGPIN_TAG_LIST_TTL); `wait_limit` bounds how long a replica waits for another's
    answer (the ECR deadline) before asking ECR itself.
    `read=False` (TAGPIN_CACHE=refresh) asks ECR and only writes. `pushes` holds the
    pushes announced on the Application (cmp.registry.pushes): shared entries pass the same rule as
    local ones (`PushFloors.admits`), so the push record guards Redis too, even when the
    webhook could not bump the repository's generation there.
    """

    def __init__(
        self,
        inner: Registry,
        store: RedisStore,
        *,
        ttl: float,
        list_ttl: float,
        wait_limit: float,
        warnings: list[str],
        read: bool = True,
        pushes: PushFloors | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        key = store.settings.signing_key
        if key is None:
            raise ValueError("a shared cache needs a signing key")
        self._inner = inner
        self._store: RedisStore | None = store
        self._key = key
        self._ttl = min(ttl, GENERATION_TTL_SECONDS / 2)
        self._list_ttl = min(list_ttl, GENERATION_TTL_SECONDS / 2)
        self._read = read
        self._pushes = pushes
        self._clock = clock
        self._monotonic = monotonic
        self._sleep = sleep
        self._give_up_at = monotonic() + wait_limit
        self.warnings = warnings
        self.counts: Counter[str] = Counter()  # hits, ecr, waits, rejected
        self._fetched: dict[tuple[EcrRepository, str], float] = {}
        self._listed: dict[EcrRepository, float] = {}
        self._guard = threading.Lock()
        self._warned_rejected = False
        self._seen_rejected: set[tuple[EcrRepository, str, bytes]] = set()  # (…, sha256)

    # -- Registry ---------------------------------------------------------------------------

    def describe_tags(self, repo: EcrRepository, tags: Collection[str]) -> Lookup:
        wanted = frozenset(tags)
        partial: dict[str, SharedEntry] = {}  # what Redis holds of `wanted`, at the last read

        def look(store: RedisStore) -> tuple[str, Lookup | None]:
            generation, found = self._shared(store, repo, wanted)
            partial.clear()
            partial.update(found)
            return generation, self._hit(repo, found) if len(found) == len(wanted) else None

        def fill(generation: str | None, token: str | None) -> Lookup:
            # Without a generation Redis was not read (refresh mode) or went down: ask for all.
            known = partial if generation is not None else {}
            return self._fill(repo, wanted, known, generation, token)

        return self._single_flight(repo, look, fill)

    def list_tags(self, repo: EcrRepository) -> Lookup:
        def look(store: RedisStore) -> tuple[str, Lookup | None]:
            generation, listing = self._shared_listing(store, repo)
            return generation, None if listing is None else self._listing_hit(repo, listing)

        return self._single_flight(
            repo, look, lambda generation, token: self._fill_listing(repo, generation, token)
        )

    def listed_at(self, repo: EcrRepository) -> float | None:
        """When the last listing this layer answered from Redis was fetched from ECR, so the
        layers above keep its age; None when it came from ECR just now."""
        with self._guard:
            return self._listed.get(repo)

    def fetched_times(self, repo: EcrRepository, tags: Collection[str]) -> dict[str, float]:
        """When each shared answer was fetched from ECR, so the layers above keep its age."""
        with self._guard:
            return {t: self._fetched[(repo, t)] for t in tags if (repo, t) in self._fetched}

    # -- helpers ----------------------------------------------------------------------------

    def _single_flight(
        self,
        repo: EcrRepository,
        look: Callable[[RedisStore], tuple[str, Lookup | None]],
        fill: Callable[[str | None, str | None], Lookup],
    ) -> Lookup:
        """`look` answers from Redis (the generation read, and a Lookup if Redis holds one);
        else one replica of the fleet takes the repository's lock and `fill`s from ECR while
        the others wait, then look again. `fill(generation, token)` releases the lock."""
        if not self._read:
            return fill(None, None)
        while True:
            store = self._store
            if store is None:
                return fill(None, None)
            try:
                generation, answer = look(store)
                if answer is not None:
                    return answer
                token = store.lock(repo, LOCK_TTL_SECONDS)
                if token is not None:
                    # Re-read under the lock: the previous holder may have just written.
                    generation, answer = look(store)
                    if answer is not None:
                        store.unlock(repo, token)
                        return answer
                    return fill(generation, token)
                if not self._wait(store, repo):
                    # Waited as long as ECR may take: ask it without the lock.
                    return fill(generation, None)
            except SharedCacheDown as problem:
                self._down(problem)

    def _admitted(
        self,
        repo: EcrRepository,
        generation: str,
        oldest: float,
        entry: SharedEntry | SharedListing,
    ) -> bool:
        return (
            entry.generation == generation  # a push announced since makes it stale
            and oldest < entry.fetched_at
            # Fetched after an announced push, or by a render that knew it: clock skew
            # between pods is allowed for, as in the local caches.
            and (self._pushes is None or self._pushes.admits(repo, entry.fetched_at, entry.seen))
        )

    def _shared(
        self, store: RedisStore, repo: EcrRepository, wanted: frozenset[str]
    ) -> tuple[str, dict[str, SharedEntry]]:
        generation, raw = store.read(repo, wanted)
        oldest = self._clock() - self._ttl
        found: dict[str, SharedEntry] = {}
        for tag, value in raw.items():
            if value is None:
                continue
            entry = verify_entry(self._key, repo, tag, value)
            if entry is None:
                self._rejected(repo, f"entry for {repo.uri}:{tag}", value)
            elif self._admitted(repo, generation, oldest, entry):
                found[tag] = entry
        return generation, found

    def _shared_listing(
        self, store: RedisStore, repo: EcrRepository
    ) -> tuple[str, SharedListing | None]:
        generation, raw = store.read_listing(repo)
        if raw is None:
            return generation, None
        listing = verify_listing(self._key, repo, raw)
        if listing is None:
            self._rejected(repo, f"tag list of {repo.uri}", raw)
            return generation, None
        if not self._admitted(repo, generation, self._clock() - self._list_ttl, listing):
            return generation, None
        return generation, listing

    def _listing_hit(self, repo: EcrRepository, listing: SharedListing) -> Lookup:
        self.counts["hits"] += 1
        with self._guard:
            self._listed[repo] = listing.fetched_at
        return Lookup(found=dict(listing.found))

    def _hit(self, repo: EcrRepository, found: Mapping[str, SharedEntry]) -> Lookup:
        self.counts["hits"] += 1
        return Lookup(found=self._remember(repo, found))

    def _remember(
        self, repo: EcrRepository, found: Mapping[str, SharedEntry]
    ) -> dict[str, TagInfo]:
        with self._guard:
            for tag, entry in found.items():
                self._fetched[(repo, tag)] = entry.fetched_at
        return {tag: entry.info for tag, entry in found.items()}

    def _fill(
        self,
        repo: EcrRepository,
        wanted: frozenset[str],
        known: Mapping[str, SharedEntry],
        generation: str | None,
        token: str | None,
    ) -> Lookup:
        """Ask ECR for what Redis lacks, share the answer (if Redis is up), release the lock."""
        try:
            before = self._store
            if generation is None and before is not None:
                # Read before ECR is asked: a push announced meanwhile must make this stale.
                generation = self._quietly(lambda: before.generation(repo))
            fetched_at = self._clock()
            seen = self._pushes.announced(repo) if self._pushes is not None else None
            self.counts["ecr"] += 1
            answer = self._inner.describe_tags(repo, sorted(wanted - known.keys()))
            sharing = self._store
            if sharing is not None and answer.found and generation is not None:
                entries = {
                    tag: sign_entry(
                        self._key, repo, SharedEntry(info, fetched_at, generation, seen)
                    )
                    for tag, info in answer.found.items()
                }
                self._quietly(lambda: sharing.write(repo, entries, self._ttl))
        finally:
            holder = self._store
            if token is not None and holder is not None:
                self._quietly(lambda: holder.unlock(repo, token))
        with self._guard:  # fresh from ECR: no older shared age applies to these
            for tag in answer.found:
                self._fetched.pop((repo, tag), None)
        return Lookup(
            found={**self._remember(repo, known), **answer.found},
            missing=answer.missing,
            repository_missing=answer.repository_missing,
        )

    def _fill_listing(
        self, repo: EcrRepository, generation: str | None, token: str | None
    ) -> Lookup:
        """List the repository in ECR, share the listing and its digests, release the lock.
        A repository that does not exist is not shared, nor a listing over MAX_LISTING_BYTES."""
        try:
            before = self._store
            if generation is None and before is not None:
                # Read before ECR is asked: a push announced meanwhile must make this stale.
                generation = self._quietly(lambda: before.generation(repo))
            fetched_at = self._clock()
            seen = self._pushes.announced(repo) if self._pushes is not None else None
            self.counts["ecr"] += 1
            answer = self._inner.list_tags(repo)
            sharing = self._store
            if sharing is not None and generation is not None and not answer.repository_missing:
                listing = sign_listing(
                    self._key, repo, SharedListing(answer.found, fetched_at, generation, seen)
                )
                if len(listing) <= MAX_LISTING_BYTES:
                    entries = {
                        tag: sign_entry(
                            self._key, repo, SharedEntry(info, fetched_at, generation, seen)
                        )
                        for tag, info in answer.found.items()
                    }
                    self._quietly(
                        lambda: sharing.write_listing(
                            repo, listing, self._list_ttl, entries, self._ttl
                        )
                    )
        finally:
            holder = self._store
            if token is not None and holder is not None:
                self._quietly(lambda: holder.unlock(repo, token))
        with self._guard:  # fresh from ECR: no older shared age applies
            self._listed.pop(repo, None)
            for tag in answer.found:
                self._fetched.pop((repo, tag), None)
        return answer

    def _wait(self, store: RedisStore, repo: EcrRepository) -> bool:
        """Wait while another replica holds the lock; False once the wait limit has passed."""
        self.counts["waits"] += 1
        while self._monotonic() < self._give_up_at:
            self._sleep(POLL_SECONDS)
            if not store.locked(repo):
                return True
        return False

    def _quietly(self, action: Callable[[], Any]) -> Any:
        try:
            return action()
        except SharedCacheDown as problem:
            self._down(problem)
            return None

    def _down(self, problem: SharedCacheDown) -> None:
        with self._guard:
            store, self._store = self._store, None
        if store is not None:
            self.warnings.append(
                f"the shared digest cache at {store.settings.shown} cannot be used: {problem}; "
                "resolving with the local cache and ECR"
            )

    def _rejected(self, repo: EcrRepository, what: str, value: bytes) -> None:
        with self._guard:
            seen = (repo, what, hashlib.sha256(value).digest())
            if seen in self._seen_rejected:  # read again under the lock: one entry, one count
                return
            self._seen_rejected.add(seen)
            self.counts["rejected"] += 1
            first, self._warned_rejected = not self._warned_rejected, True
        if first:
            self.warnings.append(
                f"ignored the shared cache {what}: it is not signed with "
                f"{SIGNING_KEY_ENV} (tampered with, or written with another key); asking ECR "
                "(further ones are counted, not repeated)"
            )


# -- the webhook's side ---------------------------------------------------------------------


class PushGenerations:
    """Announced pushes, fleet-wide: the webhook bumps the pushed repository's generation, so
    every replica treats what Redis holds for it as stale and the first render after the push
    asks ECR once for the whole fleet. The webhook writes no digests (it has no AWS access)."""

    def __init__(self, settings: RedisSettings, client: Any = None) -> None:
        self._store = RedisStore(settings, client)
        self.shown = settings.shown

    def bump(self, repository: str) -> str | None:
        """`repository` as push events name it (`<host>/<path>`); the problem, or None.

        Repositories outside private ECR have nothing cached and are left alone."""
        from cmp.images.ecr import ecr_registry

        host, _, name = repository.partition("/")
        registry = ecr_registry(host)
        if registry is None or not name:
            return None
        try:
            self._store.bump_generation(repository_id(registry.account, registry.region, name))
        except SharedCacheDown as problem:
            return f"cannot mark {repository} as pushed in {self.shown}: {problem}"
        return None
