"""What each layer reports to the observer (the seam operators' metrics plug into): which layer
answered and how fresh, ECR calls and their error codes, Redis trouble, waits on another
render's fill; one report per answer on a warm render."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from cmp.registry.base import Lookup, RegistryUnavailable, describe_many
from cmp.registry.cache import CachingRegistry, DiskCache
from cmp.registry.ecr import EcrRegistryClient, EcrSettings
from cmp.registry.lock import LockedRegistry
from cmp.registry.names import EcrRepository
from cmp.registry.pushes import Push, PushFloors, PushRecord
from cmp.registry.shared import (
    PushGenerations,
    RedisSettings,
    RedisStore,
    SharedRegistry,
    lock_key,
    tags_key,
)
from tests.support.ecr_repos import ecr_repository as repo
from tests.support.fake_ecr import FakeEcr, Reply, ok, throttling
from tests.support.observer import Recorder
from tests.support.redis_server import PASSWORD, RedisServer, free_port
from tests.support.static_registry import StaticRegistry

WEB_V1 = "sha256:" + "1" * 64
API_V1 = "sha256:" + "3" * 64
KEY = b"0123456789abcdef0123456789abcdef-signing"
REPO_ID, API_ID = "123456789012:eu-west-1:team/web", "123456789012:eu-west-1:team/api"


def ecr() -> StaticRegistry:
    return StaticRegistry.of_digests({repo(): {"v1": WEB_V1}, repo("team/api"): {"v1": API_V1}})


def caching(root: Path, observer: Recorder, inner: Any = None, **kw: Any) -> CachingRegistry:
    store = DiskCache(root, observer=observer)
    return CachingRegistry(inner or ecr(), store, observer=observer, **kw)


def pushed_now() -> PushFloors:
    floors = PushFloors()
    floors.announce(PushRecord({repo().uri: Push("v1", None, time.time())}))
    return floors


def test_a_warm_render_reports_one_answer_per_repository_and_nothing_else(
    tmp_path: Path,
) -> None:
    caching(tmp_path, Recorder()).describe_tags(repo(), ["v1"])
    caching(tmp_path, Recorder()).describe_tags(repo("team/api"), ["v1"])
    seen = Recorder()

    describe_many(caching(tmp_path, seen), {repo(): ["v1"], repo("team/api"): ["v1"]})

    assert seen.events == [("answered", "disk", "tags", "fresh")] * 2


def test_memory_answers_a_second_question_in_the_same_render(tmp_path: Path) -> None:
    seen = Recorder()
    registry = caching(tmp_path, seen)
    registry.describe_tags(repo(), ["v1"])  # asked below: the test double reports nothing
    registry.list_tags(repo())
    registry.describe_tags(repo(), ["v1"])
    registry.list_tags(repo())

    assert seen.events == [
        ("answered", "memory", "tags", "fresh"),
        ("answered", "memory", "listing", "fresh"),
    ]


def test_answers_refused_by_the_push_floor_are_reported_once_per_layer(tmp_path: Path) -> None:
    caching(tmp_path, Recorder()).describe_tags(repo(), ["v1"])
    seen = Recorder()
    caching(tmp_path, seen, pushes=pushed_now()).describe_tags(repo(), ["v1"])

    registry = caching(tmp_path, seen, pushes=pushed_now())  # a newer push
    assert registry.describe_cached(repo(), ["v1"]) is None  # a peek reports no refusal
    registry.describe_tags(repo(), ["v1"])

    assert seen.events == [
        ("answered", "disk", "tags", "pushed"),
        ("answered", "disk", "tags", "pushed"),
    ]


class Down(StaticRegistry):
    def describe_tags(self, repository: EcrRepository, tags: Any) -> Lookup:
        raise RegistryUnavailable("ECR is down")


def test_a_stale_answer_served_while_ecr_is_down_is_reported(tmp_path: Path) -> None:
    clock = [time.time()]
    caching(tmp_path, Recorder(), clock=lambda: clock[0]).describe_tags(repo(), ["v1"])
    clock[0] += 3600
    seen = Recorder()

    stale = caching(tmp_path, seen, Down({}), clock=lambda: clock[0], stale_for=86400.0)
    stale.describe_tags(repo(), ["v1"])

    assert seen.events == [("answered", "disk", "tags", "stale")]


def test_a_render_waiting_for_another_process_to_fill_is_reported(tmp_path: Path) -> None:
    seen = Recorder()
    holder = DiskCache(tmp_path)
    done = threading.Event()

    def render() -> None:
        caching(tmp_path, seen).describe_tags(repo(), ["v1"])
        done.set()

    with holder.locked(repo()):
        worker = threading.Thread(target=render)
        worker.start()
        deadline = time.monotonic() + 30
        while ("waited", "disk") not in seen.events and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not done.is_set()
    worker.join(30)
    assert seen.events == [("waited", "disk")]


def test_the_lock_reports_its_own_answers_only() -> None:
    seen = Recorder()
    locked = LockedRegistry(
        [_Entry(repo(), "v1", WEB_V1)], fallback=ecr, observer=seen, shown="tagpin.lock"
    )
    locked.describe_tags(repo(), ["v1"])
    assert locked.describe_cached(repo(), ["v1"]) is not None
    locked.describe_tags(repo(), ["v1", "v2"])  # the fallback answers v2

    assert seen.events == [("answered", "lock", "tags", "fresh")] * 2


class _Entry:
    def __init__(self, repository: EcrRepository, tag: str, digest: str) -> None:
        self.repository, self.tag, self.digest = repository, tag, digest


# -- ECR ----------------------------------------------------------------------------------------


def detail(tags: list[str]) -> dict[str, object]:
    return {"imageDigest": WEB_V1, "imageTags": tags, "imagePushedAt": 1764139534.0}


def test_ecr_reports_each_call_with_its_retries_and_error_code(fake_ecr: FakeEcr) -> None:
    seen = Recorder()
    fake_ecr.script(throttling(), ok({"imageDetails": [detail(["v1"])]}))
    EcrRegistryClient(EcrSettings(max_attempts=3), observer=seen).describe_tags(repo(), ["v1"])
    fake_ecr.script(otherwise=throttling())
    with pytest.raises(RegistryUnavailable):
        EcrRegistryClient(EcrSettings(max_attempts=2), observer=seen).describe_tags(repo(), ["v1"])
    fake_ecr.script(otherwise=Reply(400, {"__type": "SomethingNewException", "message": "?"}))
    with pytest.raises(Exception, match="SomethingNewException"):
        EcrRegistryClient(EcrSettings(max_attempts=1), observer=seen).list_tags(repo())

    assert seen.events == [
        ("ecr_called", "DescribeImages", None, 1),
        ("answered", "ecr", "tags", "fresh"),
        ("ecr_called", "DescribeImages", "ThrottlingException", 1),
        ("ecr_called", "DescribeImages", "other", 0),  # any code: a bounded label
    ]


# -- Redis --------------------------------------------------------------------------------------


def shared(server: RedisServer, seen: Recorder, url: str = "", **kw: Any) -> SharedRegistry:
    settings = RedisSettings(url=url or server.url, password=PASSWORD, signing_key=KEY)
    return SharedRegistry(
        ecr(),
        RedisStore.for_render(settings),
        ttl=300.0,
        list_ttl=30.0,
        wait_limit=0.2,
        warnings=[],
        observer=seen,
        **kw,
    )


def test_redis_reports_hits_pushes_bad_entries_waits_and_trouble(
    redis_server: RedisServer,
) -> None:
    shared(redis_server, Recorder()).describe_tags(repo(), ["v1"])
    seen = Recorder()
    shared(redis_server, seen).describe_tags(repo(), ["v1"])
    assert (
        PushGenerations(
            RedisSettings(url=redis_server.url, password=PASSWORD, signing_key=None)
        ).bump(repo().uri)
        is None
    )
    shared(redis_server, seen).describe_tags(repo(), ["v1"])  # made stale by the push
    client: Any = redis_server.client()
    client.hset(tags_key(REPO_ID), "v1", b"0" * 80)  # not signed with the key
    shared(redis_server, seen).describe_tags(repo(), ["v1"])
    client.set(lock_key(API_ID), "another-replica", px=10_000)
    shared(redis_server, seen).describe_tags(repo("team/api"), ["v1"])
    shared(redis_server, seen, url=f"redis://127.0.0.1:{free_port()}/0").list_tags(repo())

    assert seen.events == [
        ("answered", "redis", "tags", "fresh"),
        ("answered", "redis", "tags", "pushed"),
        ("redis_trouble", "rejected"),
        ("waited", "redis"),
        ("redis_trouble", "down"),
    ]
