"""Attacks on the fleet cache (issue #22, holes 3 and 5): keys planted in a real redis-server by
someone without the signing key, and Redis endpoints on 127.0.0.1 that trickle, nest or flood
their replies. Each may cost an ECR call and a warning; none may fail a lookup, raise, or hold
it past one Redis timeout."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cmp.errors import ConfigError
from cmp.registry.base import Lookup
from cmp.registry.redis_url import RedisAddress, parse_redis_url
from cmp.registry.shared import (
    LOCK_TTL_SECONDS,
    MAX_ENTRY_BYTES,
    NAMESPACE,
    POLL_SECONDS,
    PushGenerations,
    RedisSettings,
    RedisStore,
    SharedCacheDown,
    SharedRegistry,
    generation_key,
    listing_key,
    lock_key,
    redis_settings,
    tags_key,
    verify_entry,
    verify_listing,
)
from cmp.settings import Settings
from tests.support.ecr_repos import ecr_repository as repo
from tests.support.fake_kube import make_pki
from tests.support.hostile_redis import HostileRedis, SlowRedis
from tests.support.redis_server import PASSWORD, RedisServer, TlsFront
from tests.support.static_registry import StaticRegistry

KEY = b"0123456789abcdef0123456789abcdef-signing"
WEB_V1 = "sha256:" + "1" * 64
WEB_V2 = "sha256:" + "2" * 64
REPO_ID = "123456789012:eu-west-1:team/web"
NESTED = "[" * 1000 + "]" * 1000  # the 2 KB: RecursionError in json.loads


def store_settings(
    url: str, password: str | None = PASSWORD, timeout: float = 0.5
) -> RedisSettings:
    return RedisSettings(url=url, password=password, signing_key=KEY, timeout=timeout)


class FakeClock:
    """time.monotonic and time.sleep for the lock waits: sleeping only moves the clock."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept = 0.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.slept += seconds


def layer(
    url: str,
    ecr: StaticRegistry,
    warnings: list[str],
    password: str | None = PASSWORD,
    timeout: float = 0.5,
    clock: FakeClock | None = None,
) -> SharedRegistry:
    """One render's shared layer, waiting for other replicas up to the ECR deadline (25 s)."""
    waits: dict[str, Any] = {} if clock is None else {"monotonic": clock.monotonic}
    if clock is not None:
        waits["sleep"] = clock.sleep
    return SharedRegistry(
        ecr,
        RedisStore.for_render(store_settings(url, password, timeout)),
        ttl=300.0,
        list_ttl=30.0,
        wait_limit=25.0,
        warnings=warnings,
        **waits,
    )


def ecr_with(**tags: str) -> StaticRegistry:
    return StaticRegistry.of_digests({repo(): {"v1": WEB_V1, **tags}})


def asked(ecr: StaticRegistry, question: str = "describe_tags") -> int:
    return sum(1 for call in ecr.calls if call[0] == question)


def digests(answer: Lookup) -> dict[str, str]:
    return {tag: info.digest for tag, info in answer.found.items()}


def down_warnings(warnings: list[str]) -> list[str]:
    return [w for w in warnings if "cannot be used" in w]


# -- hole 3: keys planted by a writer without the signing key ----------------------------------


def test_a_nested_json_entry_planted_without_expiry_is_ignored_counted_and_overwritten(
    redis_server: RedisServer,
) -> None:
    client: Any = redis_server.client()
    client.hset(tags_key(REPO_ID), "v1", NESTED)  # no TTL on the key
    ecr = ecr_with()
    warnings: list[str] = []

    reader = layer(redis_server.url, ecr, warnings)

    assert digests(reader.describe_tags(repo(), ["v1"])) == {"v1": WEB_V1}
    assert asked(ecr) == 1 and reader.counts["rejected"] == 1
    assert len(warnings) == 1 and "not signed with TAGPIN_REDIS_SIGNING_KEY" in warnings[0]
    # Overwritten by ECR's answer, signed, and the key expires again: the next replica reads it.
    stored = client.hget(tags_key(REPO_ID), "v1")
    assert verify_entry(KEY, repo(), "v1", stored) is not None
    assert 0 < client.pttl(tags_key(REPO_ID)) <= 300_000
    next_ecr = ecr_with()
    assert digests(layer(redis_server.url, next_ecr, []).describe_tags(repo(), ["v1"])) == {
        "v1": WEB_V1
    }
    assert asked(next_ecr) == 0


