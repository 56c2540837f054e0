"""The caches in front of a registry: hits, TTLs, modes, damaged files (many processes at once:
tests/e2e/registry/test_registry_cache_processes.py)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from cmp.registry.base import Lookup
from cmp.registry.cache import CacheMode, CachingRegistry, DiskCache
from tests.support.ecr_repos import ecr_repository as repo
from tests.support.static_registry import StaticRegistry

WEB_V1 = "sha256:" + "1" * 64
WEB_V2 = "sha256:" + "2" * 64
API_V1 = "sha256:" + "3" * 64


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def ecr() -> StaticRegistry:
    return StaticRegistry.of_digests(
        {repo(): {"v1": WEB_V1, "v2": WEB_V2}, repo("team/api"): {"v1": API_V1}}
    )


def caching(
    inner: StaticRegistry, root: Path, clock: Clock, warnings: list[str] | None = None, **kw: object
) -> CachingRegistry:
    store = DiskCache(root, warnings=warnings, clock=clock)
    return CachingRegistry(inner, store, clock, **kw)  # type: ignore[arg-type]


def digests(lookup: Lookup) -> dict[str, str]:
    return {tag: info.digest for tag, info in lookup.found.items()}


def test_a_second_process_reads_digests_from_disk(tmp_path: Path) -> None:
    clock, first, second = Clock(), ecr(), ecr()

    cold = caching(first, tmp_path, clock).describe_tags(repo(), ["v1", "v2"])
    warm = caching(second, tmp_path, clock).describe_tags(repo(), ["v1", "v2"])

    assert digests(cold) == digests(warm) == {"v1": WEB_V1, "v2": WEB_V2}
    assert len(first.calls) == 1
    assert second.calls == []


def test_only_uncached_tags_are_asked(tmp_path: Path) -> None:
    clock, inner = Clock(), ecr()
    caching(ecr(), tmp_path, clock).describe_tags(repo(), ["v1"])

    lookup = caching(inner, tmp_path, clock).describe_tags(repo(), ["v1", "v2"])

    assert digests(lookup) == {"v1": WEB_V1, "v2": WEB_V2}
    assert inner.calls == [("describe_tags", repo(), frozenset({"v2"}))]


def test_the_same_process_asks_once(tmp_path: Path) -> None:
    clock, inner = Clock(), ecr()
    registry = CachingRegistry(inner, None, clock)

    registry.describe_tags(repo(), ["v1"])
    registry.describe_tags(repo(), ["v1"])

    assert len(inner.calls) == 1


def test_entries_expire_after_the_ttl(tmp_path: Path) -> None:
    clock, inner = Clock(), ecr()
    caching(ecr(), tmp_path, clock, ttl=300).describe_tags(repo(), ["v1"])

    clock.now += 299
    caching(inner, tmp_path, clock, ttl=300).describe_tags(repo(), ["v1"])
    assert inner.calls == []
    clock.now += 2
    caching(inner, tmp_path, clock, ttl=300).describe_tags(repo(), ["v1"])
    assert len(inner.calls) == 1


def test_a_tag_list_expires_sooner_than_the_digests_it_carries(tmp_path: Path) -> None:
    clock, inner = Clock(), ecr()
    listed = caching(ecr(), tmp_path, clock, ttl=300, tag_list_ttl=60).list_tags(repo())
    assert digests(listed) == {"v1": WEB_V1, "v2": WEB_V2}

    clock.now += 30
    assert caching(inner, tmp_path, clock, ttl=300, tag_list_ttl=60).list_tags(repo()) == listed
    assert inner.calls == []
    clock.now += 60
    later = caching(inner, tmp_path, clock, ttl=300, tag_list_ttl=60)
    later.describe_tags(repo(), ["v2"])
    assert inner.calls == []
    later.list_tags(repo())
    assert [call[0] for call in inner.calls] == ["list_tags"]


def test_missing_tags_and_repositories_are_never_cached(tmp_path: Path) -> None:
    clock, inner = Clock(), ecr()
    caching(ecr(), tmp_path, clock).describe_tags(repo(), ["v9"])
    caching(ecr(), tmp_path, clock).describe_tags(repo("team/gone"), ["v1"])

    tag = caching(inner, tmp_path, clock).describe_tags(repo(), ["v9"])
    repository = caching(inner, tmp_path, clock).describe_tags(repo("team/gone"), ["v1"])

    assert tag.missing == {"v9"}
    assert repository.repository_missing
    assert len(inner.calls) == 2


def test_refresh_ignores_cached_digests_but_stores_new_ones(tmp_path: Path) -> None:
    clock = Clock()
    caching(ecr(), tmp_path, clock).describe_tags(repo(), ["v1"])
    moved = StaticRegistry.of_digests({repo(): {"v1": WEB_V2}})

    refreshed = caching(moved, tmp_path, clock, mode=CacheMode.REFRESH).describe_tags(
        repo(), ["v1"]
    )
    after = caching(ecr(), tmp_path, clock).describe_tags(repo(), ["v1"])

    assert digests(refreshed) == digests(after) == {"v1": WEB_V2}
    assert len(moved.calls) == 1


def test_off_writes_nothing(tmp_path: Path) -> None:
    inner = ecr()

    caching(inner, tmp_path, Clock(), mode=CacheMode.OFF).describe_tags(repo(), ["v1"])

    assert len(inner.calls) == 1
    assert list(tmp_path.iterdir()) == []


def test_one_file_per_repository_under_region_and_account(tmp_path: Path) -> None:
    caching(ecr(), tmp_path, Clock()).describe_tags(repo("team/web"), ["v1"])

    written = tmp_path / "v1" / "eu-west-1" / "123456789012" / "team%2Fweb.json"
    body = json.loads(written.read_text())["body"]
    assert body["tags"]["v1"]["digest"] == WEB_V1


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda text: text[: len(text) // 2], id="truncated"),
        pytest.param(lambda text: "\x00garbage{", id="garbage"),
        pytest.param(lambda text: text.replace(WEB_V1, WEB_V2), id="edited-without-checksum"),
        pytest.param(lambda text: text.replace("1" * 64, "x" * 64), id="invalid-digest"),
        pytest.param(lambda text: "", id="empty"),
    ],
)
def test_a_damaged_file_is_ignored_with_one_warning_and_rewritten(
    tmp_path: Path, damage: object
) -> None:
    clock = Clock()
    store = DiskCache(tmp_path, clock=clock)
    caching(ecr(), tmp_path, clock).describe_tags(repo(), ["v1"])
    path = store.path_for(repo())
    path.write_text(damage(path.read_text()))  # type: ignore[operator]
    inner, warnings = ecr(), []  # type: ignore[var-annotated]

    registry = caching(inner, tmp_path, clock, warnings)
    lookup = registry.describe_tags(repo(), ["v1"])

    assert digests(lookup) == {"v1": WEB_V1}
    assert len(inner.calls) == 1
    assert len(warnings) == 1
    assert "corrupt image cache file" in warnings[0]
    assert caching(ecr(), tmp_path, clock).describe_tags(repo(), ["v1"]) == lookup


def test_an_unusable_cache_directory_still_renders_with_one_warning(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    inner, warnings = ecr(), []  # type: ignore[var-annotated]
    registry = caching(inner, blocker / "cache", Clock(), warnings)

    web = registry.describe_tags(repo(), ["v1", "v2"])
    api = registry.describe_tags(repo("team/api"), ["v1"])
    listed = registry.list_tags(repo())

    assert digests(web) == {"v1": WEB_V1, "v2": WEB_V2}
    assert digests(api) == {"v1": API_V1}
    assert set(listed.found) == {"v1", "v2"}
    assert len(warnings) == 1
    assert "cannot use the image cache directory" in warnings[0]


def test_a_read_only_repository_directory_still_renders_with_one_warning(tmp_path: Path) -> None:
    store = DiskCache(tmp_path)
    region_dir = store.path_for(repo()).parent.parent
    region_dir.mkdir(parents=True)
    (region_dir / "123456789012").write_text("a file where the account directory goes")
    warnings: list[str] = []

    registry = caching(ecr(), tmp_path, Clock(), warnings)
    lookup = registry.describe_tags(repo(), ["v1"])
    registry.describe_tags(repo("team/api"), ["v1"])

    assert digests(lookup) == {"v1": WEB_V1}
    assert len(warnings) == 1


def test_leftovers_of_killed_writers_are_never_read_and_get_swept(tmp_path: Path) -> None:
    clock = Clock(time.time())
    store = DiskCache(tmp_path, clock=clock)
    directory = store.path_for(repo()).parent
    directory.mkdir(parents=True)
    stale = directory / ".team%2Fweb.json.4242.1.tmp"
    fresh = directory / ".team%2Fweb.json.4343.1.tmp"
    for leftover in (stale, fresh):
        leftover.write_text("{")
    os.utime(stale, (clock.now - 3600, clock.now - 3600))

    lookup = caching(ecr(), tmp_path, clock).describe_tags(repo(), ["v1"])

    assert digests(lookup) == {"v1": WEB_V1}
    assert not stale.exists()
    assert fresh.exists()  # it may belong to a writer still running


def test_memory_holds_at_most_its_size_and_forgets_the_first_remembered_first() -> None:
    inner = StaticRegistry.of_digests({repo(): {"v1": WEB_V1, "v2": WEB_V2, "v3": API_V1}})
    registry = CachingRegistry(inner, None, Clock(), memory_size=2)
    for tag in ("v1", "v2", "v3"):
        registry.describe_tags(repo(), [tag])

    assert registry.describe_cached(repo(), ["v2", "v3"]) is not None
    assert registry.describe_cached(repo(), ["v1"]) is None
