"""What a bench run measures and reports: its constants and values."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FLOOR_PROGRAM = (
    "import sys, yaml\n"
    "text = open(sys.argv[1], encoding='utf-8').read()\n"
    "documents = list(yaml.load_all(text, Loader=yaml.CSafeLoader))\n"
    "sys.stdout.write(yaml.dump_all(documents, Dumper=yaml.CSafeDumper))\n"
)
# Modules the warm path must never import (issue 9), and what else is worth watching.
FORBIDDEN_WARM = ("boto3", "botocore", "kubernetes", "cmp.registry.resp", "re2")  # re2: policies
# The import check runs with the fleet cache configured (nothing listens there): a warm render
# checks the settings but must not import the Redis client, let alone connect.
REDIS_CONFIGURED = {
    "TAGPIN_REDIS_URL": "redis://127.0.0.1:9/0",
    "TAGPIN_REDIS_SIGNING_KEY": "bench-signing-key-" + "0" * 32,
}
# A warm render of a Jinja2 app reuses the kept output (cmp/source/rendercache.py).
FORBIDDEN_PLAIN = ("jinja2",)
FORBIDDEN_SERVED = ("yaml",)  # the thin client of the render server
WATCHED = ("click", "cachetools", "concurrent.futures", "urllib.parse", "ssl", "json")
CLOSED_ENDPOINT = "http://127.0.0.1:9"  # a warm render that calls ECR fails fast, never leaks


@dataclass(frozen=True)
class Sample:
    wall_ms: float
    peak_rss_kb: int
    cpu_ms: float  # user + system: less disturbed than wall time by other load on the machine


@dataclass(frozen=True)
class Stats:
    median_ms: float
    peak_rss_kb: int  # median of the per-process peaks
    cpu_ms: float

    @staticmethod
    def of(samples: Sequence[Sample]) -> Stats:
        return Stats(
            statistics.median(s.wall_ms for s in samples),
            int(statistics.median(s.peak_rss_kb for s in samples)),
            statistics.median(s.cpu_ms for s in samples),
        )


@dataclass(frozen=True)
class Row:
    case: str
    objects: int
    tagpin: Stats
    floor: Stats
    runs: int
    note: str = ""


@dataclass(frozen=True)
class ImportCheck:
    case: str
    forbidden_found: tuple[str, ...]
    watched_found: tuple[str, ...]
    total_ms: float
    top: tuple[tuple[str, float], ...]  # top-level imports by cumulative ms


@dataclass(frozen=True)
class Workspace:
    root: Path
    python: Path
    script: Path  # the `tagpin` console script, as argocd-cmp-server runs it
    env_base: Mapping[str, str] = field(default_factory=dict)  # what measured processes inherit

    @property
    def generate(self) -> list[str]:
        return [str(self.script), "generate"]
