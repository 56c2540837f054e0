"""The registry a render asks, as cmp.registry.build puts its layers in order (lock → memory →
disk → Redis → ECR), and every layer's own defaults equal to the settings table's."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import pytest

from cmp.registry.base import describe_many
from cmp.registry.build import build_registry, with_lock
from cmp.registry.cache import CachingRegistry
from cmp.registry.ecr import EcrSettings
from cmp.registry.lock import Lock, LockedRegistry, LockMode, LockProblem
from cmp.registry.names import EcrRepository
from cmp.registry.pushes import PushFloors
from cmp.registry.shared import RedisSettings
from cmp.settings import DEFAULT_SETTINGS, CacheMode, Settings
from tests.support.ecr_repos import ecr_repository as repo
from tests.support.fake_ecr import FakeEcr, ok
from tests.support.observer import Recorder
from tests.support.redis_server import PASSWORD, RedisServer

WEB_V1 = "sha256:" + "1" * 64
WEB_V2 = "sha256:" + "2" * 64
KEY = b"0123456789abcdef0123456789abcdef-signing"


def defaults(function: Any) -> dict[str, Any]:
    return {
        name: parameter.default
        for name, parameter in inspect.signature(function).parameters.items()
        if parameter.default is not inspect.Parameter.empty
    }


def test_every_layers_defaults_are_the_settings_tables() -> None:
    """A layer built without the settings (by a test, a tool, another command) behaves as the
    documented defaults say: TAGPIN_TAG_LIST_TTL was 60 s in the cache's signature, 30 s in the
    table, and TAGPIN_ECR_DEADLINE 25 s against 12 s."""
    table = DEFAULT_SETTINGS
    cache = defaults(CachingRegistry.__init__)
    assert (cache["ttl"], cache["tag_list_ttl"], cache["stale_for"]) == (
        table.cache_ttl,
        table.tag_list_ttl,
        table.serve_stale_hours * 3600,
    )
    assert EcrSettings() == EcrSettings(
        max_attempts=table.ecr_max_attempts,
        connect_timeout=table.ecr_connect_timeout,
        read_timeout=table.ecr_read_timeout,
        deadline=table.ecr_deadline,
        concurrency=table.ecr_concurrency,
    )
    assert defaults(describe_many)["max_workers"] == table.ecr_concurrency
    assert PushFloors().skew == table.push_clock_skew
    assert RedisSettings("redis://r", None, None).timeout * 1000 == table.redis_timeout_ms


def detail(digest: str, tags: list[str]) -> dict[str, object]:
    return {"imageDigest": digest, "imageTags": tags, "imagePushedAt": 1764139534.0}


def built(cache_dir: Path, seen: Recorder, settings: Settings = DEFAULT_SETTINGS, **kw: Any) -> Any:
    return build_registry(
        settings, cache_dir=cache_dir, pushes=PushFloors(), warnings=[], observer=seen, **kw
    )


def answers(seen: Recorder) -> list[str]:
    return [event[1] for event in seen.events if event[0] == "answered"]


def test_the_layers_answer_in_order_memory_disk_redis_ecr(
    fake_ecr: FakeEcr, redis_server: RedisServer, tmp_path: Path
) -> None:
    fake_ecr.script(ok({"imageDetails": [detail(WEB_V1, ["v1"])]}))
    redis = RedisSettings(url=redis_server.url, password=PASSWORD, signing_key=KEY)
    seen = Recorder()

    first = built(tmp_path / "replica-1", seen, redis=redis)
    first.describe_tags(repo(), ["v1"])  # ECR, then shared in Redis and kept on disk
    first.describe_tags(repo(), ["v1"])  # memory
    built(tmp_path / "replica-1", seen, redis=redis).describe_tags(repo(), ["v1"])  # disk
    built(tmp_path / "replica-2", seen, redis=redis).describe_tags(repo(), ["v1"])  # Redis

    assert answers(seen) == ["ecr", "memory", "disk", "redis"]
    assert len(fake_ecr.requests) == 1


def test_the_lock_answers_first_and_strict_never_builds_the_layers_below() -> None:
    seen = Recorder()
    lock = Lock((_Locked(repo(), "v1", WEB_V2),), "tagpin.lock", LockMode.USE)

    def below() -> Any:
        raise AssertionError("the lock holds every tag asked")

    registry = with_lock(lock, below, observer=seen)()
    assert registry.describe_tags(repo(), ["v1"]).found["v1"].digest == WEB_V2
    strict = with_lock(lock._replace(mode=LockMode.STRICT), below)()
    with pytest.raises(LockProblem, match="not in tagpin.lock"):
        strict.describe_tags(repo(), ["v2"])

    assert isinstance(registry, LockedRegistry)
    assert answers(seen) == ["lock"]


def test_without_a_lock_the_layers_below_answer_alone() -> None:
    def below() -> Any:
        return "the caches"

    assert with_lock(None, below) is below


def test_a_registry_built_with_the_cache_off_writes_nothing(
    fake_ecr: FakeEcr, tmp_path: Path
) -> None:
    fake_ecr.script(ok({"imageDetails": [detail(WEB_V1, ["v1"])]}))
    off = DEFAULT_SETTINGS._replace(cache=CacheMode.OFF)

    built(tmp_path, Recorder(), off).describe_tags(repo(), ["v1"])

    assert not tmp_path.exists() or list(tmp_path.iterdir()) == []


class _Locked:
    def __init__(self, repository: EcrRepository, tag: str, digest: str) -> None:
        self.repository, self.tag, self.digest = repository, tag, digest
