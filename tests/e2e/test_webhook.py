"""`tagpin webhook` end to end: real HTTP requests to a running webhook on 127.0.0.1, and the
PATCH requests it sends observed at the fake Kubernetes API."""

from __future__ import annotations

import hmac
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from cmp.argocd.kube import Connection, KubeApi
from cmp.commands.webhook import flags_over, webhook_command, webhook_config
from cmp.metrictable import METRICS, PROCESS_PREFIX, family_name
from cmp.registry.pushes import PUSHES_ANNOTATION, parse_record
from cmp.settings import Settings
from cmp.webhook.events import sign
from cmp.webhook.server import WebhookConfig, WebhookServer
from tests.support.ecr_events import ecr_event
from tests.support.fake_kube import TOKEN, FakeKube

REPO = Path(__file__).resolve().parents[2]
SECRET = "test-webhook-secret-0123456789abcdef"
ACCOUNT = "111122223333"
REGION = "eu-west-1"
HOST = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"
PREFIX = "argocd-image-updater.argoproj.io/"
DIGEST = "sha256:" + "ab" * 32
JSON = {"Content-Type": "application/json"}


# --- helpers ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    headers: dict[str, str]

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Running:
    server: WebhookServer
    log: io.StringIO

    def post(self, path: str, body: bytes, headers: Mapping[str, str]) -> Reply:
        return request(self.server.url, "POST", path, body, headers)

    def get(self, path: str) -> Reply:
        return request(self.server.url, "GET", path, b"", {})

    def ecr(self, event: Mapping[str, Any], secret: str = SECRET) -> Reply:
        return self.post(
            "/events/ecr", json.dumps(event).encode(), {**JSON, "X-Tagpin-Secret": secret}
        )

    def generic(self, payload: Mapping[str, Any], timestamp: int | None = None) -> Reply:
        return self.post("/events/generic", *signed(json.dumps(payload).encode(), timestamp))

    def stop(self) -> None:
        """Stop the server; pending coalesced refreshes are sent before this returns."""
        self.server.stop()

    def log_records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log.getvalue().splitlines()]


def request(url: str, method: str, path: str, body: bytes, headers: Mapping[str, str]) -> Reply:
    import http.client

    host, port = url.removeprefix("http://").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.request(method, path, body=body or None, headers=dict(headers))
        response = connection.getresponse()
        return Reply(response.status, response.read(), dict(response.getheaders()))
    finally:
        connection.close()


def signed(
    body: bytes, timestamp: int | None = None, secret: str = SECRET
) -> tuple[bytes, dict[str, str]]:
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    return body, {
        **JSON,
        "X-Tagpin-Timestamp": stamp,
        "X-Tagpin-Signature": sign(secret, stamp, body),
    }


def patched(fake: FakeKube) -> list[str]:
    """`namespace/name` of every PATCH the fake API received, in order."""
    found = []
    for recorded in fake.requests:
        if recorded.method == "PATCH":
            parts = recorded.path.split("/")
            found.append(f"{parts[5]}/{parts[7]}")
    return found


def add_app(
    fake: FakeKube,
    name: str,
    *,
    namespace: str = "argocd",
    annotations: Mapping[str, str] | None = None,
    parameter: Mapping[str, str] | None = None,
    images: list[str] | None = None,
) -> dict[str, Any]:
    application = fake.add(namespace, name, dict(annotations or {}))
    if parameter is not None:
        application["spec"]["source"]["plugin"]["parameters"] = [
            {"name": "image-updater", "map": dict(parameter)}
        ]
    if images is not None:
        application["status"] = {"summary": {"images": images}}
    return application


StartWebhook = Callable[..., Running]


@pytest.fixture
def start_webhook(fake_kube: FakeKube) -> Iterator[StartWebhook]:
    """Start a webhook against `fake_kube`; keyword arguments override WebhookConfig fields."""
    started: list[Running] = []

    def start(kube_url: str | None = None, **overrides: Any) -> Running:
        settings: dict[str, Any] = {
            "secret": SECRET,
            "namespaces": ("argocd",),
            "port": 0,
            "coalesce_seconds": 0.0,
            **overrides,
        }
        kube = KubeApi(Connection(server=kube_url or fake_kube.url, source="test", token=TOKEN))
        log = io.StringIO()
        running = Running(WebhookServer(WebhookConfig(**settings), kube, log), log)
        running.server.start()
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()


