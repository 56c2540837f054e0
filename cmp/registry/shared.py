"""The fleet-wide digest cache: Redis (Argo CD's own, ElastiCache, Valkey) between the local
caches and ECR, so every repo-server replica shares one ECR answer per repository.

Layers: memory → disk (cmp.registry.cache) → Redis (here) → ECR, each answer written back up.
`SharedRegistry` is the `Registry` the disk cache asks on a miss; it answers from Redis, or takes
a short per-repository Redis lock (`SET NX PX`) so that one replica of the fleet asks ECR while
the others wait for its answer; the repositories a render's local caches miss are read at once,
in one pipelined round trip (`prefetch`). Both questions are shared: tag → digest lookups, and
the tag listings of branch deploys (whose digests also fill the tag → digest entries).

Whoever can write Redis must not choose a digest tagpin deploys (GHSA-9766-5277-j5hr), nor stall
or fail a render: every value carries an HMAC-SHA256 over its raw bytes and where it belongs,
keyed by TAGPIN_REDIS_SIGNING_KEY, checked before a byte of it is parsed; values are read with a
size bound the server applies; a lock no replica could have taken is replaced. Anything else is
ignored, counted, and overwritten by the next answer ECR gives. "Not found" is never shared.

Redis trouble never fails a render: the first problem (unreachable, timeout, auth, TLS, out of
memory, a reply that breaks the protocol's bounds) gives one warning and the rest of the render
goes on without Redis. The client (cmp.registry.resp) is imported on the first lookup the local
caches miss, never on a warm render.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar
from urllib.parse import urlsplit

from cmp.errors import ConfigError
from cmp.registry.base import (
    CachedTag,
    Fetched,
    Lookup,
    Registry,
    TagInfo,
    ages,
    answer_from,
    is_digest,
)
from cmp.registry.freshness import freshness
from cmp.registry.observe import SILENT, RegistryObserver
from cmp.registry.pushes import PushFloors
from cmp.registry.redis_url import check_files, parse_redis_url
from cmp.settings import Settings, env_name

if TYPE_CHECKING:
    from cmp.registry.names import EcrRepository
    from cmp.registry.observe import Question, RedisTrouble
    from cmp.registry.resp import Command, Reply, RespClient

# v2: values are `<hex HMAC><JSON body>`, checked before they are parsed (v1 parsed, then
# checked). A new namespace, so replicas of both versions ignore each other during a rollout.
NAMESPACE = "tagpin:v2"
MIN_SIGNING_KEY_BYTES = 32
# A generation outlives every entry stamped with it by far: an entry must never become valid
# again because the generation key expired (SharedRegistry caps its TTL below this).
GENERATION_TTL_SECONDS = 7 * 24 * 3600
LOCK_TTL_SECONDS = 10.0  # a holder that died frees the repository this soon
# A listing bigger than this (some 5,000 tags) is not shared: each replica lists such a
# repository itself, and no replica ever reads more than this from Redis for one.
MAX_LISTING_BYTES = 1 << 20
MAX_ENTRY_BYTES = 4096  # a signed entry is under 1 KiB; Redis sends at most this + 1 of one
MAX_GENERATION_BYTES = 64  # INCR's numbers, or the random one a bump puts in place of garbage
POLL_SECONDS = 0.02  # how often a waiting replica looks for the holder's answer
# A render's Redis round trips take at most this many TAGPIN_REDIS_TIMEOUT_MS in all (5 s by
# default, some thousand round trips of a healthy Redis): a Redis answering each just in time
# cannot hold a render either.
RENDER_BUDGET_TIMEOUTS = 10
_MAC_HEX = 64  # HMAC-SHA256, hex

# Named in messages.
URL_ENV = env_name("redis_url")
PASSWORD_ENV = env_name("redis_password")
SIGNING_KEY_ENV = env_name("redis_signing_key")
TIMEOUT_ENV = env_name("redis_timeout_ms")


class RedisSettings(NamedTuple):
    url: str  # may carry a password; checked by redis_settings
    password: str | None
    signing_key: bytes | None
    timeout: float = 0.5  # seconds, for connecting and for each round trip

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
    + disk only). The whole URL is checked here (cmp.registry.redis_url), and secret files are
    read here, when Redis is used, not when settings are built.

    The webhook writes no digests, so it needs no signing key (`signing_key_required=False`).
    """
    url = settings.redis_url.strip()
    if not url:
        return None
    check_files(parse_redis_url(url))
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

    @property
    def fetched(self) -> Fetched:
        return Fetched(self.fetched_at, self.seen)


