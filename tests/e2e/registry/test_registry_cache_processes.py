"""The disk cache shared by many processes at once: spawned writers and renders, and real
`python` processes resolving through moto's server (the in-process cache tests are in
tests/unit/registry/test_cache.py)."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import time
from collections.abc import Collection
from pathlib import Path
from typing import TYPE_CHECKING

from cmp.registry.base import Lookup, TagInfo
from cmp.registry.cache import CachingRegistry, DiskCache
from cmp.registry.names import EcrRepository
from tests.support.ecr_repos import ecr_repository as repo
from tests.support.static_registry import StaticRegistry

if TYPE_CHECKING:  # spawned workers import this module: keep moto out of them
    from multiprocessing.synchronize import Barrier

    from tests.support.moto_ecr import MotoEcr

WEB_V1 = "sha256:" + "1" * 64


# -- many processes ---------------------------------------------------------------------------


def _write_tags(root: str, worker: int, count: int) -> None:
    store = DiskCache(Path(root))
    for n in range(count):
        tag = f"w{worker}-{n}"
        with store.locked(repo()):
            store.merge(repo(), {tag: TagInfo(tag, WEB_V1)}, time.time())


def test_concurrent_writers_never_lose_entries(tmp_path: Path) -> None:
    spawn = multiprocessing.get_context("spawn")
    workers = [
        spawn.Process(target=_write_tags, args=(str(tmp_path), worker, 15)) for worker in range(8)
    ]
    for process in workers:
        process.start()
    for process in workers:
        process.join(60)

    cached = DiskCache(tmp_path).read(repo())
    assert cached is not None
    assert set(cached.tags) == {f"w{w}-{n}" for w in range(8) for n in range(15)}
    assert [process.exitcode for process in workers] == [0] * 8


class _SlowLoggingRegistry(StaticRegistry):
    """Logs each question to a file shared by processes; slow, to widen the race window."""

    def __init__(self, log: Path) -> None:
        super().__init__({repo(): {"v1": TagInfo("v1", WEB_V1)}})
        self._log = log

    def describe_tags(self, repository: EcrRepository, tags: Collection[str]) -> Lookup:
        with self._log.open("a") as log:
            log.write(f"{os.getpid()}\n")
        time.sleep(0.3)
        return super().describe_tags(repository, tags)


def _render(root: str, log: str, start: Barrier, out: str) -> None:
    registry = CachingRegistry(_SlowLoggingRegistry(Path(log)), DiskCache(Path(root)))
    start.wait(30)
    lookup = registry.describe_tags(repo(), ["v1"])
    Path(out).write_text(lookup.found["v1"].digest)


def test_processes_resolving_one_repository_at_once_ask_once(tmp_path: Path) -> None:
    spawn = multiprocessing.get_context("spawn")
    start, log = spawn.Barrier(6), tmp_path / "asked.log"
    outputs = [tmp_path / f"out-{n}" for n in range(6)]
    renders = [
        spawn.Process(target=_render, args=(str(tmp_path / "cache"), str(log), start, str(out)))
        for out in outputs
    ]
    for process in renders:
        process.start()
    for process in renders:
        process.join(60)

    assert [out.read_text() for out in outputs] == [WEB_V1] * 6
    assert len(log.read_text().splitlines()) == 1


RENDER = """
import json, sys
from pathlib import Path
from cmp.registry.names import EcrRegistry, EcrRepository
from cmp.registry.cache import CachingRegistry, DiskCache
from cmp.registry.ecr import EcrRegistryClient
from tests.support.ecr_repos import ecr_repository as repo
registry = EcrRegistry("123456789012.dkr.ecr.eu-west-1.amazonaws.com", "123456789012",
                       "eu-west-1", fips=False, dualstack=False)
caching = CachingRegistry(EcrRegistryClient(), DiskCache(Path(sys.argv[1])))
lookup = caching.describe_tags(EcrRepository(registry, "team/web"), ["v1"])
print(json.dumps({"digest": lookup.found["v1"].digest,
                  "boto": sorted(m for m in sys.modules if m.startswith(("boto3", "botocore")))}))
"""


def test_concurrent_tagpin_processes_make_one_ecr_call(moto_ecr: MotoEcr, tmp_path: Path) -> None:
    digest = moto_ecr.push("team/web", "v1")
    moto_ecr.reset_calls()

    renders = [
        subprocess.Popen(
            [sys.executable, "-c", RENDER, str(tmp_path)], stdout=subprocess.PIPE, text=True
        )
        for _ in range(4)
    ]
    outputs = [json.loads(render.communicate(timeout=60)[0]) for render in renders]

    assert [output["digest"] for output in outputs] == [digest] * 4
    assert moto_ecr.counts() == {"DescribeImages": 1}


def test_a_warm_render_never_imports_boto3_nor_calls_ecr(moto_ecr: MotoEcr, tmp_path: Path) -> None:
    digest = moto_ecr.push("team/web", "v1")
    subprocess.run([sys.executable, "-c", RENDER, str(tmp_path)], check=True, capture_output=True)
    moto_ecr.reset_calls()

    warm = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", RENDER, str(tmp_path)],
        check=True,
        capture_output=True,
        text=True,
    )

    assert json.loads(warm.stdout) == {"digest": digest, "boto": []}
    assert "boto" not in warm.stderr  # -X importtime lists every module imported
    assert moto_ecr.counts() == {}
