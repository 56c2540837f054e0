"""What a render server's worker counts while it renders, and the report it sends the server.

A worker is a forked process: what it counts is gone when it exits. So it counts into a
`Tally` (plain dictionaries; no prometheus_client in the worker) and, once it has answered its
client, writes the tally as one JSON line into the pipe the server already reads to learn that
it answered; the server adds it to its metrics when it reaps the worker (cmp/server/metrics.py).
That is simpler than prometheus_client's multiprocess mode (a directory of memory-mapped files
per pid, to clean up, and a collector that reads them all at every scrape), and a worker killed
before it answered is counted by the server from its exit status.

The server reads a report as it reads anything a tenant's render could have touched: bounded in
size, and every metric and label value checked against cmp/metrictable.py.
"""

from __future__ import annotations

import json
import threading
from typing import TYPE_CHECKING, NamedTuple

from cmp.metrictable import METRICS_BY_NAME
from cmp.observe import RenderObserver

if TYPE_CHECKING:
    from cmp.observe import Limit
    from cmp.registry.observe import Layer, Outcome, Question, RedisTrouble

MAX_REPORT_BYTES = 32 * 1024  # a few hundred bytes in practice; fits the pipe's buffer
MAX_PUSHES = 64  # pushes timed per render (one per repository at most)
MAX_APP_CHARS = 253  # a Kubernetes name; the report's app is for the log only
_OUTCOMES = {"fresh": "fresh", "pushed": "refused_by_push_floor", "stale": "stale_served"}
# What a worker may report: the rest only the server counts (workers, exit codes, slots).
REPORTED = frozenset(
    {
        "tagpin_render_limit_hits_total",
        "tagpin_ecr_calls_total",
        "tagpin_ecr_retries_total",
        "tagpin_registry_answers_total",
        "tagpin_registry_fill_waits_total",
        "tagpin_redis_errors_total",
        "tagpin_push_floor_decisions_total",
    }
)
Key = tuple[str, tuple[str, ...]]  # a counter's name and its label values, in order


class Report(NamedTuple):
    """A worker's counts, checked: counter increments, its slot wait, the pushes it pinned."""

    counts: dict[Key, float]
    slot_wait: float | None
    pushes: list[tuple[str, float]]  # (the push's opaque name, seconds since it was recorded)
    app: str  # ARGOCD_APP_NAME, for the log


class BadReport(ValueError):
    """Not a report a worker of this version writes."""


class Tally(RenderObserver):
    """Counts in memory; the registry layers report from several threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[Key, float] = {}
        self._slot_wait: float | None = None
        self._pushes: dict[str, float] = {}

    def _count(self, name: str, *labels: str, amount: float = 1.0) -> None:
        key = (name, labels)
        with self._lock:
            self._counts[key] = self._counts.get(key, 0.0) + amount

    def answered(self, layer: Layer, question: Question, outcome: Outcome) -> None:
        self._count("tagpin_registry_answers_total", layer, question, _OUTCOMES[outcome])

    def ecr_called(self, operation: str, error: str | None, retries: int) -> None:
        self._count("tagpin_ecr_calls_total", operation, error or "none")
        if retries:
            self._count("tagpin_ecr_retries_total", operation, amount=float(retries))

    def redis_trouble(self, trouble: RedisTrouble) -> None:
        self._count("tagpin_redis_errors_total", trouble)

    def waited(self, layer: Layer) -> None:
        self._count("tagpin_registry_fill_waits_total", layer)

    def push_floor_decided(self, admitted: bool) -> None:
        self._count("tagpin_push_floor_decisions_total", "admitted" if admitted else "refused")

    def slot_waited(self, seconds: float) -> None:
        self._slot_wait = seconds

    def limit_hit(self, limit: Limit) -> None:
        self._count("tagpin_render_limit_hits_total", limit)

    def push_pinned(self, push: str, seconds: float) -> None:
        with self._lock:
            if len(self._pushes) < MAX_PUSHES:
                self._pushes.setdefault(push, seconds)

    def encode(self, app: str) -> bytes:
        """The report, one JSON line."""
        with self._lock:
            document = {
                "counts": [
                    [name, list(labels), value] for (name, labels), value in self._counts.items()
                ],
                "slot_wait": self._slot_wait,
                "pushes": [[push, seconds] for push, seconds in self._pushes.items()],
                "app": app[:MAX_APP_CHARS],
            }
        return (json.dumps(document, separators=(",", ":")) + "\n").encode()


def decode(data: bytes) -> Report:
    """The report in `data`, checked against the metric table; BadReport says what is wrong."""
    from cmp.jsonread import JsonError, loads

    if len(data) > MAX_REPORT_BYTES:
        raise BadReport(f"{len(data)} bytes, more than {MAX_REPORT_BYTES}")
    try:
        document = loads(data.decode("utf-8", "strict"), max_bytes=MAX_REPORT_BYTES)
    except (JsonError, UnicodeDecodeError) as error:
        raise BadReport(f"not JSON: {error}") from None
    if not isinstance(document, dict):
        raise BadReport("not an object")
    counts: dict[Key, float] = {}
    for entry in _list(document.get("counts"), "counts"):
        if not (isinstance(entry, list) and len(entry) == 3):
            raise BadReport("a count is not [name, labels, value]")
        name, labels, value = entry
        metric = METRICS_BY_NAME.get(name) if isinstance(name, str) else None
        if metric is None or name not in REPORTED:
            raise BadReport(f"{name!r} is not a metric a worker reports")
        if not (
            isinstance(labels, list)
            and len(labels) == len(metric.labels)
            and all(
                isinstance(v, str) and s.allows(v)
                for s, v in zip(metric.labels, labels, strict=True)
            )
        ):
            raise BadReport(f"labels of {name} outside their vocabulary")
        counts[(name, tuple(labels))] = _amount(value, name)
    slot_wait = document.get("slot_wait")
    if slot_wait is not None:
        slot_wait = _amount(slot_wait, "slot_wait")
    pushes = []
    for entry in _list(document.get("pushes"), "pushes")[:MAX_PUSHES]:
        if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str)):
            raise BadReport("a push is not [name, seconds]")
        pushes.append((entry[0][:16], _amount(entry[1], "a push's seconds")))
    app = document.get("app")
    if not isinstance(app, str):
        raise BadReport("no app")
    return Report(counts, slot_wait, pushes, app[:MAX_APP_CHARS])


def _list(value: object, what: str) -> list[object]:
    if not isinstance(value, list):
        raise BadReport(f"{what} is not a list")
    return value


def _amount(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1e9:
        raise BadReport(f"{what}: not a count or a number of seconds")
    return float(value)