class SharedListing(NamedTuple):
    """Every tagged image of a repository, as one ECR listing saw it."""

    found: Mapping[str, TagInfo]
    fetched_at: float
    generation: str
    seen: float | None = None

    @property
    def fetched(self) -> Fetched:
        return Fetched(self.fetched_at, self.seen)


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


def connect(settings: RedisSettings) -> RespClient:
    """The client, with TAGPIN_REDIS_TIMEOUT_MS for connecting and for each round trip, no
    retries: a slow or hostile Redis costs one timeout, then the render goes on without it."""
    from cmp.registry.resp import RespClient

    address = parse_redis_url(settings.url)
    return RespClient(address, settings.password, settings.timeout, name="tagpin")


def _describe(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0][:200].rstrip(".")


class Lock(NamedTuple):
    """An attempt at a repository's lock."""

    token: str | None  # ours to release; None while another replica holds the lock
    replaced: bool = False  # a lock no replica could have taken was removed first


# Lua scripts: one round trip each, atomic, and none fails on a key of another type (something
# else wrote it) or sends more of a value than tagpin reads. `text` is a string key's first bytes:
# false when the key is absent, `other` when it holds another type.
_TEXT = """
local function text(key, last, other)
  local kind = redis.call('type', key).ok
  if kind == 'string' then return redis.call('getrange', key, 0, last) end
  if kind == 'none' then return false end
  return other
end
"""
# KEYS: generation, tags. ARGV: generation's last byte, an entry's size limit, the tags.
# An entry comes cut at limit + 1 bytes (so it is refused, not read whole); a tags key that is
# not a hash answers "" for every tag (refused and counted, then replaced by the next fill).
_READ_ENTRIES = (
    _TEXT
    + """
local out = {text(KEYS[1], ARGV[1], false)}
local kind = redis.call('type', KEYS[2]).ok
for i = 3, #ARGV do
  local value = false
  if kind == 'hash' then
    value = redis.call('hget', KEYS[2], ARGV[i])
    if value then value = string.sub(value, 1, ARGV[2] + 1) end
  elseif kind ~= 'none' then
    value = ''
  end
  out[#out + 1] = value
end
return out
"""
)
# KEYS: generation, listing. ARGV: generation's last byte, the listing's.
_READ_LISTING = _TEXT + "return {text(KEYS[1], ARGV[1], false), text(KEYS[2], ARGV[2], '')}"
# Tag, entry pairs from ARGV[first] into the hash `key`, which then expires in `ttl` ms; a key of
# another type is replaced.
_FILL = """
local function fill(key, ttl, first)
  if first > #ARGV then return end
  if redis.call('type', key).ok ~= 'hash' then redis.call('del', key) end
  for i = first, #ARGV, 2 do redis.call('hset', key, ARGV[i], ARGV[i + 1]) end
  redis.call('pexpire', key, ttl)
end
"""
# KEYS: tags. ARGV: ttl ms, then tag, entry pairs.
_WRITE_ENTRIES = _FILL + "fill(KEYS[1], ARGV[1], 2) return 1"
# KEYS: listing, tags. ARGV: the listing ("": not shared, drop whatever is there), its ttl ms,
# the entries' ttl ms, then tag, entry pairs.
_WRITE_LISTING = (
    _FILL
    + """
if ARGV[1] == '' then redis.call('del', KEYS[1])
else redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2]) end
fill(KEYS[2], ARGV[3], 4)
return 1
"""
)
# KEYS: lock. ARGV: token, ttl ms. 1: taken; 2: taken in place of a lock no replica takes (no
# expiry, or longer than replicas set: planted, so removing it breaks no holder's lock);
# 0: another replica holds it.
_LOCK = """
local ttl = redis.call('pttl', KEYS[1])
local planted = ttl == -1 or ttl > tonumber(ARGV[2])
if planted then redis.call('del', KEYS[1]) end
if redis.call('set', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  if planted then return 2 end
  return 1
end
return 0
"""
# Compare-and-delete: release the lock only while it still holds our token (it may have
# expired and been taken by another replica meanwhile).
_UNLOCK = """
if redis.call('type', KEYS[1]).ok == 'string' and redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""
# KEYS: generation. ARGV: its ttl s, a random number for a generation INCR cannot count on
# (something else wrote it): a value no entry was stamped with, so the push still makes every
# shared entry stale.
_BUMP = """
local generation = redis.pcall('incr', KEYS[1])
if type(generation) ~= 'number' then
  redis.call('set', KEYS[1], ARGV[2])
  generation = tonumber(ARGV[2])
