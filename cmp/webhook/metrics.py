"""The webhook's metrics, kept and exposed by prometheus_client (the Prometheus project's own
Python client): one registry per server, the text format 0.0.4 on /metrics, and the standard
process metrics (CPU seconds, resident memory, open file descriptors) that show a flood or a
stuck request at a glance.

Counter and Histogram here are thin adapters so the server says `events.inc(sender, outcome)`
and tests read `refreshes.value("failed")` without prometheus_client's label plumbing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import prometheus_client
from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest

CONTENT_TYPE = prometheus_client.exposition.CONTENT_TYPE_PLAIN_0_0_4
# Seconds from an event's arrival to its last PATCH: coalescing (default 2 s) dominates.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 2.5, 5.0, 10.0, 30.0)

# `<name>_created` samples only repeat the process's start time for every series.
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]


class Counter:
    """A counter whose label values are passed in order: `inc("eventbridge", "accepted")`."""

    def __init__(
        self,
        registry: CollectorRegistry,
        name: str,  # without the _total suffix
        help: str,
        label_names: tuple[str, ...] = (),
    ) -> None:
        self._registry = registry
        self._name = name
        self._label_names = label_names
        self._counter = prometheus_client.Counter(name, help, label_names, registry=registry)

    def inc(self, *label_values: str, amount: float = 1.0) -> None:
        counter = self._counter.labels(*label_values) if self._label_names else self._counter
        counter.inc(amount)

    def value(self, *label_values: str) -> float:
        labels = dict(zip(self._label_names, label_values, strict=True))
        return self._registry.get_sample_value(f"{self._name}_total", labels) or 0.0


class Gauge:
    def __init__(self, registry: CollectorRegistry, name: str, help: str) -> None:
        self._registry = registry
        self._name = name
        self._gauge = prometheus_client.Gauge(name, help, registry=registry)

    def set(self, value: float) -> None:
        self._gauge.set(value)

    def value(self) -> float:
        return self._registry.get_sample_value(self._name) or 0.0


class Histogram:
    def __init__(
        self, registry: CollectorRegistry, name: str, help: str, buckets: tuple[float, ...]
    ) -> None:
        self._registry = registry
        self._name = name
        self._histogram = prometheus_client.Histogram(
            name, help, buckets=buckets, registry=registry
        )

    def observe(self, value: float) -> None:
        self._histogram.observe(value)

    def count(self) -> float:
        return self._registry.get_sample_value(f"{self._name}_count") or 0.0


@dataclass
class WebhookMetrics:
    """Everything /metrics shows; one registry per server, never the global one."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        registry = self.registry
        ProcessCollector(registry=registry)
        self.events = Counter(
            registry,
            "tagpin_webhook_events",
            "Requests to the event endpoints, by sender and outcome.",
            ("sender", "outcome"),
        )
        self.refreshes = Counter(
            registry,
            "tagpin_webhook_refreshes",
            "Hard-refresh merge patches sent to Applications, by result.",
            ("result",),
        )
        self.coalesced = Counter(
            registry,
            "tagpin_webhook_coalesced_events",
            "Events folded into a refresh that was already pending for the same Application.",
        )
        self.list_errors = Counter(
            registry,
            "tagpin_webhook_list_errors",
            "Failed attempts to list Applications from the Kubernetes API.",
        )
        self.unreadable_applications = Gauge(
            registry,
            "tagpin_webhook_unreadable_applications",
            "Applications left out of the last list because they cannot be read (nested too "
            "deeply); pushes do not refresh them.",
        )
        self.policy_errors = Counter(
            registry,
            "tagpin_webhook_policy_errors",
            "Applications skipped for one event because their policy could not be evaluated.",
        )
        self.connections_refused = Counter(
            registry,
            "tagpin_webhook_connections_refused",
            "Connections refused (busy: every request slot taken) or cut off (deadline: the "
            "request took longer than its total time limit).",
            ("reason",),
        )
        self.latency = Histogram(
            registry,
            "tagpin_webhook_event_to_refresh_seconds",
            "Seconds from an accepted event to the last refresh patch it caused.",
            LATENCY_BUCKETS,
        )

    def exposition(self) -> str:
        return generate_latest(self.registry).decode()