def test_a_nested_json_listing_planted_without_expiry_is_ignored_counted_and_overwritten(
    redis_server: RedisServer,
) -> None:
    client: Any = redis_server.client()
    client.set(listing_key(REPO_ID), NESTED)
    ecr = ecr_with(v2=WEB_V2)
    warnings: list[str] = []

    reader = layer(redis_server.url, ecr, warnings)

    assert digests(reader.list_tags(repo())) == {"v1": WEB_V1, "v2": WEB_V2}
    assert asked(ecr, "list_tags") == 1 and reader.counts["rejected"] == 1
    assert len(warnings) == 1 and "tag list of" in warnings[0]
    assert verify_listing(KEY, repo(), client.get(listing_key(REPO_ID))) is not None
    assert 0 < client.pttl(listing_key(REPO_ID)) <= 30_000


@pytest.mark.parametrize(
    "plant",
    [
        pytest.param(lambda c: c.hset(tags_key(REPO_ID), "v1", b"x" * (8 << 20)), id="8-MiB-entry"),
        pytest.param(lambda c: c.rpush(tags_key(REPO_ID), "v1"), id="tags-key-a-list"),
        pytest.param(lambda c: c.set(tags_key(REPO_ID), NESTED), id="tags-key-a-string"),
        pytest.param(lambda c: c.hset(tags_key(REPO_ID), "v1", b""), id="empty-entry"),
    ],
)
def test_an_entry_of_the_wrong_size_or_type_is_ignored_counted_and_replaced(
    redis_server: RedisServer, plant: Any
) -> None:
    client: Any = redis_server.client()
    plant(client)
    ecr = ecr_with()
    warnings: list[str] = []

    reader = layer(redis_server.url, ecr, warnings)

    assert digests(reader.describe_tags(repo(), ["v1"])) == {"v1": WEB_V1}
    assert asked(ecr) == 1 and reader.counts["rejected"] == 1
    assert down_warnings(warnings) == []  # Redis stays in use for the rest of the render
    assert verify_entry(KEY, repo(), "v1", client.hget(tags_key(REPO_ID), "v1")) is not None


def test_an_8_mib_entry_is_cut_by_redis_before_it_is_sent(redis_server: RedisServer) -> None:
    client: Any = redis_server.client()
    client.hset(tags_key(REPO_ID), "v1", b"x" * (8 << 20))

    _, values = RedisStore(store_settings(redis_server.url)).read(repo(), ["v1"])

    assert values == {"v1": b"x" * (MAX_ENTRY_BYTES + 1)}


@pytest.mark.parametrize(
    "plant",
    [
        pytest.param(lambda c: c.hset(listing_key(REPO_ID), "a", "b"), id="a-hash"),
        pytest.param(lambda c: c.set(listing_key(REPO_ID), b"x" * (4 << 20)), id="4-MiB"),
    ],
)
def test_a_listing_of_the_wrong_size_or_type_is_ignored_counted_and_replaced(
    redis_server: RedisServer, plant: Any
) -> None:
    client: Any = redis_server.client()
    plant(client)
    ecr = ecr_with()
    warnings: list[str] = []

    reader = layer(redis_server.url, ecr, warnings)

    assert digests(reader.list_tags(repo())) == {"v1": WEB_V1}
    assert reader.counts["rejected"] == 1 and down_warnings(warnings) == []
    assert verify_listing(KEY, repo(), client.get(listing_key(REPO_ID))) is not None


@pytest.mark.parametrize(
    "plant",
    [
        pytest.param(lambda c: c.set(lock_key(REPO_ID), "planted"), id="no-expiry"),
        pytest.param(lambda c: c.set(lock_key(REPO_ID), "planted", px=10**9), id="11-days"),
        pytest.param(lambda c: c.hset(lock_key(REPO_ID), "a", "b"), id="a-hash-no-expiry"),
    ],
)
def test_a_lock_planted_without_expiry_is_replaced_and_no_render_waits_for_it(
    redis_server: RedisServer, plant: Any
) -> None:
    """Was: every cold render waited the whole ECR deadline (25 s) on it, holding a slot."""
    client: Any = redis_server.client()
    plant(client)
    ecr, clock = ecr_with(), FakeClock()
    warnings: list[str] = []

    reader = layer(redis_server.url, ecr, warnings, clock=clock)

    assert digests(reader.describe_tags(repo(), ["v1"])) == {"v1": WEB_V1}
    assert clock.slept == 0 and reader.counts["waits"] == 0
    assert asked(ecr) == 1 and reader.counts["planted_locks"] == 1
    assert len(warnings) == 1 and "replaced the shared cache's lock on" in warnings[0]
    assert not client.exists(lock_key(REPO_ID))  # released after the fill, like any lock
    # The fill was shared: the next replica neither waits nor asks ECR.
    again, later = ecr_with(), FakeClock()
    layer(redis_server.url, again, [], clock=later).describe_tags(repo(), ["v1"])
    assert (asked(again), later.slept) == (0, 0)