# --- matching: which Applications a push refreshes -------------------------------------------


@pytest.fixture
def fleet(fake_kube: FakeKube) -> FakeKube:
    web = f"{HOST}/team/web"
    add_app(  # a branch deploy: only pr-42 builds
        fake_kube,
        "web-pr-42",
        annotations={
            f"{PREFIX}image-list": f"web={web}",
            f"{PREFIX}web.update-strategy": "newest-build",
            f"{PREFIX}web.allow-tags": "regexp:^pr-42-",
        },
        images=[f"{web}:pr-42-0a1b2c@{DIGEST}"],
    )
    add_app(  # the policy comes from the plugin parameter: semver releases only
        fake_kube,
        "web-staging",
        parameter={"image-list": f"{web}:~1.2"},
    )
    add_app(  # no policy: pinned tags in git, seen live
        fake_kube, "web-prod", images=[f"{web}:main@{DIGEST}", "docker.io/library/nginx:1.27"]
    )
    add_app(fake_kube, "api", images=[f"{HOST}/team/api:main"])
    add_app(fake_kube, "elsewhere", namespace="team-a", images=[f"{web}:main"])
    return fake_kube


@pytest.mark.parametrize(
    ("repository", "tag", "refreshed"),
    [
        ("team/web", "pr-42-9f8e7d", ["argocd/web-pr-42", "argocd/web-prod"]),
        ("team/web", "pr-77-9f8e7d", ["argocd/web-prod"]),  # pr-42 allows only ^pr-42-
        ("team/web", "1.2.9", ["argocd/web-prod", "argocd/web-staging"]),
        ("team/web", "1.3.0", ["argocd/web-prod"]),  # outside ~1.2
        ("team/web", "main", ["argocd/web-prod"]),  # a moved tag the prod app pins
        ("team/api", "anything", ["argocd/api"]),
        ("team/db", "1.0.0", []),
    ],
)
def test_a_push_refreshes_exactly_the_applications_it_can_change(
    fleet: FakeKube, start_webhook: StartWebhook, repository: str, tag: str, refreshed: list[str]
) -> None:
    webhook = start_webhook()
    reply = webhook.ecr(ecr_event(repository, tag))
    assert reply.status == 202, reply.body
    assert reply.json()["applications"] == refreshed
    webhook.stop()
    assert sorted(patched(fleet)) == refreshed  # team-a is not a configured namespace


def test_refresh_is_a_hard_refresh_merge_patch(
    fleet: FakeKube, start_webhook: StartWebhook
) -> None:
    webhook = start_webhook()
    webhook.ecr(ecr_event("team/api", "main"))
    webhook.stop()
    [patch] = [r for r in fleet.requests if r.method == "PATCH"]
    assert patch.headers["content-type"] == "application/merge-patch+json"
    # Conditional on the version read, so a concurrent writer's change is never overwritten.
    assert patch.json()["metadata"]["resourceVersion"] == "1"
    annotations = fleet.applications[("argocd", "api")]["metadata"]["annotations"]
    assert annotations["argocd.argoproj.io/refresh"] == "hard"
    record = parse_record(annotations[PUSHES_ANNOTATION])
    assert {r: (p.tag, p.digest) for r, p in record.pushes.items()} == {
        f"{HOST}/team/api": ("main", DIGEST)
    }


def test_every_configured_namespace_is_searched(
    fleet: FakeKube, start_webhook: StartWebhook
) -> None:
    webhook = start_webhook(namespaces=("argocd", "team-a"))
    webhook.ecr(ecr_event("team/web", "main"))
    webhook.stop()
    assert sorted(patched(fleet)) == ["argocd/web-prod", "team-a/elsewhere"]


