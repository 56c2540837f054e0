"""Prometheus text exposition (format 0.0.4) for the webhook's few counters and one histogram.

Written out rather than depending on prometheus_client: the image ships only tagpin's own
dependencies, and three metric families need no more than this.
"""

from __future__ import annotations

import bisect
import math
import threading
from dataclasses import dataclass, field

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Seconds from an event's arrival to its last PATCH: coalescing (default 2 s) dominates.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 2.5, 5.0, 10.0, 30.0)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: tuple[str, ...], values: tuple[str, ...]) -> str:
    pairs = [f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)]
    return "{" + ",".join(pairs) + "}" if pairs else ""


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf"
    return repr(float(value)) if value != int(value) else f"{int(value)}"


@dataclass
class Counter:
    name: str  # without the _total suffix
    help: str
    label_names: tuple[str, ...] = ()
    _values: dict[tuple[str, ...], float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def inc(self, *label_values: str, amount: float = 1.0) -> None:
        with self._lock:
            self._values[label_values] = self._values.get(label_values, 0.0) + amount

    def value(self, *label_values: str) -> float:
        with self._lock:
            return self._values.get(label_values, 0.0)

    def render(self) -> list[str]:
        # The family is named without _total, its sample with it (as prometheus_client does).
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} counter"]
        with self._lock:
            values_by_labels = dict(self._values)
        if not self.label_names and not values_by_labels:
            values_by_labels[()] = 0.0  # an unlabelled counter exists from the start
        for values, count in sorted(values_by_labels.items()):
            lines.append(f"{self.name}_total{_labels(self.label_names, values)} {_number(count)}")
        return lines


@dataclass
class Histogram:
    name: str
    help: str
    buckets: tuple[float, ...] = LATENCY_BUCKETS
    _counts: list[int] = field(default_factory=list)
    _sum: float = 0.0
    _count: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._counts = [0] * len(self.buckets)

    def observe(self, value: float) -> None:
        with self._lock:
            index = bisect.bisect_left(self.buckets, value)
            if index < len(self._counts):
                self._counts[index] += 1
            self._sum += value
            self._count += 1

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        with self._lock:
            cumulative = 0
            for bound, count in zip(self.buckets, self._counts, strict=True):
                cumulative += count
                lines.append(f'{self.name}_bucket{{le="{_number(bound)}"}} {cumulative}')
            lines.append(f'{self.name}_bucket{{le="+Inf"}} {self._count}')
            lines.append(f"{self.name}_sum {_number(self._sum)}")
            lines.append(f"{self.name}_count {self._count}")
        return lines


@dataclass
class WebhookMetrics:
    """Everything /metrics shows; one instance per server, no global registry."""

    events: Counter = field(
        default_factory=lambda: Counter(
            "tagpin_webhook_events",
            "Requests to the event endpoints, by sender and outcome.",
            ("sender", "outcome"),
        )
    )
    refreshes: Counter = field(
        default_factory=lambda: Counter(
            "tagpin_webhook_refreshes",
            "Hard-refresh merge patches sent to Applications, by result.",
            ("result",),
        )
    )
    coalesced: Counter = field(
        default_factory=lambda: Counter(
            "tagpin_webhook_coalesced_events",
            "Events folded into a refresh that was already pending for the same Application.",
        )
    )
    list_errors: Counter = field(
        default_factory=lambda: Counter(
            "tagpin_webhook_list_errors",
            "Failed attempts to list Applications from the Kubernetes API.",
        )
    )
    policy_errors: Counter = field(
        default_factory=lambda: Counter(
            "tagpin_webhook_policy_errors",
            "Applications skipped for one event because their policy could not be evaluated.",
        )
    )
    connections_refused: Counter = field(
        default_factory=lambda: Counter(
            "tagpin_webhook_connections_refused",
            "Connections refused (busy: every request slot taken) or cut off (deadline: the "
            "request took longer than its total time limit).",
            ("reason",),
        )
    )
    latency: Histogram = field(
        default_factory=lambda: Histogram(
            "tagpin_webhook_event_to_refresh_seconds",
            "Seconds from an accepted event to the last refresh patch it caused.",
        )
    )

    def exposition(self) -> str:
        lines: list[str] = []
        families = (
            self.events,
            self.refreshes,
            self.coalesced,
            self.list_errors,
            self.policy_errors,
            self.connections_refused,
        )
        for family in families:
            lines.extend(family.render())
        lines.extend(self.latency.render())
        return "\n".join(lines) + "\n"