def test_a_lock_someone_keeps_retaking_holds_a_render_no_longer_than_a_lock_lives(
    redis_server: RedisServer,
) -> None:
    """A lock that looks like a replica's (10 s), taken again as soon as it expires: a render
    waits at most as long as a holder keeps its lock, not the whole ECR deadline."""
    client: Any = redis_server.client()
    client.set(lock_key(REPO_ID), "looks-like-a-replica", px=int(LOCK_TTL_SECONDS * 1000))
    ecr, clock = ecr_with(), FakeClock()

    reader = layer(redis_server.url, ecr, [], clock=clock)

    assert digests(reader.describe_tags(repo(), ["v1"])) == {"v1": WEB_V1}
    assert asked(ecr) == 1
    assert LOCK_TTL_SECONDS <= clock.slept <= LOCK_TTL_SECONDS + POLL_SECONDS  # was 25 s


def test_a_generation_planted_as_text_does_not_stop_a_push_making_entries_stale(
    redis_server: RedisServer,
) -> None:
    layer(redis_server.url, ecr_with(), []).describe_tags(repo(), ["v1"])
    client: Any = redis_server.client()
    client.set(generation_key(REPO_ID), "not-a-number")  # INCR fails on it, forever
    client.hset(generation_key("123456789012:eu-west-1:team/api"), "a", "b")  # another type

    pushes = PushGenerations(store_settings(redis_server.url))
    assert pushes.bump(repo().uri) is None
    assert pushes.bump("123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/api") is None

    assert int(client.get(generation_key(REPO_ID))) > 0 < client.ttl(generation_key(REPO_ID))
    moved = StaticRegistry.of_digests({repo(): {"v1": WEB_V2}})
    answer = layer(redis_server.url, moved, []).describe_tags(repo(), ["v1"])
    assert digests(answer) == {"v1": WEB_V2} and asked(moved) == 1


# -- hole 5: a slow or hostile endpoint -------------------------------------------------------


@pytest.fixture
def hostile() -> Iterator[list[HostileRedis]]:
    started: list[HostileRedis] = []
    yield started
    for server in started:
        server.close()


def test_a_reply_trickled_a_byte_at_a_time_ends_at_one_deadline(
    redis_server: RedisServer,
) -> None:
    """Was: each byte reset the 500 ms timeout, so a reply trickled 1 byte per 0.3 s held a
    render past Argo CD's deadline. Now a whole round trip has one deadline."""
    layer(redis_server.url, ecr_with(), []).describe_tags(repo(), ["v1"])  # Redis holds v1
    slow = SlowRedis(redis_server.port, byte_interval=0.05)  # each byte well within 300 ms
    ecr = ecr_with()
    warnings: list[str] = []
    try:
        answer = layer(slow.url, ecr, warnings, timeout=0.3).describe_tags(repo(), ["v1"])
    finally:
        slow.close()

    assert digests(answer) == {"v1": WEB_V1} and asked(ecr) == 1  # ECR answered, not Redis
    [warning] = warnings
    assert "timed out: no complete answer within 300 ms (TAGPIN_REDIS_TIMEOUT_MS)" in warning


def test_a_redis_answering_each_round_trip_just_in_time_cannot_hold_a_render(
    redis_server: RedisServer,
) -> None:
    """Each reply 0.1 s late (a third of the timeout): a render's store gives up once its
    round trips have taken 10 timeouts in all."""
    slow = SlowRedis(redis_server.port, delay=0.1)
    store = RedisStore.for_render(store_settings(slow.url, timeout=0.3))
    try:
        with pytest.raises(SharedCacheDown, match=r"took 3 s in all for this render \(10 x"):
            for _ in range(100):
                store.generation(repo())
    finally:
        slow.close()

    assert slow.replies <= 31  # each at least 0.1 s: the budget ran out after 30, or during one