@pytest.mark.parametrize(
    "payload",
    [
        {"repository": f"{HOST}/team/api", "tag": "v1"},
        {"repository": "team/api", "registry": HOST, "tag": "v1"},
        {"repository": "team/api", "account": ACCOUNT, "region": REGION, "tag": "v1"},
        {"repository": f"{HOST}/team/api", "tag": "v1", "digest": DIGEST},
    ],
)
def test_a_signed_generic_payload_refreshes_too(
    fleet: FakeKube, start_webhook: StartWebhook, payload: dict[str, str]
) -> None:
    webhook = start_webhook()
    reply = webhook.generic(payload)
    assert (reply.status, reply.json()["applications"]) == (202, ["argocd/api"])
    webhook.stop()
    assert patched(fleet) == ["argocd/api"]


# --- authentication and replays: 401/409 and nothing changes ---------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        JSON,
        {**JSON, "X-Tagpin-Secret": ""},
        {**JSON, "X-Tagpin-Secret": "wrong-secret-0123456789abcdefgh"},
        {**JSON, "X-Tagpin-Secret": SECRET.upper()},
        {**JSON, "X-Tagpin-Secret": SECRET + "x"},
        {**JSON, "Authorization": f"Bearer {SECRET}"},
    ],
    ids=["missing", "empty", "wrong", "case", "longer", "other-header"],
)
def test_eventbridge_without_the_shared_secret_is_refused(
    fleet: FakeKube, start_webhook: StartWebhook, headers: dict[str, str]
) -> None:
    webhook = start_webhook()
    reply = webhook.post("/events/ecr", json.dumps(ecr_event("team/api")).encode(), headers)
    assert reply.status == 401
    assert "X-Tagpin-Secret" in reply.json()["error"]
    webhook.stop()
    assert patched(fleet) == []


BODY = json.dumps({"repository": f"{HOST}/team/api", "tag": "v1"}).encode()


def _tampered(name: str) -> tuple[bytes, dict[str, str]]:
    now = str(int(time.time()))
    good = sign(SECRET, now, BODY)
    cases: dict[str, tuple[bytes, dict[str, str]]] = {
        "no-signature": (BODY, {**JSON, "X-Tagpin-Timestamp": now}),
        "no-timestamp": (BODY, {**JSON, "X-Tagpin-Signature": good}),
        "other-secret": signed(BODY, secret="another-secret-0123456789abcdef"),
        "other-body": (
            BODY.replace(b"v1", b"v2"),
            {**JSON, "X-Tagpin-Timestamp": now, "X-Tagpin-Signature": good},
        ),
        "other-timestamp": (
            BODY,
            {**JSON, "X-Tagpin-Timestamp": str(int(now) + 1), "X-Tagpin-Signature": good},
        ),
        "body-only-mac": (
            BODY,
            {
                **JSON,
                "X-Tagpin-Timestamp": now,
                "X-Tagpin-Signature": "sha256="
                + hmac.new(SECRET.encode(), BODY, "sha256").hexdigest(),
            },
        ),
        "no-prefix": (
            BODY,
            {**JSON, "X-Tagpin-Timestamp": now, "X-Tagpin-Signature": good.removeprefix("sha256=")},
        ),
        "uppercase-hex": (
            BODY,
            {**JSON, "X-Tagpin-Timestamp": now, "X-Tagpin-Signature": "sha256=" + good[7:].upper()},
        ),
        "timestamp-not-a-number": (
            BODY,
            {**JSON, "X-Tagpin-Timestamp": "now", "X-Tagpin-Signature": good},
        ),
    }
    return cases[name]


@pytest.mark.parametrize(
    "case",
    [
        "no-signature",
        "no-timestamp",
        "other-secret",
        "other-body",
        "other-timestamp",
        "body-only-mac",
        "no-prefix",
        "uppercase-hex",
        "timestamp-not-a-number",
    ],
)
def test_generic_payload_with_a_bad_signature_is_refused(
    fleet: FakeKube, start_webhook: StartWebhook, case: str
) -> None:
    webhook = start_webhook()
    reply = webhook.post("/events/generic", *_tampered(case))
    assert reply.status == 401, reply.body
    webhook.stop()
    assert patched(fleet) == []