end
redis.call('expire', KEYS[1], ARGV[1])
return generation
"""


class RedisStore:
    """Signed tag entries, generations and locks in Redis; every method raises SharedCacheDown.

    Each call is one round trip within TAGPIN_REDIS_TIMEOUT_MS; `budget` bounds all of them
    together (a render's store: `for_render`), None leaves only that per round trip (the
    webhook: one round trip per push)."""

    def __init__(self, settings: RedisSettings, *, budget: float | None = None) -> None:
        self.settings = settings
        self._budget = budget
        self._spent = 0.0
        self._client: RespClient | None = None
        self._guard = threading.Lock()

    @classmethod
    def for_render(cls, settings: RedisSettings) -> RedisStore:
        return cls(settings, budget=settings.timeout * RENDER_BUDGET_TIMEOUTS)

    def _execute(self, command: Command) -> Reply:
        [reply] = self._execute_all([command])
        return reply

    def _execute_all(self, commands: Sequence[Command]) -> list[Reply]:
        """`commands` in one round trip (pipelined), their replies in order."""
        from cmp.registry.resp import RedisProblem, RedisTimeout

        with self._guard:
            if self._client is None:
                self._client = connect(self.settings)
            client = self._client
            left = None if self._budget is None else self._budget - self._spent
        if left is not None and left <= 0:
            raise SharedCacheDown(self._over_budget())
        started = time.monotonic()
        try:
            return client.execute(commands, None if left is None else started + left)
        except RedisTimeout as error:
            if left is not None and left < self.settings.timeout:
                raise SharedCacheDown(self._over_budget()) from None
            raise SharedCacheDown(f"{error} ({TIMEOUT_ENV})") from None
        except (RedisProblem, OSError, ValueError) as error:  # ValueError: an IDNA host name
            raise SharedCacheDown(_describe(error)) from None
        finally:
            with self._guard:
                self._spent += time.monotonic() - started

    def _over_budget(self) -> str:
        return (
            f"its round trips took {self._budget:g} s in all for this render "
            f"({RENDER_BUDGET_TIMEOUTS} x {TIMEOUT_ENV})"
        )

    def _eval(self, script: str, keys: Sequence[str], *args: str | bytes | int) -> Reply:
        return self._execute(("EVAL", script, len(keys), *keys, *args))

    def read(
        self, repo: EcrRepository, tags: Collection[str]
    ) -> tuple[str, dict[str, bytes | None]]:
        """The repository's generation and the raw entry of each tag (None: none), each cut at
        MAX_ENTRY_BYTES + 1 bytes by Redis itself."""
        ordered = sorted(tags)
        return _entries_read(self._execute(_read_command(repo, ordered)), ordered)

    def read_many(
        self, requests: Mapping[EcrRepository, Collection[str]]
    ) -> dict[EcrRepository, tuple[str, dict[str, bytes | None]]]:
        """`read` of many repositories, pipelined: one round trip, or a few when their entries
        could carry more than a round trip may (cmp.registry.resp.MAX_ROUND_TRIP_BYTES)."""
        from cmp.registry.resp import MAX_ROUND_TRIP_BYTES

        batches: list[list[tuple[EcrRepository, list[str]]]] = [[]]
        size = 0
        for repo, tags in requests.items():
            ordered = sorted(tags)
            cost = (len(ordered) + 1) * (MAX_ENTRY_BYTES + 32)  # each entry at its bound
            if batches[-1] and size + cost > MAX_ROUND_TRIP_BYTES // 2:
                batches.append([])
                size = 0
            batches[-1].append((repo, ordered))
            size += cost
        read: dict[EcrRepository, tuple[str, dict[str, bytes | None]]] = {}
        for batch in batches:
            replies = self._execute_all([_read_command(repo, ordered) for repo, ordered in batch])
            for (repo, ordered), reply in zip(batch, replies, strict=True):
                read[repo] = _entries_read(reply, ordered)
        return read

    def read_listing(self, repo: EcrRepository) -> tuple[str, bytes | None]:
        """The repository's generation and its raw listing (None: none). At most
        MAX_LISTING_BYTES + 1 bytes are read: a longer value is not one tagpin wrote."""
        repo_id = _repo_id(repo)
        keys = (generation_key(repo_id), listing_key(repo_id))
        reply = self._eval(_READ_LISTING, keys, MAX_GENERATION_BYTES - 1, MAX_LISTING_BYTES)
        generation, listing = _values(reply, 2)
        return _text(generation), listing

    def generation(self, repo: EcrRepository) -> str:
        return self.read(repo, ())[0]

    def write(self, repo: EcrRepository, entries: Mapping[str, bytes], ttl: float) -> None:
        repo_id = _repo_id(repo)
        pairs = [part for tag, entry in sorted(entries.items()) for part in (tag, entry)]
        self._eval(_WRITE_ENTRIES, (tags_key(repo_id),), _milliseconds(ttl), *pairs)

    def write_listing(
        self,
        repo: EcrRepository,
        listing: bytes | None,
        list_ttl: float,
        entries: Mapping[str, bytes],
        ttl: float,
    ) -> None:
        """The listing (for `list_ttl`) and its tags' digest entries (for `ttl`), at once;
        `listing=None` removes whatever the listing key holds (a listing too big to share)."""
        repo_id = _repo_id(repo)
        pairs = [part for tag, entry in sorted(entries.items()) for part in (tag, entry)]
        keys = (listing_key(repo_id), tags_key(repo_id))
        self._eval(
            _WRITE_LISTING,
            keys,
            listing or b"",
            _milliseconds(list_ttl),
            _milliseconds(ttl),
            *pairs,
        )

    def lock(self, repo: EcrRepository, ttl: float) -> Lock:
        """Take the repository's lock if no replica holds it."""
        import secrets

        token = secrets.token_hex(16)
        taken = _integer(self._eval(_LOCK, (lock_key(_repo_id(repo)),), token, _milliseconds(ttl)))
        return Lock(token if taken else None, replaced=taken == 2)

    def locked(self, repo: EcrRepository) -> bool:
        return _integer(self._execute(("EXISTS", lock_key(_repo_id(repo))))) > 0

    def unlock(self, repo: EcrRepository, token: str) -> None:
        self._eval(_UNLOCK, (lock_key(_repo_id(repo)),), token)

    def bump_generation(self, repo_id: str) -> str:
        """A new generation for the repository: every entry shared before it becomes stale."""
        import secrets

        fresh = secrets.randbelow(1 << 62) + (1 << 62)  # far above any count of pushes
        reply = self._eval(_BUMP, (generation_key(repo_id),), GENERATION_TTL_SECONDS, fresh)
        return str(_integer(reply))