def test_a_reply_nested_100000_arrays_deep_is_a_warning_and_ecr_answers(
    hostile: list[HostileRedis],
) -> None:
    """Was: RecursionError in redis-py's parser, exit 70."""
    server = HostileRedis(b"*1\r\n" * 100_000 + b":1\r\n")
    hostile.append(server)
    ecr = ecr_with()
    warnings: list[str] = []

    answer = layer(server.url, ecr, warnings).describe_tags(repo(), ["v1"])

    assert digests(answer) == {"v1": WEB_V1} and asked(ecr) == 1
    [warning] = warnings
    assert "protocol error: a reply nested deeper than 1 level" in warning


@pytest.mark.parametrize(
    ("reply", "stream", "problem"),
    [
        pytest.param(
            b"$2147483647\r\n",
            b"\0" * 65536,
            "a bulk string of 2147483647 (more than 2097152) in a reply",
            id="2-GiB-bulk-string",
        ),
        pytest.param(
            b"*2147483647\r\n",
            b":1\r\n" * 16384,
            "an array of 2147483647 (more than 100000) in a reply",
            id="2-billion-element-array",
        ),
        pytest.param(
            b"+",
            b"a" * 65536,
            "protocol error: a reply line longer than 4096",
            id="endless-status-line",
        ),
    ],
)
def test_a_flood_of_reply_bytes_is_refused_before_it_is_read(
    hostile: list[HostileRedis], reply: bytes, stream: bytes, problem: str
) -> None:
    """Was: redis-py buffered whatever a bulk string's header announced."""
    server = HostileRedis(reply, stream)
    hostile.append(server)
    ecr = ecr_with()
    warnings: list[str] = []

    answer = layer(server.url, ecr, warnings).describe_tags(repo(), ["v1"])

    assert digests(answer) == {"v1": WEB_V1} and asked(ecr) == 1
    [warning] = warnings
    assert problem in warning
    assert server.hung_up.wait(10)
    assert server.sent < 16 << 20  # the client hung up; the endpoint could send 64 MiB


@pytest.mark.parametrize(
    ("reply", "problem"),
    [
        (b"HTTP/1.1 400 Bad Request\r\n\r\n", "not a RESP2 reply"),
        (b"$-7\r\n", "a bulk string of length -7"),
        (b":12345678901234567890123\r\n", "not an integer"),
        (b"$3\r\nabcdef\r\n", "a bulk string longer than announced"),
        (b"%1\r\n+a\r\n+b\r\n", "not a RESP2 reply"),  # RESP3, never asked for
        # To each command: more than the first round trip asks (CLIENT SETNAME and an EVAL).
        (b"+OK\r\n+OK\r\n+OK\r\n", "more replies than asked for"),
        (b"-ERR\xff\xfe not UTF-8\r\n", "ERR"),
    ],
)
def test_a_malformed_reply_is_a_warning_and_ecr_answers(
    hostile: list[HostileRedis], reply: bytes, problem: str
) -> None:
    server = HostileRedis(reply)
    hostile.append(server)
    ecr = ecr_with()
    warnings: list[str] = []

    answer = layer(server.url, ecr, warnings, password=None).describe_tags(repo(), ["v1"])

    assert digests(answer) == {"v1": WEB_V1} and asked(ecr) == 1
    [warning] = warnings
    assert problem in warning


@pytest.mark.parametrize(
    ("reply", "problem"),
    [
        (b":1\r\n", "unexpected reply 1 where 2 values belong"),
        (b"*2\r\n:1\r\n:2\r\n", "unexpected reply (an array of 2) where 2 values belong"),
        (b"*1\r\n$-1\r\n", "unexpected reply (an array of 1) where 2 values belong"),
    ],
)
def test_a_well_formed_reply_of_the_wrong_shape_is_a_warning_and_ecr_answers(
    hostile: list[HostileRedis], reply: bytes, problem: str
) -> None:
    """Something answering in Redis's place, correctly framed but not what was asked."""
    server = HostileRedis(lambda command: reply if command[0] == b"EVAL" else b"+OK\r\n")
    hostile.append(server)
    ecr = ecr_with()
    warnings: list[str] = []

    answer = layer(server.url, ecr, warnings).describe_tags(repo(), ["v1"])

    assert digests(answer) == {"v1": WEB_V1} and asked(ecr) == 1
    [warning] = warnings
    assert problem in warning


# -- TAGPIN_REDIS_URL (issue #22's lower finding) ---------------------------------------------


