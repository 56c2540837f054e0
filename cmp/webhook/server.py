"""The webhook's HTTP server: authenticate a push, find the Applications it affects, and
hard-refresh each of them once per coalescing window.

Standard library http.server, one thread per request, with the limits of
cmp/limits/connections.py (bounded concurrency, a total deadline per request, a bounded
shutdown): a few hundred events a second is far more than registries send.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any, TextIO
from urllib.parse import urlsplit

from cmp.argocd.kube import ApplicationApi, KubeApiError
from cmp.errors import TagpinError
from cmp.eventlog import EventLog
from cmp.limits.connections import BoundedHTTPServer
from cmp.registry.shared import PushGenerations, RedisSettings
from cmp.settings import DEFAULT_SETTINGS
from cmp.webhook.events import (
    Ignored,
    PushEvent,
    Rejected,
    ReplayGuard,
    parse_eventbridge,
    parse_generic,
    parse_json_object,
    verify_shared_secret,
    verify_signature,
)
from cmp.webhook.matching import AppRef, Match, select
from cmp.webhook.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from cmp.webhook.metrics import WebhookMetrics
from cmp.webhook.records import refresh_and_record

ROUTES = {
    "/events/ecr": "eventbridge",
    "/events/generic": "generic",
}
PROBES = ("/healthz", "/readyz", "/metrics")
PATCH_ATTEMPTS = 3
PATCH_RETRY_SECONDS = 0.25
DRAIN_LIMIT_BYTES = 1 << 20  # read this much of a refused body so the 413 reaches the client
DRAIN_TIMEOUT_SECONDS = 0.5
SHUTDOWN_POLL_SECONDS = 0.05


@dataclass(frozen=True)
class WebhookConfig:
    """Everything the server needs besides a Kubernetes client; the CLI fills it."""

    secret: str = field(repr=False)
    namespaces: tuple[str, ...]
    host: str = "127.0.0.1"
    port: int = 8080
    # The settings table's defaults (TAGPIN_WEBHOOK_*); `tagpin webhook` passes the settings.
    coalesce_seconds: float = DEFAULT_SETTINGS.webhook_coalesce_seconds
    max_body_bytes: int = DEFAULT_SETTINGS.webhook_max_body_bytes
    max_event_age_seconds: float = DEFAULT_SETTINGS.webhook_max_event_age
    # events within this share one list of Applications
    app_cache_seconds: float = DEFAULT_SETTINGS.webhook_app_cache_seconds
    # total, per connection: a slower one is cut off
    request_timeout_seconds: float = DEFAULT_SETTINGS.webhook_request_timeout
    # requests served at once; more get 503 and Retry-After
    max_connections: int = DEFAULT_SETTINGS.webhook_max_connections
    # SIGTERM to exit, inside the pod's 30 s grace period
    shutdown_seconds: float = DEFAULT_SETTINGS.webhook_shutdown_seconds
    patch_workers: int = 4
    shared_cache: RedisSettings | None = None  # TAGPIN_REDIS_URL: bump generations on pushes
    log_json: bool = True  # TAGPIN_LOG_FORMAT: JSON lines unless `text`


class ApplicationIndex:
    """Applications of the configured namespaces, listed at most once per `max_age` seconds.

    The lock makes concurrent events wait for one list instead of each sending their own.
    """

    def __init__(
        self,
        kube: ApplicationApi,
        namespaces: tuple[str, ...],
        max_age: float,
        metrics: WebhookMetrics,
        log: EventLog,
    ) -> None:
        self._kube = kube
        self._namespaces = namespaces
        self._max_age = max_age
        self._metrics = metrics
        self._log = log
        self._lock = threading.Lock()
        self._items: list[dict[str, Any]] | None = None
        self._fetched_at = 0.0
        self._unreadable: dict[str, str] = {}  # namespace/name → why, as last logged

    def applications(self) -> list[dict[str, Any]]:
        """The Applications that can be read; one that cannot is left out, counted and logged
        (when it first appears), never a reason to fail the list."""
        with self._lock:
            now = time.monotonic()
            if self._items is None or now - self._fetched_at > self._max_age:
                items: list[dict[str, Any]] = []
                unreadable: dict[str, str] = {}
                try:
                    for namespace in self._namespaces:
                        listed = self._kube.list_applications(namespace)
                        items.extend(listed)
                        for skipped in listed.unreadable:
                            unreadable[skipped.describe(namespace)] = skipped.problem
                except TagpinError:
                    self._metrics.list_errors.inc()
                    raise
                for app, problem in sorted(unreadable.items()):
                    if self._unreadable.get(app) != problem:
                        self._log.write(
                            "unreadable application", level="warning", app=app, problem=problem
                        )
                self._metrics.unreadable_applications.set(len(unreadable))
                self._items, self._fetched_at, self._unreadable = items, now, unreadable
            return self._items


class EventTicket:
    """One accepted event waiting for its refreshes; logs and measures it when the last is done."""

    def __init__(
        self,
        event: PushEvent,
        matches: list[Match],
        received: float,
        log: EventLog,
        metrics: WebhookMetrics,
    ) -> None:
        self.event = event
        self.received = received
        self._log = log
        self._metrics = metrics
        self._outstanding = len(matches)
        self._refreshed: list[str] = []
        self._failed: list[str] = []
        self._lock = threading.Lock()
        if not matches:
            self._finish()

    def done(self, app: AppRef, ok: bool) -> None:
        with self._lock:
            (self._refreshed if ok else self._failed).append(str(app))
            self._outstanding -= 1
            finished = self._outstanding == 0
        if finished:
            self._finish()

    def _finish(self) -> None:
        latency = time.monotonic() - self.received
        if self._refreshed:
            self._metrics.latency.observe(latency)
        self._log.write(
            "push",
            sender=self.event.sender,
            repository=self.event.repository,
            tag=self.event.tag,
            digest=self.event.digest,
            apps_refreshed=sorted(self._refreshed),
            apps_failed=sorted(self._failed),
            latency_ms=round(latency * 1000, 1),
        )


@dataclass
class _Pending:
    due: float
    tickets: list[EventTicket]


class Refresher:
    """Hard-refreshes Applications, one patch per Application per coalescing window.

    The first event for an Application starts its window; events arriving before the window
    ends join the same refresh, which is sent when it ends. Argo CD re-reads the registry at the
    refresh, so every push that arrived before the patch is seen by it.
    """

    def __init__(
        self,
        kube: ApplicationApi,
        window: float,
        workers: int,
        log: EventLog,
        metrics: WebhookMetrics,
    ) -> None:
        self._kube = kube
        self._window = window
        self._log = log
        self._metrics = metrics
        self._pending: dict[AppRef, _Pending] = {}
        self._condition = threading.Condition()
        self._closing = False
        self._give_up_at: float | None = None  # once closing: no patch attempt starts after it
        self._in_flight = 0
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="refresh")
        self._thread = threading.Thread(target=self._run, name="coalesce", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def schedule(self, app: AppRef, ticket: EventTicket) -> None:
        with self._condition:
            pending = self._pending.get(app)
            if pending is None:
                self._pending[app] = _Pending(time.monotonic() + self._window, [ticket])
                self._condition.notify()
            else:
                pending.tickets.append(ticket)
                self._metrics.coalesced.inc()

    def close(self, budget_ends: float | None = None) -> int:
        """Send every pending refresh now and wait for the patches until `budget_ends` (no
        retry starts after it); the number of Applications whose patch had not finished."""
        with self._condition:
            self._closing = True
            self._give_up_at = budget_ends
            self._condition.notify()
        if self._thread.is_alive():
            self._thread.join()
        self._executor.shutdown(wait=False)
        with self._condition:
            while self._in_flight:
                left = None if budget_ends is None else budget_ends - time.monotonic()
                if left is not None and left <= 0:
                    break
                self._condition.wait(left)
            return self._in_flight

    def _run(self) -> None:
        with self._condition:
            while True:
                now = time.monotonic()
                due = [
                    app
                    for app, pending in self._pending.items()
                    if self._closing or pending.due <= now
                ]
                for app in due:
                    self._in_flight += 1
                    self._executor.submit(self._patch, app, self._pending.pop(app).tickets)
                if self._closing and not self._pending:
                    return
                if not due:
                    next_due = min((p.due for p in self._pending.values()), default=None)
                    self._condition.wait(None if next_due is None else max(0.0, next_due - now))

    def _patch(self, app: AppRef, tickets: list[EventTicket]) -> None:
        try:
            self._patch_with_retries(app, tickets)
        finally:
            with self._condition:
                self._in_flight -= 1
                self._condition.notify_all()

    def _out_of_time(self) -> bool:
        give_up_at = self._give_up_at
        return give_up_at is not None and time.monotonic() >= give_up_at

    def _patch_with_retries(self, app: AppRef, tickets: list[EventTicket]) -> None:
        ok = False
        problem = ""
        try:
            for attempt in range(1, PATCH_ATTEMPTS + 1):
                if self._out_of_time():
                    problem = problem or "the webhook stopped before this refresh was sent"
                    break
                try:
                    # The refresh and the push record in one patch: the render it causes
                    # already sees which repositories' caches to distrust.
                    events = [ticket.event for ticket in tickets]
                    refresh_and_record(self._kube, app.namespace, app.name, events)
                    ok = True
                    break
                except KubeApiError as error:
                    problem = "; ".join(error.problems)
                    # Only throttling, server errors and unreachable servers may heal by waiting.
                    transient = error.status is None or error.status == 429 or error.status >= 500
                    if not transient or attempt == PATCH_ATTEMPTS:
                        break
                    time.sleep(PATCH_RETRY_SECONDS * attempt)
                except TagpinError as error:
                    problem = "; ".join(error.problems)
                    break
        except Exception as error:  # noqa: BLE001 - a bug must not leave tickets unfinished
            problem = f"internal error: {error!r}"
            self._log.write(
                "refresh failed", level="error", app=str(app), traceback=traceback.format_exc()
            )
        self._metrics.refreshes.inc("ok" if ok else "failed")
        if not ok:
            self._log.write("refresh failed", level="error", app=str(app), problem=problem)
        for ticket in tickets:
            ticket.done(app, ok)


class WebhookServer:
    """The composition root: HTTP front, Application index, refresher, metrics and log."""

    def __init__(self, config: WebhookConfig, kube: ApplicationApi, log_stream: TextIO) -> None:
        self.config = config
        self.metrics = WebhookMetrics()
        self.log = EventLog(log_stream, "webhook", json_lines=config.log_json)
        self.index = ApplicationIndex(
            kube, config.namespaces, config.app_cache_seconds, self.metrics, self.log
        )
        self.refresher = Refresher(
            kube, config.coalesce_seconds, config.patch_workers, self.log, self.metrics
        )
        self.replays = ReplayGuard(config.max_event_age_seconds)
        self.generations = (
            PushGenerations(config.shared_cache) if config.shared_cache is not None else None
        )
        self._httpd = BoundedHTTPServer(
            (config.host, config.port),
            _handler_class(self),
            max_connections=config.max_connections,
            request_timeout=config.request_timeout_seconds,
            on_evicted=lambda: self.metrics.connections_refused.inc("evicted"),
            on_deadline=lambda: self.metrics.connections_refused.inc("deadline"),
        )
        self._stopped = False
        # A short poll interval keeps SIGTERM-to-exit fast; an idle poll costs nothing.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(SHUTDOWN_POLL_SECONDS,), name="http"
        )

    @property
    def url(self) -> str:
        host, port = self._httpd.socket.getsockname()[:2]
        return f"http://{host}:{port}"

    def start(self) -> None:
        self.refresher.start()
        self._thread.start()
        ready, _ = self.readiness()
        self.log.write(
            "listening",
            url=self.url,
            namespaces=list(self.config.namespaces),
            coalesce_seconds=self.config.coalesce_seconds,
            ready=ready == 200,
        )

    def stop(self) -> None:
        """Stop accepting, finish requests in flight, then send every pending refresh; all
        within `shutdown_seconds`, so the pod's grace period never ends in a SIGKILL."""
        if self._stopped:
            return
        self._stopped = True
        budget_ends = time.monotonic() + self.config.shutdown_seconds
        if self._thread.ident is not None:  # shutdown() waits for a serve_forever that ran
            self._httpd.shutdown()
        unfinished = self._httpd.drain(budget_ends)
        self._httpd.server_close()
        if self._thread.ident is not None:
            self._thread.join()
        unsent = self.refresher.close(budget_ends)
        if unfinished or unsent:
            self.log.write("stopped", requests_cut_off=unfinished, refreshes_not_sent=unsent)
        else:
            self.log.write("stopped")

    def admit(self, connection: socket.socket) -> bool:
        return self._httpd.admit(connection)

    def readiness(self) -> tuple[int, dict[str, Any]]:
        """Ready when Applications can be listed: the API server's health, never one
        Application's content (an unreadable one is left out of the list)."""
        try:
            count = len(self.index.applications())
        except TagpinError as error:
            self.log.write("not ready", level="warning", problem="; ".join(error.problems))
            return 503, {"status": "not ready", "error": "cannot list Applications"}
        except Exception:  # noqa: BLE001 - a bug: not ready, said in the log, and no crash
            self.log.write("not ready", level="error", traceback=traceback.format_exc())
            return 503, {"status": "not ready", "error": "internal error; see the webhook's log"}
        return 200, {"status": "ready", "applications": count}

    def handle_event(
        self,
        sender: str,
        headers: Mapping[str, str],
        body: bytes,
        received: float,
        admit: Callable[[], bool] = lambda: True,
    ) -> tuple[int, dict[str, Any]]:
        """Answer one event request; `headers` have lower-case names. `admit` is asked once the
        request is authenticated, for one of the request slots (connections.py): only then
        does the request do work that costs (parsing, listing Applications)."""
        now = time.time()
        max_age = self.config.max_event_age_seconds
        try:
            if sender == "eventbridge":
                verify_shared_secret(headers, self.config.secret)
            else:
                signature = verify_signature(headers, body, self.config.secret, now, max_age)
            if not admit():
                self.metrics.connections_refused.inc("busy")
                return 503, {"error": "too many requests at once; retry later"}
            if sender == "eventbridge":
                event = parse_eventbridge(parse_json_object(body), now, max_age)
            else:
                event = parse_generic(parse_json_object(body), signature)
            try:
                applications = self.index.applications()
            except TagpinError as error:
                self.log.write(
                    "cannot list Applications", level="error", problem="; ".join(error.problems)
                )
                raise Rejected(
                    503, "unavailable", "cannot list Applications now; retry later"
                ) from None
            # Remembered only once accepted, so a retry after a 503 is not taken for a replay.
            if not self.replays.first_time(event.replay_key, now):
                if sender == "eventbridge":
                    # At-least-once delivery: a redelivered id (say, after a timeout) is
                    # acknowledged so EventBridge stops retrying, and changes nothing.
                    self.metrics.events.inc(sender, "duplicate")
                    self.log.write("duplicate", sender=sender, event=event.replay_key)
                    return 200, {"status": "duplicate", "reason": "event already accepted"}
                raise Rejected(409, "replayed", "this signed request was already accepted")
        except Rejected as rejection:
            return self.reject(sender, rejection)
        except Ignored as ignored:
            self.metrics.events.inc(sender, "ignored")
            self.log.write("ignored", sender=sender, reason=ignored.reason)
            return 200, {"status": "ignored", "reason": ignored.reason}
        if self.generations is not None:  # before any refresh, so its render sees the push
            problem = self.generations.bump(event.repository)
            if problem is not None:
                self.log.write("shared cache not told", level="warning", problem=problem)
        matches = select(applications, event.repository, event.tag, self._policy_error)
        self.metrics.events.inc(sender, "accepted" if matches else "no_match")
        ticket = EventTicket(event, matches, received, self.log, self.metrics)
        for match in matches:
            self.refresher.schedule(match.app, ticket)
        return 202, {
            "status": "accepted",
            "repository": event.repository,
            "tag": event.tag,
            "applications": [str(match.app) for match in matches],
        }

    def _policy_error(self, app: str, error: BaseException) -> None:
        """One Application's policy broke the matching: it alone is skipped for this event."""
        self.metrics.policy_errors.inc()
        self.log.write(
            "policy error",
            level="warning",
            app=app,
            problem=f"{type(error).__name__}: {error}"[:500],
        )

    def reject(self, sender: str, rejection: Rejected) -> tuple[int, dict[str, Any]]:
        self.metrics.events.inc(sender, rejection.outcome)
        self.log.write(
            "rejected",
            level="warning",
            sender=sender,
            status=rejection.status,
            outcome=rejection.outcome,
            reason=rejection.reason,
        )
        return rejection.status, {"error": rejection.reason}