def _read_command(repo: EcrRepository, ordered: Sequence[str]) -> Command:
    repo_id = _repo_id(repo)
    keys = (generation_key(repo_id), tags_key(repo_id))
    limits = (MAX_GENERATION_BYTES - 1, MAX_ENTRY_BYTES)
    return ("EVAL", _READ_ENTRIES, len(keys), *keys, *limits, *ordered)


def _entries_read(reply: Reply, ordered: Sequence[str]) -> tuple[str, dict[str, bytes | None]]:
    generation, *values = _values(reply, 1 + len(ordered))
    return _text(generation), dict(zip(ordered, values, strict=True))


def _milliseconds(seconds: float) -> int:
    return max(1, int(seconds * 1000))


def _integer(reply: Reply) -> int:
    if not isinstance(reply, int):
        raise SharedCacheDown(f"unexpected reply {_shown(reply)} where a number belongs")
    return reply


def _values(reply: Reply, count: int) -> list[bytes | None]:
    """`count` values, each a byte string or None, or SharedCacheDown: whatever answers in
    Redis's place may answer anything."""
    values: list[bytes | None] = []
    if isinstance(reply, list) and len(reply) == count:
        for value in reply:
            if value is not None and not isinstance(value, bytes):
                break
            values.append(value)
        else:
            return values
    raise SharedCacheDown(f"unexpected reply {_shown(reply)} where {count} values belong")


def _shown(reply: Reply) -> str:
    if isinstance(reply, list):
        return f"(an array of {len(reply)})"
    return repr(reply)[:40]


def _text(value: bytes | None) -> str:
    return "0" if value is None else value.decode("utf-8", "replace")


# -- signing --------------------------------------------------------------------------------
#
# A value is `<HMAC-SHA256, hex><JSON body>`. The MAC covers the body's raw bytes and what the
# value is and where it belongs, so nothing is parsed before it is known to come from a holder
# of the key, and no valid value can be moved to another tag, repository, account or Region,
# nor pass as the other kind.


_Read = TypeVar("_Read")


def _context(kind: str, repo: EcrRepository, tag: str = "") -> bytes:
    return json.dumps([NAMESPACE, kind, _repo_id(repo), tag]).encode() + b"\n"