def url_settings(url: str) -> RedisSettings | None:
    return redis_settings(
        Settings.from_environ({"TAGPIN_REDIS_URL": url, "TAGPIN_REDIS_SIGNING_KEY": KEY.decode()})
    )


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("redis://:s3cret@r:6379/0?ssl_ca_certs=/ca.pem", "ssl_ca_certs needs rediss://"),
        ("rediss://:s3cret@r/0?ssl_ca_certs=/no/such/ca.pem", "ssl_ca_certs=/no/such/ca.pem is"),
        ("rediss://:s3cret@r/0?ssl_cert_reqs=sometimes", "ssl_cert_reqs must be required"),
        ("rediss://:s3cret@r/0?ssl_check_hostname=perhaps", "ssl_check_hostname must be true"),
        ("redis://:s3cret@r/0?socket_timeout=5", "set socket_timeout with TAGPIN_REDIS_TIMEOUT_MS"),
        ("redis://:s3cret@r/0?db=2", "set db with the URL's path"),
        ("redis://:s3cret@r/0?decode_responses=1", "unknown option 'decode_responses'"),
        ("rediss://:s3cret@r/0?ssl_cert_reqs=none&ssl_cert_reqs=none", "given twice"),
        ("rediss://:s3cret@r/0?ssl_ca_certs=", "ssl_ca_certs is empty"),
        ("redis://:s3cret@r/zero", "the path must be a database number"),
        ("redis://:s3cret@r:99999/0", "invalid host or port"),
        ("redis://:s3cret@[::1/0", "invalid host or port"),
        ("redis://:s3cret@r/0#frag", "must not have a #fragment"),
        ("unix:///run/redis.sock", "must start with redis:// or rediss://"),
    ],
)
def test_a_redis_url_tagpin_cannot_use_is_a_configuration_error_naming_it(
    url: str, problem: str
) -> None:
    """Was: `?ssl_ca_certs=` on redis:// raised TypeError (exit 70) on every cold render."""
    with pytest.raises(ConfigError) as raised:
        url_settings(url)

    assert str(raised.value).startswith("TAGPIN_REDIS_URL")
    assert problem in str(raised.value) and "s3cret" not in str(raised.value)