def _media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def _handler_class(webhook: WebhookServer) -> type[BaseHTTPRequestHandler]:
    config = webhook.config

    class Handler(BaseHTTPRequestHandler):
        server_version = "tagpin-webhook"
        sys_version = ""  # no Python version in the Server header
        timeout = config.request_timeout_seconds
        error_content_type = "application/json"
        error_message_format = '{"error": "%(message)s"}\n'

        def do_GET(self) -> None:
            self._guarded(self._get)

        def do_POST(self) -> None:
            self._guarded(self._post)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # every event gets its own JSON line; access logs would double them

        def _get(self) -> None:
            path = urlsplit(self.path).path
            if path == "/healthz":
                self._send_json(200, {"status": "ok"})
            elif path == "/readyz":
                self._send_json(*webhook.readiness())
            elif path == "/metrics":
                self._send(200, webhook.metrics.exposition().encode(), METRICS_CONTENT_TYPE)
            elif path in ROUTES:
                self._send_json(405, {"error": "use POST"}, {"Allow": "POST"})
            else:
                self._send_json(404, {"error": f"no such path; POST to {', '.join(ROUTES)}"})

        def _post(self) -> None:
            received = time.monotonic()
            sender = ROUTES.get(urlsplit(self.path).path)
            if sender is None:
                if urlsplit(self.path).path in PROBES:
                    self._send_json(405, {"error": "use GET"}, {"Allow": "GET"})
                else:
                    self._send_json(404, {"error": f"no such path; POST to {', '.join(ROUTES)}"})
                return
            try:
                body = self._read_body()
            except Rejected as rejection:
                self._send_json(*webhook.reject(sender, rejection))
                if rejection.status == 413:
                    self._drain()
                return
            status, document = webhook.handle_event(
                sender, self._headers(), body, received, lambda: webhook.admit(self.connection)
            )
            retry = {"Retry-After": "1"} if status == 503 else None  # EventBridge retries
            self._send_json(status, document, retry)

        def _headers(self) -> dict[str, str]:
            return {name.lower(): value for name, value in self.headers.items()}

        def _read_body(self) -> bytes:
            if self.headers.get("Transfer-Encoding"):
                raise Rejected(411, "malformed", "send the body with a Content-Length")
            length_text = self.headers.get("Content-Length")
            if length_text is None:
                raise Rejected(411, "malformed", "a Content-Length header is required")
            if not length_text.isdigit() or len(length_text) > 18:
                raise Rejected(400, "malformed", "Content-Length is not a number")
            length = int(length_text)
            self._declared_length = length
            if length > config.max_body_bytes:
                raise Rejected(413, "too_large", f"the body exceeds {config.max_body_bytes} bytes")
            if _media_type(self.headers.get("Content-Type", "")) != "application/json":
                raise Rejected(415, "malformed", "Content-Type must be application/json")
            body = self.rfile.read(length)
            if len(body) != length:
                raise Rejected(400, "malformed", "the body is shorter than its Content-Length")
            return body

        def _drain(self) -> None:
            # Closing a socket with unread input resets it, and the client might never read
            # the 413; so read (a bounded amount of) what it is still sending.
            remaining = min(getattr(self, "_declared_length", 0), DRAIN_LIMIT_BYTES)
            try:
                self.connection.settimeout(DRAIN_TIMEOUT_SECONDS)
                while remaining > 0:
                    chunk = self.rfile.read1(min(remaining, 65536))
                    if not chunk:
                        break
                    remaining -= len(chunk)
            except OSError:
                pass

        def _send_json(
            self,
            status: int,
            document: Mapping[str, Any],
            headers: Mapping[str, str] | None = None,
        ) -> None:
            payload = (json.dumps(document) + "\n").encode()
            self._send(status, payload, "application/json", headers)

        def _send(
            self,
            status: int,
            payload: bytes,
            content_type: str,
            headers: Mapping[str, str] | None = None,
        ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("Cache-Control", "no-store")
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)

        def _guarded(self, action: Any) -> None:
            try:
                action()
            except (TimeoutError, ConnectionError):
                self.close_connection = True
            except Exception:  # noqa: BLE001 - log it; the client gets no stack trace
                webhook.log.write("internal error", level="error", traceback=traceback.format_exc())
                try:
                    self._send_json(500, {"error": "internal error; see the webhook's log"})
                except OSError:
                    self.close_connection = True

    return Handler
