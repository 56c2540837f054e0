"""The fleet-wide cache's layer against a real redis-server: signed entries, generations,
single flight, "not found" never shared, Redis trouble never failing a lookup."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from cmp.errors import ConfigError
from cmp.registry.base import Lookup, TagInfo, describe_many
from cmp.registry.cache import CachingRegistry, DiskCache
from cmp.registry.names import EcrRepository
from cmp.registry.pushes import Push, PushFloors, PushRecord
from cmp.registry.shared import (
    MAX_LISTING_BYTES,
    PushGenerations,
    RedisSettings,
    RedisStore,
    SharedRegistry,
    listing_key,
    lock_key,
    redis_settings,
    tags_key,
)
from cmp.settings import Settings
from tests.support.ecr_repos import ecr_repository as repo
from tests.support.redis_server import PASSWORD, RedisServer, free_port
from tests.support.static_registry import StaticRegistry

KEY = b"0123456789abcdef0123456789abcdef-signing"
WEB_V1 = "sha256:" + "1" * 64
WEB_V2 = "sha256:" + "2" * 64
HOST = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"


def settings(server: RedisServer, **changes: Any) -> RedisSettings:
    values: dict[str, Any] = {"url": server.url, "password": PASSWORD, "signing_key": KEY}
    values.update(changes)
    return RedisSettings(**values)


def shared(
    server: RedisServer, ecr: Any, warnings: list[str] | None = None, **kwargs: Any
) -> SharedRegistry:
    store_settings = kwargs.pop("store_settings", None) or settings(server)
    return SharedRegistry(
        ecr,
        RedisStore.for_render(store_settings),
        ttl=kwargs.pop("ttl", 300.0),
        list_ttl=kwargs.pop("list_ttl", 30.0),
        wait_limit=kwargs.pop("wait_limit", 10.0),
        warnings=warnings if warnings is not None else [],
        **kwargs,
    )


def ecr_with(digest: str = WEB_V1, **tags: str) -> StaticRegistry:
    return StaticRegistry.of_digests({repo(): {"v1": digest, **tags}})


def body_of(value: bytes) -> dict[str, Any]:
    """The JSON body of a stored value (`<hex HMAC><body>`)."""
    body: dict[str, Any] = json.loads(value[64:])
    return body


def with_body(value: bytes, **changes: Any) -> bytes:
    """`value` with fields of its body changed, its MAC kept."""
    body = {**body_of(value), **changes}
    return value[:64] + json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def asked(ecr: StaticRegistry) -> int:
    return sum(1 for call in ecr.calls if call[0] == "describe_tags")


def test_a_second_replica_reads_the_first_ones_answer(redis_server: RedisServer) -> None:
    first, second = ecr_with(), ecr_with()

    assert shared(redis_server, first).describe_tags(repo(), ["v1"]).found["v1"].digest == WEB_V1
    assert shared(redis_server, second).describe_tags(repo(), ["v1"]).found["v1"].digest == WEB_V1

    assert (asked(first), asked(second)) == (1, 0)


def test_every_key_is_namespaced_and_expires(redis_server: RedisServer) -> None:
    shared(redis_server, ecr_with()).describe_tags(repo(), ["v1"])
    PushGenerations(settings(redis_server)).bump(repo().uri)
    client: Any = redis_server.client()

    keys = sorted(key.decode() for key in client.keys("*"))

    assert keys == [
        "tagpin:v2:generation:123456789012:eu-west-1:team/web",
        "tagpin:v2:tags:123456789012:eu-west-1:team/web",
    ]
    assert all(client.ttl(key) > 0 for key in keys)


def test_not_found_is_never_shared(redis_server: RedisServer) -> None:
    first, second = ecr_with(), ecr_with()

    missing = shared(redis_server, first).describe_tags(repo(), ["v1", "nope"])
    again = shared(redis_server, second).describe_tags(repo(), ["v1", "nope"])

    assert missing.missing == again.missing == frozenset({"nope"})
    assert second.calls == [("describe_tags", repo(), frozenset({"nope"}))]  # v1 came shared


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda v: with_body(v, digest=WEB_V2), id="digest-rewritten"),
        pytest.param(lambda v: b"0" * 64 + v[64:], id="unsigned"),
        pytest.param(lambda v: v[64:], id="no-signature"),
        pytest.param(lambda v: with_body(v, generation="7"), id="generation-rewritten"),
        # The same JSON with other bytes: the MAC is over the bytes, not what they parse to.
        pytest.param(lambda v: v[:64] + json.dumps(body_of(v)).encode(), id="reformatted"),
    ],
)
def test_a_tampered_entry_is_ignored_counted_and_ecr_asked(
    redis_server: RedisServer, tamper: Any
) -> None:
    shared(redis_server, ecr_with()).describe_tags(repo(), ["v1"])
    client: Any = redis_server.client()
    key = tags_key("123456789012:eu-west-1:team/web")
    client.hset(key, "v1", tamper(client.hget(key, "v1")))
    ecr = ecr_with()
    warnings: list[str] = []

    reader = shared(redis_server, ecr, warnings)
    answer = reader.describe_tags(repo(), ["v1"])

    assert answer.found["v1"].digest == WEB_V1
    assert asked(ecr) == 1
    assert reader.counts["rejected"] == 1
    assert len(warnings) == 1 and "not signed with TAGPIN_REDIS_SIGNING_KEY" in warnings[0]


def test_an_entry_signed_with_another_key_or_moved_to_another_tag_is_ignored(
    redis_server: RedisServer,
) -> None:
    other_key = settings(redis_server, signing_key=b"another-key-of-at-least-32-bytes!!")
    shared(redis_server, ecr_with(), store_settings=other_key).describe_tags(repo(), ["v1"])
    client: Any = redis_server.client()
    key = tags_key("123456789012:eu-west-1:team/web")
    client.hset(key, "v2", client.hget(key, "v1"))  # a genuine entry under another tag
    ecr = ecr_with(v2=WEB_V2)
    warnings: list[str] = []

    reader = shared(redis_server, ecr, warnings)
    answer = reader.describe_tags(repo(), ["v1", "v2"])

    assert {t: i.digest for t, i in answer.found.items()} == {"v1": WEB_V1, "v2": WEB_V2}
    assert reader.counts["rejected"] == 2 and len(warnings) == 1  # one warning, both counted


def test_a_bumped_generation_makes_shared_entries_stale(redis_server: RedisServer) -> None:
    shared(redis_server, ecr_with(WEB_V1)).describe_tags(repo(), ["v1"])
    stale = ecr_with(WEB_V2)  # the tag moved in ECR; Redis still says v1
    assert shared(redis_server, stale).describe_tags(repo(), ["v1"]).found["v1"].digest == WEB_V1

    assert PushGenerations(settings(redis_server, signing_key=None)).bump(repo().uri) is None
    first, second = ecr_with(WEB_V2), ecr_with(WEB_V2)

    assert shared(redis_server, first).describe_tags(repo(), ["v1"]).found["v1"].digest == WEB_V2
    assert shared(redis_server, second).describe_tags(repo(), ["v1"]).found["v1"].digest == WEB_V2
    assert (asked(first), asked(second)) == (1, 0)  # once for the whole fleet


def announced(at: float) -> PushFloors:
    """The rule a render follows once it has read a push of team/web at `at` (webhook clock)."""
    floors = PushFloors()
    floors.announce(PushRecord({repo().uri: Push("v1", None, at)}))
    return floors


def test_an_announced_push_makes_older_entries_stale(redis_server: RedisServer) -> None:
    shared(redis_server, ecr_with(WEB_V1)).describe_tags(repo(), ["v1"])
    ecr = ecr_with(WEB_V2)

    reader = shared(redis_server, ecr, pushes=announced(time.time() + 1))

    assert reader.describe_tags(repo(), ["v1"]).found["v1"].digest == WEB_V2
    assert asked(ecr) == 1


def test_an_entry_fetched_just_before_the_push_by_a_clock_ahead_is_stale(
    redis_server: RedisServer,
) -> None:
    """Push times come from the webhook's clock, fetch times from the sidecar's, which may be
    up to TAGPIN_PUSH_CLOCK_SKEW apart. A replica whose clock is 1 s ahead fetches half a
    second before the push: its entry says it was fetched after the push. With no generation
    bump (the webhook could not reach Redis) the push record alone must refuse it."""
    pushed_at = 1_800_000_000.0
    shared(redis_server, ecr_with(WEB_V1), clock=lambda: pushed_at + 0.5).describe_tags(
        repo(), ["v1"]
    )
    ecr = ecr_with(WEB_V2)

    reader = shared(redis_server, ecr, pushes=announced(pushed_at), clock=lambda: pushed_at + 1)

    assert reader.describe_tags(repo(), ["v1"]).found["v1"].digest == WEB_V2
    assert asked(ecr) == 1


def test_an_answer_fetched_by_a_render_that_knew_the_push_serves_the_fleet(
    redis_server: RedisServer,
) -> None:
    pushed_at = time.time()  # the answers come well within the clock skew after it
    first, second = ecr_with(WEB_V2), ecr_with(WEB_V2)

    for ecr in (first, second):
        reader = shared(redis_server, ecr, pushes=announced(pushed_at))
        assert reader.describe_tags(repo(), ["v1"]).found["v1"].digest == WEB_V2

    assert (asked(first), asked(second)) == (1, 0)  # once for the whole fleet


def test_entries_older_than_the_ttl_are_not_trusted(redis_server: RedisServer) -> None:
    now = [1_800_000_000.0]
    shared(redis_server, ecr_with(), clock=lambda: now[0]).describe_tags(repo(), ["v1"])
    now[0] += 301
    ecr = ecr_with()

    shared(redis_server, ecr, clock=lambda: now[0]).describe_tags(repo(), ["v1"])

    assert asked(ecr) == 1


def test_refresh_mode_asks_ecr_and_still_shares(redis_server: RedisServer) -> None:
    shared(redis_server, ecr_with(WEB_V1)).describe_tags(repo(), ["v1"])
    refreshing = ecr_with(WEB_V2)

    shared(redis_server, refreshing, read=False).describe_tags(repo(), ["v1"])
    later = ecr_with(WEB_V2)
    answer = shared(redis_server, later).describe_tags(repo(), ["v1"])

    assert (asked(refreshing), asked(later)) == (1, 0)
    assert answer.found["v1"].digest == WEB_V2


class SlowRegistry(StaticRegistry):
    """ECR taking its time, so concurrent lookups overlap for sure."""

    def describe_tags(self, repository: EcrRepository, tags: Any) -> Lookup:
        time.sleep(0.3)
        return super().describe_tags(repository, tags)


def test_concurrent_replicas_ask_ecr_once_per_repository(redis_server: RedisServer) -> None:
    ecrs = [SlowRegistry({repo(): {"v1": TagInfo("v1", WEB_V1)}}) for _ in range(4)]
    layers = [shared(redis_server, ecr) for ecr in ecrs]
    answers: list[Lookup] = []
    start = threading.Barrier(4)

    def lookup(layer: SharedRegistry) -> None:
        start.wait()
        answers.append(layer.describe_tags(repo(), ["v1"]))

    threads = [threading.Thread(target=lookup, args=(layer,)) for layer in layers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert [a.found["v1"].digest for a in answers] == [WEB_V1] * 4
    assert sum(asked(ecr) for ecr in ecrs) == 1
    assert sum(layer.counts["waits"] for layer in layers) >= 1


def test_a_waiting_replica_asks_ecr_itself_at_the_wait_limit(redis_server: RedisServer) -> None:
    client: Any = redis_server.client()
    client.set(lock_key("123456789012:eu-west-1:team/web"), "someone-else", px=10_000)
    ecr = ecr_with()

    answer = shared(redis_server, ecr, wait_limit=0.2).describe_tags(repo(), ["v1"])

    assert answer.found["v1"].digest == WEB_V1 and asked(ecr) == 1


def test_a_replica_releases_only_its_own_lock(redis_server: RedisServer) -> None:
    store = RedisStore(settings(redis_server))
    token = store.lock(repo(), 60).token
    assert token is not None and store.lock(repo(), 60).token is None

    store.unlock(repo(), "not-my-token")
    assert store.locked(repo())
    store.unlock(repo(), token)
    assert not store.locked(repo())


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        pytest.param({"password": "wrong"}, "invalid", id="wrong-password"),
        pytest.param({"url": "redis://127.0.0.1:{free}/0"}, "refused", id="nothing-listening"),
        pytest.param({"url": "rediss://127.0.0.1:{port}/0"}, "", id="tls-against-plain"),
    ],
)
def test_redis_trouble_gives_one_warning_and_ecr_answers(
    redis_server: RedisServer, change: dict[str, str], problem: str
) -> None:
    if "url" in change:
        change = {"url": change["url"].format(free=free_port(), port=redis_server.port)}
    ecr = ecr_with()
    warnings: list[str] = []
    layer = shared(redis_server, ecr, warnings, store_settings=settings(redis_server, **change))

    for _ in range(3):
        assert layer.describe_tags(repo(), ["v1"]).found["v1"].digest == WEB_V1

    assert asked(ecr) == 3
    assert len(warnings) == 1
    assert warnings[0].startswith("the shared digest cache at redis") and problem in warnings[0]
    assert PASSWORD not in warnings[0]


def test_redis_killed_mid_lookup_then_restarted(redis_server: RedisServer) -> None:
    class KillingRegistry(StaticRegistry):
        def describe_tags(self, repository: EcrRepository, tags: Any) -> Lookup:
            redis_server.stop()  # while this replica holds the lock, before it shares
            return super().describe_tags(repository, tags)

    warnings: list[str] = []
    killing = KillingRegistry({repo(): {"v1": TagInfo("v1", WEB_V1)}})
    assert shared(redis_server, killing, warnings).describe_tags(repo(), ["v1"]).found
    assert len(warnings) == 1

    redis_server.start()
    first, second = ecr_with(), ecr_with()
    shared(redis_server, first).describe_tags(repo(), ["v1"])
    shared(redis_server, second).describe_tags(repo(), ["v1"])
    assert (asked(first), asked(second)) == (1, 0)


def test_the_disk_cache_keeps_the_age_of_a_shared_answer(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    now = [1_800_000_000.0]
    shared(redis_server, ecr_with(), clock=lambda: now[0]).describe_tags(repo(), ["v1"])
    now[0] += 200
    layer = shared(redis_server, ecr_with(), clock=lambda: now[0])
    disk = DiskCache(tmp_path)

    CachingRegistry(layer, disk, clock=lambda: now[0]).describe_tags(repo(), ["v1"])

    cached = disk.read(repo())
    assert cached is not None and cached.tags["v1"].fetched_at == 1_800_000_000.0


# -- settings ---------------------------------------------------------------------------------


def test_settings_are_off_without_a_url() -> None:
    assert redis_settings(Settings.from_environ({})) is None


def test_a_url_without_a_signing_key_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError, match="TAGPIN_REDIS_SIGNING_KEY"):
        redis_settings(Settings.from_environ({"TAGPIN_REDIS_URL": "redis://argocd-redis:6379"}))


def test_a_short_signing_key_is_refused() -> None:
    with pytest.raises(ConfigError, match="at least 32"):
        redis_settings(
            Settings.from_environ(
                {"TAGPIN_REDIS_URL": "redis://r", "TAGPIN_REDIS_SIGNING_KEY": "short"}
            )
        )


def test_secrets_come_from_files(tmp_path: Path) -> None:
    (tmp_path / "auth").write_text("s3cret\n")
    (tmp_path / "key").write_bytes(KEY + b"\n")

    loaded = redis_settings(
        Settings.from_environ(
            {
                "TAGPIN_REDIS_URL": "rediss://argocd-redis:6379/2",
                "TAGPIN_REDIS_PASSWORD_FILE": str(tmp_path / "auth"),
                "TAGPIN_REDIS_SIGNING_KEY_FILE": str(tmp_path / "key"),
            }
        )
    )

    assert loaded is not None
    assert (loaded.password, loaded.signing_key, loaded.shown) == (
        "s3cret",
        KEY,
        "rediss://argocd-redis:6379",
    )
    assert "s3cret" not in repr(loaded)


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"TAGPIN_REDIS_URL": "http://r"}, "redis:// or rediss://"),
        (
            {
                "TAGPIN_REDIS_URL": "redis://r",
                "TAGPIN_REDIS_SIGNING_KEY": "k" * 32,
                "TAGPIN_REDIS_SIGNING_KEY_FILE": "/k",
            },
            "keep one",
        ),
        (
            {"TAGPIN_REDIS_URL": "redis://r", "TAGPIN_REDIS_SIGNING_KEY_FILE": "/no/such"},
            "TAGPIN_REDIS_SIGNING_KEY_FILE",
        ),
        (
            {
                "TAGPIN_REDIS_URL": "redis://r",
                "TAGPIN_REDIS_SIGNING_KEY": "k" * 32,
                "TAGPIN_REDIS_TIMEOUT_MS": "0",
            },
            "TAGPIN_REDIS_TIMEOUT_MS",
        ),
    ],
)
def test_bad_settings_name_the_setting(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        redis_settings(Settings.from_environ(environ))


def test_a_redis_out_of_memory_gives_one_warning_and_ecr_answers(
    redis_server: RedisServer,
) -> None:
    client: Any = redis_server.client()
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", 1)  # every write is now refused with OOM
    ecr = ecr_with()
    warnings: list[str] = []

    answer = shared(redis_server, ecr, warnings).describe_tags(repo(), ["v1"])

    assert answer.found["v1"].digest == WEB_V1 and asked(ecr) == 1
    assert len(warnings) == 1 and "used memory > 'maxmemory'" in warnings[0]


def test_the_webhook_side_reports_redis_trouble_instead_of_raising() -> None:
    down = RedisSettings(url=f"redis://127.0.0.1:{free_port()}/0", password=None, signing_key=None)

    problem = PushGenerations(down).bump(repo().uri)

    assert problem is not None and repo().uri in problem and "refused" in problem
    assert PushGenerations(down).bump("docker.io/library/nginx") is None  # not ECR: nothing


def test_the_webhook_refuses_to_start_with_a_bad_redis_url(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from cmp.commands.webhook import webhook_command

    monkeypatch.setenv("TAGPIN_WEBHOOK_SECRET", "fleet-webhook-secret-0123456789")
    monkeypatch.setenv("TAGPIN_REDIS_URL", "http://argocd-redis:6379")

    code = webhook_command().main(args=[], prog_name="tagpin webhook", standalone_mode=False)

    assert code == 3
    assert "TAGPIN_REDIS_URL must start with redis:// or rediss://" in capsys.readouterr().err


def test_the_webhook_reads_the_redis_password_without_a_signing_key(tmp_path: Path) -> None:
    from cmp.commands.webhook import webhook_config

    (tmp_path / "auth").write_text(PASSWORD)
    secret = {"TAGPIN_WEBHOOK_SECRET": "fleet-webhook-secret-0123456789"}
    environ = {
        **secret,
        "TAGPIN_REDIS_URL": "redis://argocd-redis:6379/0",
        "TAGPIN_REDIS_PASSWORD_FILE": str(tmp_path / "auth"),
    }
    loaded = webhook_config(Settings.from_environ(environ), environ).shared_cache

    assert loaded is not None and loaded.password == PASSWORD and loaded.signing_key is None
    assert webhook_config(Settings.from_environ(secret), secret).shared_cache is None


# -- tag listings (branch deploys) ------------------------------------------------------------


def listed(ecr: StaticRegistry) -> int:
    return sum(1 for call in ecr.calls if call[0] == "list_tags")


def digests(answer: Lookup) -> dict[str, str]:
    return {tag: info.digest for tag, info in answer.found.items()}


def test_a_second_replica_reads_the_first_ones_listing_and_its_digests(
    redis_server: RedisServer,
) -> None:
    first, second = ecr_with(v2=WEB_V2), ecr_with(v2=WEB_V2)

    assert digests(shared(redis_server, first).list_tags(repo())) == {"v1": WEB_V1, "v2": WEB_V2}
    reader = shared(redis_server, second)
    assert digests(reader.list_tags(repo())) == {"v1": WEB_V1, "v2": WEB_V2}
    # The listing carried the digests: a lookup of a listed tag needs no ECR call either.
    assert digests(shared(redis_server, second).describe_tags(repo(), ["v2"])) == {"v2": WEB_V2}

    assert (listed(first), listed(second), asked(second)) == (1, 0, 0)
    assert reader.counts["hits"] == 1
    client: Any = redis_server.client()
    assert 0 < client.pttl(listing_key("123456789012:eu-west-1:team/web")) <= 30_000


def test_an_empty_repository_is_shared_a_missing_one_never(redis_server: RedisServer) -> None:
    empty: dict[EcrRepository, dict[str, TagInfo]] = {repo("team/empty"): {}}
    first, second = StaticRegistry(empty), StaticRegistry(empty)
    assert shared(redis_server, first).list_tags(repo("team/empty")) == Lookup()
    assert shared(redis_server, second).list_tags(repo("team/empty")) == Lookup()
    assert (listed(first), listed(second)) == (1, 0)

    gone, again = StaticRegistry({}), StaticRegistry({})
    assert shared(redis_server, gone).list_tags(repo("team/gone")).repository_missing
    assert shared(redis_server, again).list_tags(repo("team/gone")).repository_missing
    assert (listed(gone), listed(again)) == (1, 1)
    client: Any = redis_server.client()
    assert not client.keys("*team/gone*")


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(
            lambda v: with_body(v, tags=[[*body_of(v)["tags"][0][:1], WEB_V2, None, None]]),
            id="digest",
        ),
        pytest.param(lambda v: with_body(v, tags=body_of(v)["tags"][:-1]), id="tag-dropped"),
        pytest.param(lambda v: with_body(v, fetched_at=4e9), id="fetched-at"),
        pytest.param(lambda v: b"0" * 64 + v[64:], id="unsigned"),
        pytest.param(lambda v: v[:64], id="no-body"),
    ],
)
def test_a_tampered_listing_is_ignored_counted_and_ecr_asked(
    redis_server: RedisServer, tamper: Any
) -> None:
    shared(redis_server, ecr_with(v2=WEB_V2)).list_tags(repo())
    client: Any = redis_server.client()
    key = listing_key("123456789012:eu-west-1:team/web")
    client.set(key, tamper(client.get(key)), px=30_000)
    ecr = ecr_with(v2=WEB_V2)
    warnings: list[str] = []

    reader = shared(redis_server, ecr, warnings)
    answer = reader.list_tags(repo())

    assert digests(answer) == {"v1": WEB_V1, "v2": WEB_V2} and listed(ecr) == 1
    assert reader.counts["rejected"] == 1  # read twice (before and under the lock), counted once
    assert len(warnings) == 1
    assert "tag list of" in warnings[0]
    assert "not signed with TAGPIN_REDIS_SIGNING_KEY" in warnings[0]


def test_a_listing_replayed_under_another_repository_or_as_an_entry_is_refused(
    redis_server: RedisServer,
) -> None:
    """A genuine listing of team/web, copied where team/api's listing and a digest entry of
    team/web belong: neither may answer (the signature binds repository and kind)."""
    web, api = repo("team/web"), repo("team/api")
    shared(redis_server, StaticRegistry.of_digests({web: {"v1": WEB_V1}})).list_tags(web)
    client: Any = redis_server.client()
    genuine = client.get(listing_key("123456789012:eu-west-1:team/web"))
    client.set(listing_key("123456789012:eu-west-1:team/api"), genuine, px=30_000)
    client.hset(tags_key("123456789012:eu-west-1:team/web"), "v2", genuine)
    ecr = StaticRegistry.of_digests({api: {"v1": WEB_V2}, web: {"v2": WEB_V2}})
    warnings: list[str] = []
    reader = shared(redis_server, ecr, warnings)

    assert digests(reader.list_tags(api)) == {"v1": WEB_V2}
    assert digests(reader.describe_tags(web, ["v2"])) == {"v2": WEB_V2}

    assert (listed(ecr), asked(ecr)) == (1, 1)
    assert reader.counts["rejected"] == 2 and len(warnings) == 1


def test_a_digest_entry_is_refused_as_a_listing(redis_server: RedisServer) -> None:
    shared(redis_server, ecr_with()).describe_tags(repo(), ["v1"])
    client: Any = redis_server.client()
    entry = client.hget(tags_key("123456789012:eu-west-1:team/web"), "v1")
    client.set(listing_key("123456789012:eu-west-1:team/web"), entry, px=30_000)
    ecr = ecr_with()

    reader = shared(redis_server, ecr)

    assert digests(reader.list_tags(repo())) == {"v1": WEB_V1} and listed(ecr) == 1
    assert reader.counts["rejected"] == 1


class SlowListing(StaticRegistry):
    def list_tags(self, repository: EcrRepository) -> Lookup:
        time.sleep(0.3)
        return super().list_tags(repository)


def test_concurrent_replicas_list_once(redis_server: RedisServer) -> None:
    ecrs = [SlowListing({repo(): {"v1": TagInfo("v1", WEB_V1)}}) for _ in range(4)]
    layers = [shared(redis_server, ecr) for ecr in ecrs]
    answers: list[Lookup] = []
    start = threading.Barrier(4)

    def listing(layer: SharedRegistry) -> None:
        start.wait()
        answers.append(layer.list_tags(repo()))

    threads = [threading.Thread(target=listing, args=(layer,)) for layer in layers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert [digests(a) for a in answers] == [{"v1": WEB_V1}] * 4
    assert sum(listed(ecr) for ecr in ecrs) == 1
    assert sum(layer.counts["waits"] for layer in layers) >= 1


def test_a_waiting_replica_lists_itself_at_the_wait_limit(redis_server: RedisServer) -> None:
    client: Any = redis_server.client()
    client.set(lock_key("123456789012:eu-west-1:team/web"), "someone-else", px=10_000)
    ecr = ecr_with()

    started = time.monotonic()
    answer = shared(redis_server, ecr, wait_limit=0.2).list_tags(repo())

    assert digests(answer) == {"v1": WEB_V1} and listed(ecr) == 1
    assert time.monotonic() - started < 5


def test_a_push_makes_a_shared_listing_stale_generation_or_record(
    redis_server: RedisServer,
) -> None:
    shared(redis_server, ecr_with()).list_tags(repo())
    before = ecr_with(v2=WEB_V2)  # a new build; the shared listing does not show it yet
    assert digests(shared(redis_server, before).list_tags(repo())) == {"v1": WEB_V1}

    # The push record alone (the webhook could not reach Redis) refuses the older listing...
    first, second = ecr_with(v2=WEB_V2), ecr_with(v2=WEB_V2)
    pushed = announced(time.time())
    for ecr in (first, second):
        answer = shared(redis_server, ecr, pushes=pushed).list_tags(repo())
        assert digests(answer) == {"v1": WEB_V1, "v2": WEB_V2}
    assert (listed(first), listed(second)) == (1, 0)  # ...and the new one serves the fleet

    # A bumped generation does it too.
    assert PushGenerations(settings(redis_server, signing_key=None)).bump(repo().uri) is None
    third = ecr_with(v2=WEB_V2, v3=WEB_V2)
    assert digests(shared(redis_server, third).list_tags(repo())) == {
        "v1": WEB_V1,
        "v2": WEB_V2,
        "v3": WEB_V2,
    }
    assert listed(third) == 1


def test_a_listing_fetched_just_before_the_push_by_a_clock_ahead_is_stale(
    redis_server: RedisServer,
) -> None:
    pushed_at = 1_800_000_000.0
    shared(redis_server, ecr_with(), clock=lambda: pushed_at + 0.5).list_tags(repo())
    ecr = ecr_with(v2=WEB_V2)

    reader = shared(redis_server, ecr, pushes=announced(pushed_at), clock=lambda: pushed_at + 1)

    assert digests(reader.list_tags(repo())) == {"v1": WEB_V1, "v2": WEB_V2}
    assert listed(ecr) == 1


def test_a_listing_older_than_the_tag_list_ttl_is_not_trusted(redis_server: RedisServer) -> None:
    now = [1_800_000_000.0]
    shared(redis_server, ecr_with(), clock=lambda: now[0]).list_tags(repo())
    now[0] += 31
    ecr = ecr_with()

    shared(redis_server, ecr, clock=lambda: now[0]).list_tags(repo())

    assert listed(ecr) == 1


def test_a_listing_over_the_size_limit_is_not_shared(redis_server: RedisServer) -> None:
    many = {f"build-{n:05d}": WEB_V1 for n in range(MAX_LISTING_BYTES // 80)}
    first, second = ecr_with(**many), ecr_with(**many)

    assert len(shared(redis_server, first).list_tags(repo()).found) == len(many) + 1
    assert len(shared(redis_server, second).list_tags(repo()).found) == len(many) + 1

    assert (listed(first), listed(second)) == (1, 1)
    client: Any = redis_server.client()
    assert not client.exists(listing_key("123456789012:eu-west-1:team/web"))


def test_the_disk_cache_keeps_the_age_of_a_shared_listing(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    now = [1_800_000_000.0]
    shared(redis_server, ecr_with(), clock=lambda: now[0]).list_tags(repo())
    now[0] += 20
    layer = shared(redis_server, ecr_with(), clock=lambda: now[0])
    disk = DiskCache(tmp_path)
    local = CachingRegistry(layer, disk, clock=lambda: now[0], tag_list_ttl=30)

    assert digests(local.list_tags(repo())) == {"v1": WEB_V1}

    cached = disk.read(repo())
    assert cached is not None and cached.tag_list_fetched_at == 1_800_000_000.0
    now[0] += 11  # 31 s after ECR was asked: neither memory nor disk may answer any more
    ecr = ecr_with()
    CachingRegistry(
        shared(redis_server, ecr, clock=lambda: now[0]), disk, clock=lambda: now[0], tag_list_ttl=30
    ).list_tags(repo())
    assert listed(ecr) == 1


def test_redis_trouble_while_listing_gives_one_warning_and_ecr_lists(
    redis_server: RedisServer,
) -> None:
    ecr = ecr_with()
    warnings: list[str] = []
    down = settings(redis_server, url=f"redis://127.0.0.1:{free_port()}/0")
    layer = shared(redis_server, ecr, warnings, store_settings=down)

    for _ in range(3):
        assert digests(layer.list_tags(repo())) == {"v1": WEB_V1}
    assert digests(layer.describe_tags(repo(), ["v1"])) == {"v1": WEB_V1}

    assert (listed(ecr), asked(ecr), len(warnings)) == (3, 1, 1)
    assert "refused" in warnings[0]


# -- one read for every repository a render asks (describe_many's prefetch) ----------------

FOUR = [repo(f"team/app{i}") for i in range(4)]


def four_in_ecr(digest: str = WEB_V1) -> StaticRegistry:
    return StaticRegistry.of_digests({r: {"v1": digest} for r in FOUR})


def connections(server: RedisServer) -> int:
    client: Any = server.client()
    return int(client.info("stats")["total_connections_received"])


def test_a_render_reads_every_repository_from_redis_on_one_connection(
    redis_server: RedisServer,
) -> None:
    describe_many(shared(redis_server, four_in_ecr()), dict.fromkeys(FOUR, ["v1"]))
    ecr = four_in_ecr(WEB_V2)  # Redis still holds v1 everywhere: it answers, not ECR
    before = connections(redis_server)

    answers = describe_many(shared(redis_server, ecr), dict.fromkeys(FOUR, ["v1"]))

    assert {r: a.found["v1"].digest for r, a in answers.items()} == dict.fromkeys(FOUR, WEB_V1)
    assert asked(ecr) == 0
    assert connections(redis_server) - before == 2  # the render's one, and the count's own


def test_what_a_render_reads_ahead_is_judged_as_any_read(redis_server: RedisServer) -> None:
    describe_many(shared(redis_server, four_in_ecr()), dict.fromkeys(FOUR, ["v1"]))
    client: Any = redis_server.client()
    key = tags_key("123456789012:eu-west-1:team/app0")
    client.hset(key, "v1", with_body(client.hget(key, "v1"), digest=WEB_V2))
    PushGenerations(settings(redis_server, signing_key=None)).bump(FOUR[1].uri)
    ecr, warnings = four_in_ecr(WEB_V2), list[str]()

    layer = shared(redis_server, ecr, warnings)
    answers = describe_many(layer, dict.fromkeys(FOUR, ["v1"]))

    digests = [answers[r].found["v1"].digest for r in FOUR]
    assert digests == [WEB_V2, WEB_V2, WEB_V1, WEB_V1]  # tampered, pushed: ECR; others: Redis
    assert sorted(call[1].name for call in ecr.calls) == ["team/app0", "team/app1"]
    assert layer.counts["rejected"] == 1 and len(warnings) == 1


def test_redis_trouble_while_reading_ahead_gives_one_warning_and_ecr_answers(
    redis_server: RedisServer,
) -> None:
    ecr, warnings = four_in_ecr(), list[str]()
    wrong = settings(redis_server, password="wrong")

    answers = describe_many(
        shared(redis_server, ecr, warnings, store_settings=wrong), dict.fromkeys(FOUR, ["v1"])
    )

    assert {r: a.found["v1"].digest for r, a in answers.items()} == dict.fromkeys(FOUR, WEB_V1)
    assert asked(ecr) == 4
    assert len(warnings) == 1 and "invalid" in warnings[0]


def test_a_database_redis_does_not_have_is_one_warning_and_nothing_runs_on_db_0(
    redis_server: RedisServer,
) -> None:
    ecr, warnings = four_in_ecr(), list[str]()
    beyond = settings(redis_server, url=redis_server.url.removesuffix("/0") + "/99")

    answers = describe_many(
        shared(redis_server, ecr, warnings, store_settings=beyond), dict.fromkeys(FOUR, ["v1"])
    )

    assert len(answers) == 4 and asked(ecr) == 4
    assert len(warnings) == 1 and "out of range" in warnings[0]
    client: Any = redis_server.client()
    assert client.keys("*") == []


@pytest.mark.parametrize("password", [PASSWORD, None], ids=["with-auth", "without-auth"])
def test_the_connections_are_named_tagpin(tmp_path: Path, password: str | None) -> None:
    server = RedisServer(tmp_path, password=password)
    server.start()
    try:
        store = settings(server, password=password)
        layer = shared(server, four_in_ecr(), store_settings=store)  # keeps its connection
        describe_many(layer, {FOUR[0]: ["v1"]})
        client: Any = server.client()

        names = [c["name"] for c in client.client_list() if c["name"]]

        assert names == ["tagpin"]
    finally:
        server.stop()