@pytest.mark.parametrize("offset", [-301, -3600, 301])
def test_events_outside_the_age_limit_are_refused(
    fleet: FakeKube, start_webhook: StartWebhook, offset: int
) -> None:
    webhook = start_webhook(max_event_age_seconds=300)
    old = ecr_event("team/api", event_time=time.time() + offset)
    assert webhook.ecr(old).status == 400  # not 401/5xx: a retry would only be older
    reply = webhook.generic(
        {"repository": f"{HOST}/team/api", "tag": "v1"}, int(time.time()) + offset
    )
    assert reply.status == 400
    assert "s old" in reply.json()["error"] or "future" in reply.json()["error"]
    webhook.stop()
    assert patched(fleet) == []


def test_an_exact_replay_changes_nothing(fleet: FakeKube, start_webhook: StartWebhook) -> None:
    webhook = start_webhook(coalesce_seconds=60)
    event = ecr_event("team/api", "main")
    body, headers = signed(json.dumps({"repository": f"{HOST}/team/api", "tag": "v9"}).encode())
    assert webhook.ecr(event).status == 202
    assert webhook.post("/events/generic", body, headers).status == 202
    # EventBridge redelivers an event it got no answer for: acknowledged, nothing done.
    duplicate = webhook.ecr(event)
    assert (duplicate.status, duplicate.json()["status"]) == (200, "duplicate")
    assert webhook.post("/events/generic", body, headers).status == 409
    # A new event with the same content is no replay.
    assert webhook.ecr({**event, "id": str(uuid.uuid4())}).status == 202
    webhook.stop()
    assert patched(fleet) == ["argocd/api"]


# --- malformed and oversized requests: 4xx, JSON errors, no traceback, nothing changes -------


def _event_with(**changes: Any) -> Callable[[], bytes]:
    """The body, built when the test runs: an event made at collection time would be refused
    as a replay once a slow suite reaches the test minutes later."""

    def body() -> bytes:
        event = ecr_event("team/api")
        for dotted, value in changes.items():
            target = event
            *parents, key = dotted.split("__")
            for parent in parents:
                target = target[parent]
            if value is None:
                del target[key]
            else:
                target[key] = value
        return json.dumps(event).encode()

    return body


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"", 400, "not valid JSON"),
        (b"{", 400, "not valid JSON"),
        (b"\xff\xfe{}", 400, "not UTF-8"),
        (b'{"source": "aws.ecr", "source": "aws.ecr"}', 400, "duplicate key"),
        (b'{"a": NaN}', 400, "NaN is not JSON"),
        (b'{"a": -Infinity}', 400, "-Infinity is not JSON"),
        (b'{"a": 1e999}', 400, "out of range"),
        (b"[" * 20000 + b"]" * 20000, 400, "nested too deeply"),
        (b"[]", 400, "must be a JSON object"),
        (b'"event"', 400, "must be a JSON object"),
        (_event_with(source="aws.s3"), 400, "event pattern"),
        (_event_with(**{"detail-type": "ECR Scan"}), 400, "event pattern"),
        (_event_with(id=None), 400, "id must be"),
        (_event_with(time="yesterday"), 400, "RFC 3339"),
        (_event_with(time="2026-01-01T00:00:00"), 400, "time zone"),
        (_event_with(detail=[]), 400, "detail must be an object"),
        (_event_with(account="12345"), 400, "12-digit"),
        (_event_with(region="mars"), 400, "AWS Region"),
        (_event_with(**{"detail__repository-name": None}), 400, "repository-name"),
        (_event_with(**{"detail__repository-name": "Team/API"}), 400, "uppercase"),
        (_event_with(**{"detail__image-tag": "-bad"}), 400, "invalid tag"),
        (_event_with(**{"detail__image-tag": 7}), 400, "image-tag must be"),
        (_event_with(**{"detail__image-digest": "sha256:12"}), 400, "digest"),
    ],
)
def test_malformed_eventbridge_events_get_4xx(
    fleet: FakeKube,
    start_webhook: StartWebhook,
    body: bytes | Callable[[], bytes],
    status: int,
    message: str,
) -> None:
    # Events are made when the test runs: made at collection, they could outlive the age limit
    # before a long suite reaches them, and fail on their age instead of their fault.
    body = body() if callable(body) else body
    webhook = start_webhook()
    reply = webhook.post("/events/ecr", body, {**JSON, "X-Tagpin-Secret": SECRET})
    assert reply.status == status
    assert reply.headers["Content-Type"] == "application/json"
    assert message in reply.json()["error"]
    assert b"Traceback" not in reply.body
    webhook.stop()
    assert patched(fleet) == []


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"repository": "team/api", "tag": "v1"}, "no registry host"),
        ({"repository": f"{HOST}/team/api", "registry": HOST, "tag": "v1"}, "drop registry"),
        (
            {
                "repository": "team/api",
                "registry": HOST,
                "account": ACCOUNT,
                "region": REGION,
                "tag": "v1",
            },
            "not both",
        ),
        ({"repository": f"{HOST}/team/api"}, "tag must be"),
        ({"repository": f"{HOST}/team/api", "tag": "v1", "tags": ["v2"]}, "unknown field"),
        ({"repository": f"{HOST}/team/api:v0", "tag": "v1"}, "invalid repository path"),
        ({"repository": ["x"], "tag": "v1"}, "repository must be"),
    ],
)
def test_malformed_generic_payloads_get_400(
    fleet: FakeKube, start_webhook: StartWebhook, payload: dict[str, Any], message: str
) -> None:
    webhook = start_webhook()
    reply = webhook.generic(payload)
    assert reply.status == 400
    assert message in reply.json()["error"]
    webhook.stop()
    assert patched(fleet) == []


