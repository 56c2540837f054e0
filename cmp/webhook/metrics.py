"""The webhook's metrics, kept and exposed by prometheus_client (the Prometheus project's own
Python client): one registry per server, the text format 0.0.4 on /metrics, and the standard
process metrics (CPU seconds, resident memory, open file descriptors) that show a flood or a
stuck request at a glance. Each is a row of cmp/metrictable.py, the render server's too.

Counter and Histogram here are thin adapters so the server says `events.inc(sender, outcome)`
and tests read `refreshes.value("failed")` without prometheus_client's label plumbing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import prometheus_client
from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest

from cmp.metrictable import METRICS_BY_NAME, family_name

CONTENT_TYPE = prometheus_client.exposition.CONTENT_TYPE_PLAIN_0_0_4

# `<name>_created` samples only repeat the process's start time for every series.
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]


class Counter:
    """A counter whose label values are passed in order: `inc("eventbridge", "accepted")`."""

    def __init__(self, registry: CollectorRegistry, name: str) -> None:
        row = METRICS_BY_NAME[name]
        self._registry = registry
        self._name = name
        self._label_names = row.label_names
        self._counter = prometheus_client.Counter(
            family_name(row), row.help, row.label_names, registry=registry
        )

    def inc(self, *label_values: str, amount: float = 1.0) -> None:
        counter = self._counter.labels(*label_values) if self._label_names else self._counter
        counter.inc(amount)

    def value(self, *label_values: str) -> float:
        labels = dict(zip(self._label_names, label_values, strict=True))
        return self._registry.get_sample_value(self._name, labels) or 0.0


class Gauge:
    def __init__(self, registry: CollectorRegistry, name: str) -> None:
        row = METRICS_BY_NAME[name]
        self._registry = registry
        self._name = name
        self._gauge = prometheus_client.Gauge(name, row.help, registry=registry)

    def set(self, value: float) -> None:
        self._gauge.set(value)

    def value(self) -> float:
        return self._registry.get_sample_value(self._name) or 0.0


class Histogram:
    def __init__(self, registry: CollectorRegistry, name: str) -> None:
        row = METRICS_BY_NAME[name]
        self._registry = registry
        self._name = name
        self._histogram = prometheus_client.Histogram(
            name, row.help, buckets=row.buckets, registry=registry
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
        self.events = Counter(registry, "tagpin_webhook_events_total")
        self.refreshes = Counter(registry, "tagpin_webhook_refreshes_total")
        self.coalesced = Counter(registry, "tagpin_webhook_coalesced_events_total")
        self.list_errors = Counter(registry, "tagpin_webhook_list_errors_total")
        self.unreadable_applications = Gauge(registry, "tagpin_webhook_unreadable_applications")
        self.policy_errors = Counter(registry, "tagpin_webhook_policy_errors_total")
        self.connections_refused = Counter(registry, "tagpin_webhook_connections_refused_total")
        self.latency = Histogram(registry, "tagpin_webhook_event_to_refresh_seconds")

    def exposition(self) -> str:
        return generate_latest(self.registry).decode()