def test_a_redis_url_with_every_option_tagpin_reads(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    url = (
        f"rediss://tagpin:p%40ss@Redis.Example:6380/3?ssl_ca_certs={pki.ca_cert}"
        "&ssl_cert_reqs=optional&ssl_check_hostname=false"
        f"&ssl_certfile={pki.client_cert}&ssl_keyfile={pki.client_key}"
    )

    assert url_settings(url) is not None
    assert parse_redis_url(url) == RedisAddress(
        host="redis.example",
        port=6380,
        db=3,
        tls=True,
        username="tagpin",
        password="p@ss",
        ca_certs=str(pki.ca_cert),
        verify=True,
        check_hostname=False,
        certfile=str(pki.client_cert),
        keyfile=str(pki.client_key),
    )
    assert parse_redis_url("redis://r") == RedisAddress("r", 6379, 0, tls=False)


def test_mutual_tls_with_a_client_certificate_from_the_url(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    pki = make_pki(tmp_path)
    front = TlsFront(redis_server.port, pki.server_cert, pki.server_key, client_ca=pki.ca_cert)
    base = f"rediss://127.0.0.1:{front.port}/0?ssl_ca_certs={pki.ca_cert}"
    with_cert = f"{base}&ssl_certfile={pki.client_cert}&ssl_keyfile={pki.client_key}"
    try:
        first, second = ecr_with(), ecr_with()
        layer(with_cert, first, []).describe_tags(repo(), ["v1"])
        layer(with_cert, second, []).describe_tags(repo(), ["v1"])
        refused_warnings: list[str] = []
        layer(base, ecr_with(), refused_warnings).describe_tags(repo(), ["v1"])
    finally:
        front.close()

    assert (asked(first), asked(second)) == (1, 0)  # shared over mutual TLS
    assert len(refused_warnings) == 1 and "cannot be used" in refused_warnings[0]


# -- the class: whatever a stored value holds --------------------------------------------------


def signed(kind: str, tag: str, data: bytes) -> bytes:
    """`data` as a holder of the key stores it (`<hex HMAC><body>`, docs/install.md)."""
    context = json.dumps([NAMESPACE, kind, REPO_ID, tag]).encode() + b"\n"
    return hmac.new(KEY, context + data, hashlib.sha256).hexdigest().encode() + data


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)
ENTRY_FIELDS = st.fixed_dictionaries(
    {
        "digest": st.sampled_from([WEB_V2, "sha256:short", 1]) | JSON,
        "pushed_at": st.none() | st.floats() | st.integers() | JSON,
        "media_type": st.none() | st.text(max_size=10) | JSON,
        "fetched_at": st.floats() | st.integers(min_value=-(10**400), max_value=10**400) | JSON,
        "generation": st.just("0") | JSON,
        "seen": st.none() | st.floats() | JSON,
    },
)


def nested(depth: int, opener: str) -> bytes:
    closer = {"[": "]", "{": "}", '{"a":': "}"}[opener]
    return (opener * depth + ("1" if opener == '{"a":' else "") + closer * depth).encode()


def stored_values(kind: str, tag: str) -> st.SearchStrategy[bytes]:
    """Anything a keyless writer, a flood, or a buggy key holder could leave in a value."""
    documents = JSON.map(lambda v: json.dumps(v).encode())
    depth_bombs = st.builds(nested, st.integers(0, 200_000), st.sampled_from(["[", '{"a":']))
    return st.one_of(
        st.binary(max_size=300),
        documents,
        depth_bombs,
        st.integers(0, 3 << 20).map(lambda n: b"x" * n),
        depth_bombs.map(lambda b: b"0" * 64 + b),  # a MAC-shaped prefix
        documents.map(lambda d: signed(kind, tag, d)),
        st.builds(nested, st.integers(0, 5000), st.just("[")).map(lambda b: signed(kind, tag, b)),
        ENTRY_FIELDS.map(lambda f: signed(kind, tag, json.dumps(f).encode())),
        st.fixed_dictionaries(
            {"tags": JSON | st.lists(st.lists(JSON, max_size=5), max_size=3)},
            optional={"fetched_at": JSON, "generation": JSON, "seen": JSON},
        ).map(lambda f: signed(kind, tag, json.dumps(f).encode())),
    )


@settings(max_examples=300, deadline=None)
@given(raw=stored_values("entry", "v1") | stored_values("list", ""))
def test_verifying_any_stored_value_gives_an_entry_or_none(raw: bytes) -> None:
    entry = verify_entry(KEY, repo(), "v1", raw)
    listing = verify_listing(KEY, repo(), raw)

    assert entry is None or entry.info.digest.startswith("sha256:")
    assert listing is None or all(i.digest.startswith("sha256:") for i in listing.found.values())


@pytest.fixture(scope="module")
def module_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(entry=stored_values("entry", "v1"), listing=stored_values("list", ""))
def test_any_stored_value_is_ignored_and_counted_or_a_valid_answer(
    module_redis: RedisServer, entry: bytes, listing: bytes
) -> None:
    client: Any = module_redis.client()
    client.flushall()
    client.hset(tags_key(REPO_ID), "v1", entry)
    client.set(listing_key(REPO_ID), listing)
    for ask in ("describe_tags", "list_tags"):
        ecr = ecr_with()
        warnings: list[str] = []
        reader = layer(module_redis.url, ecr, warnings)

        answer = reader.describe_tags(repo(), ["v1"]) if ask == "describe_tags" else None
        answer = answer or reader.list_tags(repo())

        outcome = (asked(ecr, ask), reader.counts["rejected"])
        # Ignored and counted (ECR asked); or signed and well-formed: answered (too old:
        # ECR asked, nothing counted).
        assert outcome in {(1, 1), (0, 0), (1, 0)}
        if outcome == (0, 0):
            assert set(digests(answer).values()) <= {WEB_V1, WEB_V2}
        else:
            assert digests(answer)["v1"] == WEB_V1
        assert down_warnings(warnings) == []  # never Redis trouble: Redis stays in use


def test_a_connection_closed_while_idle_is_not_reused(redis_server: RedisServer) -> None:
    """The webhook keeps its connection between pushes; a proxy's idle timeout (haproxy in
    front of Argo CD's HA Redis) or a restart may close it meanwhile."""
    pushes = PushGenerations(store_settings(redis_server.url))
    assert pushes.bump(repo().uri) is None
    client: Any = redis_server.client()
    for connection in client.client_list():
        if connection["name"] == "tagpin":
            client.client_kill_filter(_id=connection["id"])

    assert pushes.bump(repo().uri) is None
    assert client.get(generation_key(REPO_ID)) == b"2"