def _signed(key: bytes, context: bytes, body: Mapping[str, Any]) -> bytes:
    data = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return hmac.new(key, context + data, hashlib.sha256).hexdigest().encode() + data


def _authentic_body(key: bytes, context: bytes, raw: bytes, limit: int) -> Any:
    """The parsed body of `raw` if it is at most `limit` bytes and its MAC is right, else None.
    The MAC is checked over the raw bytes before any of them is parsed."""
    if not _MAC_HEX < len(raw) <= limit:
        return None
    mac, data = raw[:_MAC_HEX], raw[_MAC_HEX:]
    if not hmac.compare_digest(
        mac, hmac.new(key, context + data, hashlib.sha256).hexdigest().encode()
    ):
        return None
    try:
        return json.loads(data)
    except (ValueError, RecursionError):  # signed, yet not what tagpin writes: refused all the same
        return None


def _sign(
    key: bytes,
    kind: str,
    repo: EcrRepository,
    tag: str,
    answer: Mapping[str, Any],
    fetched_at: float,
    generation: str,
    seen: float | None,
) -> bytes:
    """`answer`'s fields and its age, signed as a value of `kind` for `repo` (and `tag`)."""
    body = {**answer, "fetched_at": fetched_at, "generation": generation, "seen": seen}
    return _signed(key, _context(kind, repo, tag), body)


def _verify(
    key: bytes,
    kind: str,
    repo: EcrRepository,
    tag: str,
    raw: bytes,
    limit: int,
    read: Callable[[dict[str, Any]], _Read | None],
) -> tuple[_Read, float, str, float | None] | None:
    """What `read` makes of the body of `raw`, and its age (fetched_at, generation, seen), if
    `raw` is signed with `key` as a value of `kind` for `repo` (and `tag`) and well-formed."""
    body = _authentic_body(key, _context(kind, repo, tag), raw, limit)
    try:
        if not isinstance(body, dict):
            return None
        answer = read(body)
        if answer is None:
            return None
        return (
            answer,
            _number(body["fetched_at"]),
            _string(body["generation"]),
            _optional(body["seen"]),
        )
    except (KeyError, TypeError):
        return None


def sign_entry(key: bytes, repo: EcrRepository, entry: SharedEntry) -> bytes:
    info = entry.info
    fields = {"digest": info.digest, "pushed_at": info.pushed_at, "media_type": info.media_type}
    return _sign(
        key, "entry", repo, info.tag, fields, entry.fetched_at, entry.generation, entry.seen
    )


def verify_entry(key: bytes, repo: EcrRepository, tag: str, raw: bytes) -> SharedEntry | None:
    """The entry if it is signed with `key` for this repository and tag, and well-formed."""

    def read(body: dict[str, Any]) -> TagInfo | None:
        return _stored_tag(tag, body["digest"], body["pushed_at"], body["media_type"])

    verified = _verify(key, "entry", repo, tag, raw, MAX_ENTRY_BYTES, read)
    return None if verified is None else SharedEntry(*verified)


def sign_listing(key: bytes, repo: EcrRepository, listing: SharedListing) -> bytes:
    rows = [
        [info.tag, info.digest, info.pushed_at, info.media_type]
        for _, info in sorted(listing.found.items())
    ]
    return _sign(
        key, "list", repo, "", {"tags": rows}, listing.fetched_at, listing.generation, listing.seen
    )


def verify_listing(key: bytes, repo: EcrRepository, raw: bytes) -> SharedListing | None:
    """The listing if it is signed with `key` for this repository, and well-formed."""
    verified = _verify(key, "list", repo, "", raw, MAX_LISTING_BYTES, _stored_listing)
    return None if verified is None else SharedListing(*verified)


def _stored_listing(body: dict[str, Any]) -> dict[str, TagInfo] | None:
    if not isinstance(body["tags"], list):
        return None
    found: dict[str, TagInfo] = {}
    for row in body["tags"]:
        if not isinstance(row, list) or len(row) != 4:
            return None
        info = _stored_tag(*row)
        if info is None:
            return None
        found[info.tag] = info
    return found


def _stored_tag(tag: Any, digest: Any, pushed_at: Any, media_type: Any) -> TagInfo | None:
    """A tag's answer as an entry or a listing stores it; TypeError if a field is not what
    tagpin writes there."""
    if not isinstance(tag, str) or not is_digest(digest):
        return None
    if media_type is not None:
        media_type = _string(media_type)
    return TagInfo(tag=tag, digest=digest, pushed_at=_optional(pushed_at), media_type=media_type)


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError("not a number")
    try:
        return float(value)
    except OverflowError:  # an integer beyond floats
        raise TypeError("not a number") from None


