"""The push record (what the webhook writes on an Application) and the freshness rule every image
cache applies with it: no cached answer older than an announced push is ever used."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from cmp.registry.base import Lookup, RegistryUnavailable, TagInfo
from cmp.registry.cache import CachingRegistry, DiskCache
from cmp.registry.names import EcrRegistry, EcrRepository
from cmp.registry.pushes import (
    MAX_REPOSITORIES,
    PUSHES_ANNOTATION,
    BadRecord,
    Push,
    PushFloors,
    PushRecord,
    format_record,
    parse_record,
    record_pushes,
)
from tests.support.ecr_repos import ecr_repository as repo
from tests.support.static_registry import StaticRegistry

HOST = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
WEB = f"{HOST}/team/web"
OLD = "sha256:" + "1" * 64
NEW = "sha256:" + "2" * 64
API = "sha256:" + "3" * 64
T0 = 1_800_000_000.0


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# --- the record --------------------------------------------------------------------------------


def test_a_record_reads_back_what_was_written_byte_for_byte() -> None:
    record = PushRecord(
        {WEB: Push("pr-42-0002", NEW, T0), f"{HOST}/team/api": Push("main", None, 5.5)}
    )
    text = format_record(record)
    assert parse_record(text) == record
    assert format_record(parse_record(text)) == text
    assert json.loads(text)["v"] == 1


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[]",
        '{"v": 2, "pushes": {}}',
        '{"v": 1}',
        '{"v": 1, "pushes": {"x": "main"}}',
        '{"v": 1, "pushes": {"x": {"tag": "main", "digest": null, "at": "soon"}}}',
        '{"v": 1, "pushes": {"x": {"tag": "main", "digest": null, "at": true}}}',
        '{"v": 1, "pushes": {"x": {"tag": 7, "digest": null, "at": 1}}}',
        '{"v": 1, "pushes": {}, "older": "yesterday"}',
    ],
)
def test_a_record_tagpin_did_not_write_is_refused(text: str) -> None:
    with pytest.raises(BadRecord):
        parse_record(text)


def test_every_push_moves_its_repository_forward_even_on_a_slower_clock() -> None:
    first = record_pushes(PushRecord({}), [(WEB, "main", OLD)], now=T0)
    # Another webhook replica whose clock is one second behind announces the next push.
    second = record_pushes(first, [(WEB, "main", NEW)], now=T0 - 1)
    assert second.pushes[WEB].at > first.pushes[WEB].at
    assert second.pushes[WEB].digest == NEW


def test_the_record_is_bounded_and_folds_the_oldest_into_older() -> None:
    record = PushRecord({})
    names = [f"{HOST}/team/{'x' * 200}-{n}" for n in range(100)]
    for n, name in enumerate(names):
        record = record_pushes(record, [(name, "t" * 128, NEW)], now=T0 + n)
    assert len(record.pushes) == MAX_REPOSITORIES
    assert set(record.pushes) == set(names[-MAX_REPOSITORIES:])  # the newest stay listed
    assert record.older == T0 + 100 - MAX_REPOSITORIES - 1  # the newest of those folded
    assert len(format_record(record)) < 8 * 1024  # far below Kubernetes' 256 KiB for all


def test_a_push_after_folding_is_newer_than_older() -> None:
    record = PushRecord({}, older=T0 + 10)
    assert record_pushes(record, [(WEB, "main", None)], now=T0).pushes[WEB].at > T0 + 10


# --- the freshness rule ------------------------------------------------------------------------


def floors(record: PushRecord, skew: float = 2.0) -> PushFloors:
    found = PushFloors(skew=skew)
    found.announce(record)
    return found


def test_without_a_push_every_entry_is_admitted() -> None:
    assert PushFloors().admits(repo(), fetched_at=0.0, seen=None)


def test_entries_fetched_before_the_push_are_not_admitted() -> None:
    rule = floors(PushRecord({WEB: Push("main", NEW, T0)}))
    assert not rule.admits(repo(), fetched_at=T0 - 60, seen=None)
    # Fetched after the push but within the clock skew: it may predate the push.
    assert not rule.admits(repo(), fetched_at=T0 + 1, seen=None)
    assert rule.admits(repo(), fetched_at=T0 + 2, seen=None)
    # Fetched by a render that had read this very push: its ECR call came after the push.
    assert rule.admits(repo(), fetched_at=T0 - 1, seen=T0)
    # ...but not one that had read an earlier push.
    assert not rule.admits(repo(), fetched_at=T0 - 1, seen=T0 - 30)
    # Other repositories are not affected.
    assert rule.admits(repo("team/api"), fetched_at=0.0, seen=None)


def test_what_the_floor_decided_is_kept_per_repository_for_the_metrics() -> None:
    """A repository counts once per render: refused if any cached answer was, else admitted;
    repositories without a push are not counted."""
    rule = floors(PushRecord({WEB: Push("main", NEW, T0), f"{HOST}/team/api": Push("v2", API, T0)}))
    assert rule.decisions() == []
    rule.admits(repo(), fetched_at=T0 - 60, seen=None)  # refused: the memory layer's
    rule.admits(repo(), fetched_at=T0 + 5, seen=None)  # admitted: the disk layer's
    rule.admits(repo("team/api"), fetched_at=T0 + 5, seen=None)
    rule.admits(repo("team/other"), fetched_at=0.0, seen=None)
    assert sorted(rule.decisions()) == [False, True]
    assert rule.pushed(repo()) == Push("main", NEW, T0)
    assert rule.pushed(repo("team/other")) is None


def test_older_applies_to_every_repository_the_record_no_longer_lists() -> None:
    rule = floors(PushRecord({WEB: Push("main", NEW, T0)}, older=T0 - 10))
    assert not rule.admits(repo("team/api"), fetched_at=T0 - 20, seen=None)
    assert rule.admits(repo("team/api"), fetched_at=T0 - 8, seen=None)


def test_a_fips_host_names_the_same_repository() -> None:
    rule = floors(PushRecord({WEB: Push("main", NEW, T0)}))
    fips = EcrRegistry(
        "123456789012.dkr.ecr-fips.eu-west-1.amazonaws.com",
        "123456789012",
        "eu-west-1",
        fips=True,
        dualstack=False,
    )
    assert not rule.admits(EcrRepository(fips, "team/web"), fetched_at=T0 - 60, seen=None)


def test_repositories_outside_ecr_are_skipped() -> None:
    rule = floors(PushRecord({"ghcr.io/org/web": Push("main", None, T0)}))
    assert not rule


def test_an_unreadable_record_distrusts_every_cached_answer() -> None:
    rule = PushFloors()
    [warning] = rule.announce_annotations({PUSHES_ANNOTATION: "{broken"})
    assert PUSHES_ANNOTATION in warning and "from ECR" in warning
    assert not rule.admits(repo("team/anything"), fetched_at=time.time() - 1, seen=None)


def test_applications_without_a_record_change_nothing() -> None:
    rule = PushFloors()
    assert rule.announce_annotations({"other": "x"}) == []
    assert not rule


# --- the caches honour it ----------------------------------------------------------------------


def ecr(web_main: str = OLD) -> StaticRegistry:
    return StaticRegistry(
        {
            repo(): {"main": TagInfo("main", web_main), "pr-42-0001": TagInfo("pr-42-0001", OLD)},
            repo("team/api"): {"main": TagInfo("main", API)},
        }
    )


def caching(
    inner: StaticRegistry, root: Path, clock: Clock, pushes: PushFloors | None = None, **kw: Any
) -> CachingRegistry:
    store = DiskCache(root, clock=clock)
    return CachingRegistry(inner, store, clock, pushes=pushes, **kw)


def digest(lookup: Lookup, tag: str = "main") -> str:
    return lookup.found[tag].digest


def test_a_warm_cache_answers_with_the_pushed_digest_after_an_announcement(tmp_path: Path) -> None:
    clock = Clock()
    warm = caching(ecr(), tmp_path, clock)
    assert digest(warm.describe_tags(repo(), ["main"])) == OLD
    assert digest(warm.describe_tags(repo("team/api"), ["main"])) == API

    clock.now += 5  # `main` moves; the webhook announces it
    moved = ecr(web_main=NEW)
    pushes = floors(PushRecord({WEB: Push("main", NEW, clock.now)}))
    render = caching(moved, tmp_path, clock, pushes)
    assert digest(render.describe_tags(repo(), ["main"])) == NEW
    assert digest(render.describe_tags(repo("team/api"), ["main"])) == API
    # One call, for the pushed repository only; the same render asks no more.
    assert [(op, r.name) for op, r, _ in moved.calls] == [("describe_tags", "team/web")]
    render.describe_tags(repo(), ["main"])
    assert len(moved.calls) == 1

    # The next render of any app announcing the same push trusts what that one fetched.
    again = ecr(web_main=NEW)
    clock.now += 0.5
    later = caching(again, tmp_path, clock, floors(PushRecord({WEB: Push("main", NEW, T0 + 5)})))
    assert digest(later.describe_tags(repo(), ["main"])) == NEW
    assert again.calls == []


def test_the_in_memory_cache_honours_a_push_announced_after_it_filled(tmp_path: Path) -> None:
    clock, pushes = Clock(), PushFloors()
    inner = ecr()
    registry = caching(inner, tmp_path, clock, pushes)
    registry.describe_tags(repo(), ["main"])
    assert registry.describe_cached(repo(), ["main"]) is not None
    clock.now += 1
    pushes.announce(PushRecord({WEB: Push("main", NEW, clock.now)}))
    assert registry.describe_cached(repo(), ["main"]) is None  # the warm fast path declines
    registry.describe_tags(repo(), ["main"])
    assert len(inner.calls) == 2


def test_a_tag_list_cached_before_the_push_is_listed_again(tmp_path: Path) -> None:
    clock = Clock()
    caching(ecr(), tmp_path, clock).list_tags(repo())
    clock.now += 3
    pushed = StaticRegistry(
        {
            repo(): {
                "pr-42-0001": TagInfo("pr-42-0001", OLD),
                "pr-42-0002": TagInfo("pr-42-0002", NEW),
            }
        }
    )
    pushes = floors(PushRecord({WEB: Push("pr-42-0002", NEW, clock.now)}))
    listing = caching(pushed, tmp_path, clock, pushes).list_tags(repo())
    assert digest(listing, "pr-42-0002") == NEW
    assert [op for op, _, _ in pushed.calls] == ["list_tags"]


def test_a_render_in_flight_during_the_push_cannot_hide_it(tmp_path: Path) -> None:
    """It read the Application before the push and asked ECR before it too; it writes its
    (old) answer after the webhook's patch. The next render still asks ECR."""
    clock = Clock()
    in_flight = caching(ecr(), tmp_path, clock)
    assert digest(in_flight.describe_tags(repo(), ["main"])) == OLD  # fetched at T0
    pushes = floors(PushRecord({WEB: Push("main", NEW, T0 + 0.5)}))  # pushed just after
    clock.now += 1  # the in-flight render's cache write lands after the patch
    moved = ecr(web_main=NEW)
    assert digest(caching(moved, tmp_path, clock, pushes).describe_tags(repo(), ["main"])) == NEW