def test_oversized_bodies_get_413_before_anything_else(
    fleet: FakeKube, start_webhook: StartWebhook
) -> None:
    webhook = start_webhook(max_body_bytes=1024)
    padded = ecr_event("team/api")
    padded["resources"] = ["x" * 2000]
    reply = webhook.post(
        "/events/ecr", json.dumps(padded).encode(), {**JSON, "X-Tagpin-Secret": SECRET}
    )
    assert (reply.status, reply.json()) == (413, {"error": "the body exceeds 1024 bytes"})
    # Without the secret too: the size is checked before anything is read.
    reply = webhook.post("/events/generic", b"x" * 5000, JSON)
    assert reply.status == 413
    webhook.stop()
    assert patched(fleet) == []


def raw_exchange(url: str, data: bytes) -> bytes:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(data)
        chunks = []
        while chunk := connection.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize(
    ("head", "status"),
    [
        (b"Transfer-Encoding: chunked\r\n", b"411"),
        (b"", b"411"),  # no Content-Length at all
        (b"Content-Length: -5\r\n", b"400"),
        (b"Content-Length: 99999999999999999999999\r\n", b"400"),
        (b"Content-Length: 2\r\nContent-Type: text/plain\r\n", b"415"),
    ],
)
def test_bodies_without_a_usable_length_or_type_are_refused(
    fleet: FakeKube, start_webhook: StartWebhook, head: bytes, status: bytes
) -> None:
    webhook = start_webhook()
    answer = raw_exchange(
        webhook.server.url,
        b"POST /events/ecr HTTP/1.1\r\nHost: x\r\nX-Tagpin-Secret: "
        + SECRET.encode()
        + b"\r\n"
        + (head if b"Content-Type" in head else head + b"Content-Type: application/json\r\n")
        + b"\r\n{}",
    )
    assert answer.split(b" ", 2)[1] == status
    assert b"Traceback" not in answer
    webhook.stop()
    assert patched(fleet) == []


def test_garbage_on_the_wire_gets_a_json_error_without_details(start_webhook: StartWebhook) -> None:
    webhook = start_webhook()
    # A TLS hello: no HTTP version can be read, so the answer is HTTP/0.9 style (a bare body).
    answer = raw_exchange(webhook.server.url, b"\x16\x03\x01 not http at all\r\n\r\n")
    assert json.loads(answer)["error"].startswith("Bad request version")
    answer = raw_exchange(webhook.server.url, b"BREW /events/ecr HTTP/1.1\r\n\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 501") and b"application/json" in head
    assert b"Python" not in head and json.loads(body)["error"]


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/events/ecr", 405),
        ("POST", "/healthz", 405),
        ("GET", "/", 404),
        ("POST", "/webhook", 404),
        ("PUT", "/events/ecr", 501),
    ],
)
def test_unknown_paths_and_methods(
    start_webhook: StartWebhook, method: str, path: str, status: int
) -> None:
    webhook = start_webhook()
    reply = request(webhook.server.url, method, path, b"{}", JSON)
    assert reply.status == status
    assert "error" in reply.json()