def _optional(value: Any) -> float | None:
    return None if value is None else _number(value)


def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("not a string")
    return value


# -- the layer ------------------------------------------------------------------------------


class SharedRegistry:
    """`Registry` answering from Redis, with fleet-wide single flight in front of `inner`.

    `ttl` is how long a shared entry is trusted (TAGPIN_CACHE_TTL), `list_ttl` a shared tag
    listing (TAGPIN_TAG_LIST_TTL); `wait_limit` (the ECR deadline) bounds how long a render
    waits for other replicas' answers in all before asking ECR itself, and never longer than a
    holder keeps its lock (LOCK_TTL_SECONDS): a lock still there by then is not that holder's.
    `read=False` (TAGPIN_CACHE=refresh) asks ECR and only writes. `pushes` holds the
    pushes announced on the Application (cmp.registry.pushes): shared entries pass the same
    freshness rule as local ones (cmp.registry.freshness), so the push record guards Redis too,
    even when the webhook could not bump the repository's generation there.
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
        observer: RegistryObserver = SILENT,
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
        self._pushes = pushes if pushes is not None else PushFloors()
        self._clock = clock
        self._monotonic = monotonic
        self._sleep = sleep
        self._observer = observer
        self._give_up_at = monotonic() + min(wait_limit, LOCK_TTL_SECONDS)
        self.warnings = warnings
        self.counts: Counter[str] = Counter()  # hits, ecr, waits, rejected, planted_locks
        self._guard = threading.Lock()
        self._warned: set[RedisTrouble] = set()
        self._seen_rejected: set[tuple[EcrRepository, str, bytes]] = set()  # (…, sha256)
        # What `prefetch` read, each taken by its repository's first look: (generation, entries).
        self._read_ahead: dict[EcrRepository, tuple[str, dict[str, bytes | None]]] = {}

    # -- Registry ---------------------------------------------------------------------------

    def describe_tags(self, repo: EcrRepository, tags: Collection[str]) -> Lookup:
        return self._single_flight(repo, frozenset(tags))

    def list_tags(self, repo: EcrRepository) -> Lookup:
        return self._single_flight(repo, None)

    def describe_cached(self, repo: EcrRepository, tags: Collection[str]) -> Lookup | None:
        return None  # Redis is a round trip away

    def prefetch(
        self, requests: Mapping[EcrRepository, Collection[str]]
    ) -> Collection[EcrRepository]:
        """Read every repository asked next in one round trip, on one connection, rather than
        one per repository on a connection per thread; the repositories whose read answers
        every tag asked are ready. Each read is taken by its repository's first look and
        judged there as any read (signature, generation, freshness); the look under the
        repository's lock reads again."""
        store = self._store
        if not self._read or store is None or not requests:
            return ()
        try:
            read = store.read_many(requests)
        except SharedCacheDown as problem:
            self._down(problem)
            return ()
        with self._guard:
            self._read_ahead.update(read)
        return {repo for repo, tags in requests.items() if self._answers(repo, tags, *read[repo])}

    # -- helpers ----------------------------------------------------------------------------

    def _single_flight(self, repo: EcrRepository, wanted: frozenset[str] | None) -> Lookup:
        """One path for both questions (`wanted`: the tags asked, or None for the listing):
        answer from Redis; else one replica of the fleet takes the repository's lock and
        `_fill`s from ECR while the others wait, then look again."""
        held = _Held()
        if not self._read:
            return self._fill(repo, wanted, held, None, None)
        while True:
            store = self._store
            if store is None:
                return self._fill(repo, wanted, _Held(), None, None)
            try:
                generation, answer = self._look(store, repo, wanted, held)
                if answer is not None:
                    return answer
                taken = store.lock(repo, LOCK_TTL_SECONDS)
                if taken.replaced:
                    self._planted_lock(repo)
                token = taken.token
                if token is not None:
                    # Re-read under the lock: the previous holder may have just written.
                    generation, answer = self._look(store, repo, wanted, held)
                    if answer is not None:
                        store.unlock(repo, token)
                        return answer
                    return self._fill(repo, wanted, held, generation, token)
                if not self._wait(store, repo):
                    # Waited as long as ECR may take: ask it without the lock.
                    return self._fill(repo, wanted, held, generation, None)
            except SharedCacheDown as problem:
                self._down(problem)

    def _look(
        self, store: RedisStore, repo: EcrRepository, wanted: frozenset[str] | None, held: _Held
    ) -> tuple[str, Lookup | None]:
        """The generation read, and Redis's answer if it holds the whole question; `held`
        becomes what it holds fresh of the tags asked."""
        if wanted is None:
            generation, raw = store.read_listing(repo)
            listing = None if raw is None else verify_listing(self._key, repo, raw)
            if raw is not None and listing is None:
                self._rejected(repo, f"tag list of {repo.uri}", raw)
            if listing is None or not self._admits(repo, generation, self._list_ttl, listing, held):
                return generation, None
            found = dict(listing.found)
            return generation, self._hit(
                "listing", Lookup(found=found, fetched=dict.fromkeys(found, listing.fetched))
            )
        generation, values = self._taken_ahead(repo, wanted) or store.read(repo, wanted)
        held.entries.clear()
        for tag, value in values.items():
            if value is None:
                continue
            entry = verify_entry(self._key, repo, tag, value)
            if entry is None:
                self._rejected(repo, f"entry for {repo.uri}:{tag}", value)
            elif self._admits(repo, generation, self._ttl, entry, held):
                held.entries[tag] = entry
        if len(held.entries) < len(wanted):
            return generation, None
        return generation, self._hit("tags", answer_from(_kept(held.entries)))

    def _answers(
        self,
        repo: EcrRepository,
        wanted: Collection[str],
        generation: str,
        values: Mapping[str, bytes | None],
    ) -> bool:
        """Whether a read holds every tag asked signed and fresh (the look judges it again,
        counting what it refuses)."""
        for tag in wanted:
            value = values.get(tag)
            entry = None if value is None else verify_entry(self._key, repo, tag, value)
            if entry is None or not self._admits(repo, generation, self._ttl, entry, _Held()):
                return False
        return True

    def _taken_ahead(
        self, repo: EcrRepository, wanted: frozenset[str]
    ) -> tuple[str, dict[str, bytes | None]] | None:
        """What `prefetch` read of the repository, once, if it covers the tags asked."""
        with self._guard:
            ahead = self._read_ahead.pop(repo, None)
        if ahead is None or not wanted <= ahead[1].keys():
            return None
        generation, values = ahead
        return generation, {tag: values[tag] for tag in wanted}

    def _admits(
        self,
        repo: EcrRepository,
        generation: str,
        max_age: float,
        entry: SharedEntry | SharedListing,
        held: _Held,
    ) -> bool:
        """A push bumps the generation (the webhook's side); the push record read from the
        Application guards the entry too, as it does the local caches' (freshness)."""
        now = self._clock()
        verdict = (
            "pushed"
            if entry.generation != generation
            else freshness(repo, entry.fetched, now=now, max_age=max_age, pushes=self._pushes)
        )
        held.pushed = held.pushed or verdict == "pushed"
        return verdict == "fresh"

    def _hit(self, question: Question, answer: Lookup) -> Lookup:
        self.counts["hits"] += 1
        self._observer.answered("redis", question, "fresh")
        return answer

    def _fill(
        self,
        repo: EcrRepository,
        wanted: frozenset[str] | None,
        held: _Held,
        generation: str | None,
        token: str | None,
    ) -> Lookup:
        """Ask ECR for what Redis lacks (the listing, or the tags it does not hold), share the
        answer if Redis is up, release the lock. Without a generation Redis was not read
        (refresh mode) or is down: ECR is asked for everything."""
        if held.pushed:
            self._observer.answered("redis", "listing" if wanted is None else "tags", "pushed")
        known = held.entries if generation is not None else {}
        try:
            before = self._store
            if generation is None and before is not None:
                # Read before ECR is asked: a push announced meanwhile must make this stale.
                generation = self._quietly(lambda: before.generation(repo))
            asked = Fetched(self._clock(), self._pushes.announced(repo))
            self.counts["ecr"] += 1
            if wanted is None:
                answer = self._inner.list_tags(repo)
            else:
                answer = self._inner.describe_tags(repo, sorted(wanted - known.keys()))
            sharing = self._store
            if sharing is not None and generation is not None:
                self._share(sharing, repo, wanted is None, answer, asked, generation)
        finally:
            holder = self._store
            if token is not None and holder is not None:
                self._quietly(lambda: holder.unlock(repo, token))
        aged = ages(answer, asked)
        fresh = {tag: CachedTag(info, *aged[tag]) for tag, info in answer.found.items()}
        return answer_from({**_kept(known), **fresh}, answer)

    def _share(
        self,
        store: RedisStore,
        repo: EcrRepository,
        listing: bool,
        answer: Lookup,
        asked: Fetched,
        generation: str,
    ) -> None:
        """Write what ECR answered: digest entries, and a listing's own value with them. "Not
        found" is never shared, nor the listing of a repository that does not exist, nor one
        over MAX_LISTING_BYTES (whatever its key holds is dropped instead, with its entries)."""
        at, seen = asked
        entries = {
            tag: sign_entry(self._key, repo, SharedEntry(info, at, generation, seen))
            for tag, info in answer.found.items()
        }
        if not listing:
            if entries:
                self._quietly(lambda: store.write(repo, entries, self._ttl))
            return
        if answer.repository_missing:
            return
        signed = sign_listing(self._key, repo, SharedListing(answer.found, at, generation, seen))
        value = signed if len(signed) <= MAX_LISTING_BYTES else None
        shared = entries if value is not None else {}
        self._quietly(lambda: store.write_listing(repo, value, self._list_ttl, shared, self._ttl))

    def _wait(self, store: RedisStore, repo: EcrRepository) -> bool:
        """Wait while another replica holds the lock; False once the wait limit has passed."""
        self.counts["waits"] += 1
        self._observer.waited("redis")
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
            self._observer.redis_trouble("down")
            self.warnings.append(
                f"the shared digest cache at {store.settings.shown} cannot be used: {problem}; "
                "resolving with the local cache and ECR"
            )

    def _planted_lock(self, repo: EcrRepository) -> None:
        self._trouble(
            "planted_lock",
            "planted_locks",
            f"replaced the shared cache's lock on {repo.uri}: it had no expiry or a longer "
            f"one than tagpin sets ({LOCK_TTL_SECONDS:g} s), so no replica held it; "
            "something else writes tagpin's keys in Redis (further ones are counted, not "
            "repeated)",
        )

    def _rejected(self, repo: EcrRepository, what: str, value: bytes) -> None:
        with self._guard:
            seen = (repo, what, hashlib.sha256(value).digest())
            if seen in self._seen_rejected:  # read again under the lock: one entry, one count
                return
            self._seen_rejected.add(seen)
        self._trouble(
            "rejected",
            "rejected",
            f"ignored the shared cache {what}: it is not signed with "
            f"{SIGNING_KEY_ENV} (tampered with, or written with another key); asking ECR "
            "(further ones are counted, not repeated)",
        )

    def _trouble(self, trouble: RedisTrouble, count: str, warning: str) -> None:
        """Count and report `trouble`; only the first of its kind is a warning."""
        with self._guard:
            self.counts[count] += 1
            first = trouble not in self._warned
            self._warned.add(trouble)
        self._observer.redis_trouble(trouble)
        if first:
            self.warnings.append(warning)