class Down(StaticRegistry):
    def describe_tags(self, repo: EcrRepository, tags: object) -> Lookup:
        raise RegistryUnavailable(f"{repo.uri}: ECR is unavailable")


def test_serving_stale_while_ecr_is_down_never_serves_a_pre_push_answer(tmp_path: Path) -> None:
    clock = Clock()
    caching(ecr(), tmp_path, clock).describe_tags(repo(), ["main"])
    clock.now += 3600
    stale = caching(Down({}), tmp_path, clock, stale_for=86400.0)
    assert digest(stale.describe_tags(repo(), ["main"])) == OLD  # the opt-in still works
    pushes = floors(PushRecord({WEB: Push("main", NEW, clock.now - 10)}))
    # A failed render is retried by Argo CD; a stale one would stay deployed.
    with pytest.raises(RegistryUnavailable):
        caching(Down({}), tmp_path, clock, pushes, stale_for=86400.0).describe_tags(
            repo(), ["main"]
        )


def test_cache_files_from_before_this_version_still_read(tmp_path: Path) -> None:
    clock = Clock()
    caching(ecr(), tmp_path, clock).describe_tags(repo(), ["main"])
    [path] = tmp_path.rglob("*.json")
    assert '"seen"' not in path.read_text()  # no push announced, nothing new written
    pushes = floors(PushRecord({WEB: Push("main", NEW, clock.now + 1)}))
    clock.now += 5
    caching(ecr(NEW), tmp_path, clock, pushes).describe_tags(repo(), ["main"])
    assert json.loads(path.read_text())["body"]["tags"]["main"]["seen"] == T0 + 1


def test_the_newer_of_a_listed_time_and_older_applies() -> None:
    rule = floors(PushRecord({WEB: Push("main", NEW, T0 - 100)}, older=T0))
    assert rule.announced(repo()) == T0
    assert not rule.admits(repo(), fetched_at=T0 - 50, seen=None)