@pytest.mark.parametrize(
    ("detail", "reason"),
    [
        ({"action-type": "DELETE"}, "moves no tag"),
        ({"result": "FAILURE"}, "moves no tag"),
        ({"image-tag": ""}, "without a tag"),
    ],
)
def test_events_that_move_no_tag_are_acknowledged_and_ignored(
    fleet: FakeKube, start_webhook: StartWebhook, detail: dict[str, str], reason: str
) -> None:
    webhook = start_webhook()
    reply = webhook.ecr(ecr_event("team/api", detail=detail))
    assert reply.status == 200  # not an error: EventBridge must not retry it
    assert reply.json()["status"] == "ignored" and reason in reply.json()["reason"]
    webhook.stop()
    assert patched(fleet) == []


# --- coalescing, shutdown, failures ----------------------------------------------------------


def test_a_burst_for_one_application_gives_one_refresh(
    fleet: FakeKube, start_webhook: StartWebhook
) -> None:
    webhook = start_webhook(coalesce_seconds=60)
    for build in range(20):
        assert webhook.ecr(ecr_event("team/api", f"build-{build}")).status == 202
    assert webhook.ecr(ecr_event("team/web", "main")).status == 202
    assert patched(fleet) == []  # still inside the window
    webhook.stop()  # SIGTERM's path: pending refreshes are sent, not dropped
    assert sorted(patched(fleet)) == ["argocd/api", "argocd/web-prod"]
    assert webhook.server.metrics.coalesced.value() == 19


def test_pushes_after_a_refresh_get_another_one(
    fleet: FakeKube, start_webhook: StartWebhook
) -> None:
    webhook = start_webhook(coalesce_seconds=0)
    webhook.ecr(ecr_event("team/api", "a"))
    wait_for(lambda: len(patched(fleet)) == 1)
    webhook.ecr(ecr_event("team/api", "b"))
    webhook.stop()
    assert patched(fleet) == ["argocd/api", "argocd/api"]


def wait_for(condition: Callable[[], bool], limit: float = 10.0) -> None:
    """Wait for asynchronous work; the limit only stops a broken test from hanging."""
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def test_a_failed_patch_is_counted_and_logged_and_others_proceed(
    fleet: FakeKube, start_webhook: StartWebhook
) -> None:
    fleet.forbidden.add("web-prod")
    webhook = start_webhook()
    webhook.ecr(ecr_event("team/web", "pr-42-1"))
    webhook.stop()
    assert patched(fleet) == ["argocd/web-pr-42"]
    # The read before the patch is refused with 403, which no retry can heal: one request.
    assert [r.method for r in fleet.requests if r.path.endswith("/web-prod")] == ["GET"]
    [push] = [r for r in webhook.log_records() if r["msg"] == "push"]
    assert push["apps_refreshed"] == ["argocd/web-pr-42"]
    assert push["apps_failed"] == ["argocd/web-prod"]
    [failure] = [r for r in webhook.log_records() if r["msg"] == "refresh failed"]
    assert "403" in failure["problem"] and failure["app"] == "argocd/web-prod"
    assert webhook.server.metrics.refreshes.value("failed") == 1


def test_one_json_log_line_per_event(fleet: FakeKube, start_webhook: StartWebhook) -> None:
    webhook = start_webhook()
    webhook.ecr(ecr_event("team/web", "pr-42-abc"))
    webhook.ecr(ecr_event("team/db", "1"))
    webhook.ecr(ecr_event("team/db", "1"), secret="nope-nope-nope-nope-nope")
    webhook.stop()
    # A push is logged when its last refresh is done, so lines come in order of completion.
    records = sorted(
        (r for r in webhook.log_records() if r["msg"] in ("push", "rejected")),
        key=lambda r: (r["msg"], r.get("tag", "")),
    )
    assert [(r["msg"], r.get("tag"), r.get("apps_refreshed")) for r in records] == [
        ("push", "1", []),
        ("push", "pr-42-abc", ["argocd/web-pr-42", "argocd/web-prod"]),
        ("rejected", None, None),
    ]
    assert records[1]["repository"] == f"{HOST}/team/web"
    assert isinstance(records[1]["latency_ms"], float)
    assert records[2]["status"] == 401 and SECRET not in webhook.log.getvalue()