def _kept(entries: Mapping[str, SharedEntry]) -> dict[str, CachedTag]:
    """Redis's entries as the caches above keep them: the digest and its age."""
    return {tag: CachedTag(e.info, e.fetched_at, e.seen) for tag, e in entries.items()}


class _Held:
    """What Redis holds fresh of one question at the last read, and whether it held an answer
    a push made stale (reported once ECR is asked)."""

    __slots__ = ("entries", "pushed")

    def __init__(self) -> None:
        self.entries: dict[str, SharedEntry] = {}
        self.pushed = False


# -- the webhook's side ---------------------------------------------------------------------


class PushGenerations:
    """Announced pushes, fleet-wide: the webhook bumps the pushed repository's generation, so
    every replica treats what Redis holds for it as stale and the first render after the push
    asks ECR once for the whole fleet. The webhook writes no digests (it has no AWS access).
    Each bump is one round trip of the fleet cache's client, with its deadline."""

    def __init__(self, settings: RedisSettings) -> None:
        self._store = RedisStore(settings)
        self.shown = settings.shown

    def bump(self, repository: str) -> str | None:
        """`repository` as push events name it (`<host>/<path>`); the problem, or None.

        Repositories outside private ECR have nothing cached and are left alone."""
        from cmp.registry.names import repository_named

        repo = repository_named(repository)
        if repo is None:
            return None
        try:
            self._store.bump_generation(_repo_id(repo))
        except SharedCacheDown as problem:
            return f"cannot mark {repository} as pushed in {self.shown}: {problem}"
        return None
