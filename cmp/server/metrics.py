"""The render server's Prometheus metrics (TAGPIN_METRICS_PORT): what its workers did, served on
/metrics from a thread of the server process.

The port is open to the pod network, so it is served with the webhook's connection limits
(cmp/limits/connections.py) rather than prometheus_client's own server, which gives every
connection a thread for as long as the client likes: a few idle or trickling sockets per
scrape slot, the oldest dropped for a new one, and a total deadline per connection, so no one
can make the render server pile up threads.

Only a server with a metrics port imports this module (and prometheus_client). The server
counts what it sees itself (workers started, killed and running, exit codes, durations) and
adds each worker's report (cmp/server/tally.py) when it reaps that worker. Rows come from
cmp/metrictable.py. The slot gauges are read from the slot directory when Prometheus scrapes.
"""

from __future__ import annotations

import collections
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import ClassVar

import prometheus_client
from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from cmp.limits.connections import BoundedHTTPServer
from cmp.metrictable import METRICS, SERVER, Metric, family_name
from cmp.server.tally import Report

PUSHES_REMEMBERED = 4096  # pushes already timed: each is timed by its first render only
SCRAPES_AT_ONCE = 4  # Prometheus scrapes one target at a time; a few more for people and HA pairs
SCRAPE_SECONDS = 10.0  # a connection's whole life: Prometheus' default scrape timeout

# `<name>_created` samples only repeat the process's start time for every series.
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]


class RenderServerMetrics:
    """The registry and the metrics in it; called from the server's loop (one thread), read
    by the HTTP thread (prometheus_client's metrics are thread-safe)."""

    def __init__(self, slot_directory: Path | None) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        self._metrics: dict[str, prometheus_client.metrics.MetricWrapperBase] = {}
        for row in METRICS:
            if row.source == SERVER and row.name not in _COLLECTED:
                self._metrics[row.name] = _make(row, self.registry)
        self.registry.register(_SlotCollector(slot_directory))
        self._timed: collections.OrderedDict[str, None] = collections.OrderedDict()

    def _counter(self, name: str, *labels: str) -> prometheus_client.Counter:
        metric = self._metrics[name]
        assert isinstance(metric, prometheus_client.Counter)
        return metric.labels(*labels) if labels else metric

    def _histogram(self, name: str) -> prometheus_client.Histogram:
        metric = self._metrics[name]
        assert isinstance(metric, prometheus_client.Histogram)
        return metric

    def worker_started(self, running: int) -> None:
        self._counter("tagpin_render_workers_started_total").inc()
        self._running(running)

    def worker_ended(
        self,
        exit_code: int,
        killed: str | None,
        seconds: float,
        report: Report | None,
        running: int,
    ) -> None:
        """A worker ended with `exit_code` (128+N for signal N), `killed` for the reason when a
        signal ended it before it answered, after `seconds`; `report` is what it counted."""
        result = "ok" if exit_code == 0 else "error"
        self._counter("tagpin_renders_total", result, str(exit_code)).inc()
        self._histogram("tagpin_render_duration_seconds").observe(seconds)
        if killed is not None:
            self._counter("tagpin_render_workers_killed_total", killed).inc()
        self._running(running)
        if report is None:
            return
        for (name, labels), amount in report.counts.items():
            self._counter(name, *labels).inc(amount)
        if report.slot_wait is not None:
            self._histogram("tagpin_render_slot_wait_seconds").observe(report.slot_wait)
        for push, push_seconds in report.pushes:
            if push in self._timed:
                continue
            self._timed[push] = None
            if len(self._timed) > PUSHES_REMEMBERED:
                self._timed.popitem(last=False)
            self._histogram("tagpin_push_to_render_seconds").observe(push_seconds)

    def report_unreadable(self) -> None:
        self._counter("tagpin_render_reports_unreadable_total").inc()

    def _running(self, running: int) -> None:
        gauge = self._metrics["tagpin_render_workers_running"]
        assert isinstance(gauge, prometheus_client.Gauge)
        gauge.set(running)

    def serve(self, port: int) -> socket.socket:
        """Serve /metrics on `port`, every interface, from a daemon thread; the listening
        socket, which forked workers close."""
        registry = self.registry

        class Handler(_MetricsHandler):
            metrics_registry = registry

        server = BoundedHTTPServer(
            ("", port),
            Handler,
            max_connections=SCRAPES_AT_ONCE,
            request_timeout=SCRAPE_SECONDS,
            on_evicted=_nothing,
            on_deadline=_nothing,
        )
        threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
        return server.socket


def _nothing() -> None:
    """A dropped or cut-off scrape connection: the scraper sees it, nothing else need."""


class _MetricsHandler(BaseHTTPRequestHandler):
    """GET /metrics (and /, as prometheus_client answers); 503 while every scrape slot is busy."""

    server: BoundedHTTPServer
    metrics_registry: ClassVar[CollectorRegistry]
    protocol_version = "HTTP/1.0"  # one request per connection: its deadline is the request's

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if not self.server.admit(self.request):
            self.send_error(503, "busy")
            return
        if self.path.split("?", 1)[0] not in ("/metrics", "/"):
            self.send_error(404)
            return
        body = prometheus_client.generate_latest(self.metrics_registry)
        self.send_response(200)
        self.send_header("Content-Type", prometheus_client.exposition.CONTENT_TYPE_PLAIN_0_0_4)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - http.server's name
        pass  # scrapes are not events


# Read from the slot directory at each scrape rather than counted.
_COLLECTED = ("tagpin_render_slots_busy", "tagpin_render_slots_waiting")


class _SlotCollector(Collector):
    def __init__(self, directory: Path | None) -> None:
        self._directory = directory

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from cmp.limits.slots import occupancy
        from cmp.metrictable import METRICS_BY_NAME

        held, waiting = occupancy(self._directory) if self._directory else ([], [])
        for name, value in zip(_COLLECTED, (len(held), len(waiting)), strict=True):
            yield GaugeMetricFamily(name, METRICS_BY_NAME[name].help, value=value)


def _make(row: Metric, registry: CollectorRegistry) -> prometheus_client.metrics.MetricWrapperBase:
    name, labels = family_name(row), row.label_names
    if row.kind == "counter":
        return prometheus_client.Counter(name, row.help, labels, registry=registry)
    if row.kind == "gauge":
        return prometheus_client.Gauge(name, row.help, labels, registry=registry)
    return prometheus_client.Histogram(
        name, row.help, labels, buckets=row.buckets, registry=registry
    )