def test_a_burst_of_200_events_in_a_second_refreshes_every_application(
    fleet: FakeKube, start_webhook: StartWebhook
) -> None:
    for index in range(20):
        add_app(fleet, f"svc-{index}", images=[f"{HOST}/team/svc-{index}:main"])
    webhook = start_webhook(coalesce_seconds=0.2)
    replies: list[int] = []
    lock = threading.Lock()

    def send(index: int) -> None:
        time.sleep(index / 200)
        status = webhook.ecr(ecr_event(f"team/svc-{index % 20}", f"b{index}")).status
        with lock:
            replies.append(status)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(200)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    webhook.stop()
    assert replies == [202] * 200
    refreshed = patched(fleet)
    assert set(refreshed) == {f"argocd/svc-{i}" for i in range(20)}
    assert len(refreshed) < 200  # coalesced
    pushes = [r for r in webhook.log_records() if r["msg"] == "push"]
    assert len(pushes) == 200 and all(len(r["apps_refreshed"]) == 1 for r in pushes)


def test_latency_benchmark_runs() -> None:
    # Smoke run only; the figures in docs/webhook.md come from the full run.
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.webhook_latency",
            "--events",
            "40",
            "--seconds",
            "0.2",
            "--apps",
            "5",
            "--coalesce",
            "0",
            "0.1",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith("| 0")]
    assert len(rows) == 2 and all("40/40" in row for row in rows)


# --- probes and metrics ----------------------------------------------------------------------


def test_health_readiness_and_metrics(fleet: FakeKube, start_webhook: StartWebhook) -> None:
    webhook = start_webhook()
    assert (webhook.get("/healthz").status, webhook.get("/healthz").json()) == (
        200,
        {"status": "ok"},
    )
    ready = webhook.get("/readyz")
    assert (ready.status, ready.json()) == (200, {"status": "ready", "applications": 4})
    webhook.ecr(ecr_event("team/api", "main"))
    webhook.ecr(ecr_event("team/api", "main"), secret="x" * 20)
    wait_for(lambda: webhook.server.metrics.latency.count() == 1)
    metrics = webhook.get("/metrics")
    assert metrics.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    samples = {  # read back with the Prometheus project's own text-format parser
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(metrics.body.decode())
        for sample in family.samples
    }
    eventbridge = ("sender", "eventbridge")
    assert samples[("tagpin_webhook_events_total", (("outcome", "accepted"), eventbridge))] == 1
    assert samples[("tagpin_webhook_events_total", (("outcome", "unauthorized"), eventbridge))] == 1
    assert samples[("tagpin_webhook_refreshes_total", (("result", "ok"),))] == 1
    assert samples[("tagpin_webhook_event_to_refresh_seconds_count", ())] == 1
    assert samples[("tagpin_webhook_event_to_refresh_seconds_bucket", (("le", "+Inf"),))] == 1
    assert samples[("process_open_fds", ())] > 0
    # What /metrics serves is what cmp/metrictable.py (and so docs/reference.md) lists.
    served = {
        (family.name, family.type)
        for family in text_string_to_metric_families(metrics.body.decode())
        if not family.name.startswith(PROCESS_PREFIX)
    }
    assert served == {(family_name(m), m.kind) for m in METRICS if m.source == "webhook"}


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_without_the_kubernetes_api_it_is_alive_but_not_ready(
    start_webhook: StartWebhook,
) -> None:
    webhook = start_webhook(kube_url=f"http://127.0.0.1:{unused_port()}")
    assert webhook.get("/healthz").status == 200
    ready = webhook.get("/readyz")
    assert (ready.status, ready.json()) == (
        503,
        {"status": "not ready", "error": "cannot list Applications"},
    )
    reply = webhook.ecr(ecr_event("team/api"))
    assert reply.status == 503  # EventBridge retries 5xx
    assert b"Traceback" not in reply.body and b"127.0.0.1" not in reply.body
    assert webhook.server.metrics.list_errors.value() >= 2


# --- the command ------------------------------------------------------------------------------


def run_command(args: list[str]) -> int:
    code: int = webhook_command().main(args=args, prog_name="tagpin webhook", standalone_mode=False)
    return code


@pytest.mark.parametrize(
    ("env", "args", "message"),
    [
        ({}, [], "no webhook secret"),
        ({"TAGPIN_WEBHOOK_SECRET": "short"}, [], "at least 16"),
        ({"TAGPIN_WEBHOOK_SECRET": SECRET}, ["--secret-file", "{tmp}/secret"], "keep one"),
        ({}, ["--secret-file", "{tmp}/missing"], "cannot read --secret-file"),
        ({"TAGPIN_WEBHOOK_SECRET": SECRET}, ["--listen", "8080"], "HOST:PORT"),
    ],
)
def test_refuses_to_start_without_a_usable_secret_or_address(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    env: dict[str, str],
    args: list[str],
    message: str,
) -> None:
    (tmp_path / "secret").write_text(SECRET + "\n")
    monkeypatch.delenv("TAGPIN_WEBHOOK_SECRET", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    code = run_command([a.replace("{tmp}", str(tmp_path)) for a in args])
    assert code == 3
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("env", "args", "namespaces"),
    [
        ({}, ["-n", "team-a", "-n", "team-b"], ("team-a", "team-b")),
        ({"TAGPIN_WEBHOOK_NAMESPACES": "argocd team-a"}, [], ("argocd", "team-a")),
        ({}, [], ("gitops",)),  # none given: default_namespaces applies
    ],
)
def test_namespaces_come_from_flags_or_the_environment(
    env: dict[str, str],
    args: list[str],
    namespaces: tuple[str, ...],
) -> None:
    environ = {"TAGPIN_WEBHOOK_SECRET": SECRET, "ARGOCD_NAMESPACE": "gitops", **env}
    settings = flags_over(
        Settings.from_environ(environ), **webhook_command().make_context("webhook", args).params
    )
    assert webhook_config(settings, environ).namespaces == namespaces


def test_default_namespace_is_argo_cds() -> None:
    from cmp.commands.webhook import default_namespaces

    assert default_namespaces({"ARGOCD_NAMESPACE": "gitops"}) == ("gitops",)
    # Only the namespace rules apply: app lookup settings cannot break the webhook's start.
    assert default_namespaces({"TAGPIN_APP_LOOKUP": "on", "ARGOCD_NAMESPACE": "gitops"}) == (
        "gitops",
    )


def test_the_command_serves_until_sigterm_then_flushes_pending_refreshes(
    fleet: FakeKube, kubeconfig: Path, tmp_path: Path
) -> None:
    port = unused_port()
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET + "\n")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("TAGPIN_", "ARGOCD_"))},
        "KUBECONFIG": str(kubeconfig),
        "ARGOCD_NAMESPACE": "argocd",
    }
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from cmp.commands.webhook import webhook_command; "
            "sys.exit(webhook_command().main(prog_name='tagpin webhook', standalone_mode=False))",
            "--listen",
            f"127.0.0.1:{port}",
            "--secret-file",
            str(secret_file),
            "--coalesce-seconds",
            "600",
        ],
        cwd=REPO,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        listening = json.loads(process.stderr.readline())
        assert listening["msg"] == "listening" and listening["ready"] is True
        url = f"http://127.0.0.1:{port}"
        event = json.dumps(ecr_event("team/api", "main")).encode()
        reply = request(url, "POST", "/events/ecr", event, {**JSON, "X-Tagpin-Secret": SECRET})
        assert reply.status == 202
        assert patched(fleet) == []  # held for the 600 s window
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        lines = [json.loads(line) for line in process.stderr.read().splitlines()]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert patched(fleet) == ["argocd/api"]
    assert [line["msg"] for line in lines] == ["push", "stopped"]
