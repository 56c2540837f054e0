"""How the webhook answers one event request (cmp/webhook/server.py `handle_event`), without
HTTP: the order of its checks (authenticate, then take a request slot, then parse, then list
Applications), what each refusal answers, and what an accepted push schedules. The HTTP
front is never started (only bound, on 127.0.0.1); the Kubernetes API is an in-process
stand-in."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from cmp.argocd.kube import Applications
from cmp.errors import AppLookupError
from cmp.webhook.events import SECRET_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from cmp.webhook.server import WebhookConfig, WebhookServer
from tests.support.ecr_events import ecr_event

SECRET = "unit-webhook-secret-0123456789abcdef"
HOST = "111122223333.dkr.ecr.eu-west-1.amazonaws.com"
WEB = f"{HOST}/team/web"
DIGEST = "sha256:" + "ab" * 32


class Kube:
    """The three calls the webhook makes; `down` makes listing fail as an unreachable API."""

    def __init__(self, applications: list[dict[str, Any]]) -> None:
        self.applications = applications
        self.down = False
        self.lists = 0
        self.patched: list[str] = []

    def get_application(self, namespace: str, name: str) -> dict[str, Any] | None:
        return next((a for a in self.applications if a["metadata"]["name"] == name), None)

    def list_applications(self, namespace: str) -> Applications:
        self.lists += 1
        if self.down:
            raise AppLookupError("cannot list Applications: connection refused")
        return Applications(list(self.applications), [])

    def patch_application(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        self.patched.append(f"{namespace}/{name}")
        return self.get_application(namespace, name) or {}


def application(name: str, image: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "argocd", "annotations": {}},
        "spec": {"source": {"repoURL": "https://git.example.com/r.git", "path": name}},
        "status": {"summary": {"images": [image]}},
    }


@pytest.fixture
def kube() -> Kube:
    return Kube([application("web", f"{WEB}:main@{DIGEST}"), application("api", f"{HOST}/t/api:1")])


@pytest.fixture
def server(kube: Kube) -> Iterator[tuple[WebhookServer, io.StringIO]]:
    log = io.StringIO()
    config = WebhookConfig(
        secret=SECRET,
        namespaces=("argocd",),
        port=0,
        coalesce_seconds=60,
        app_cache_seconds=0,
        shutdown_seconds=5,
    )
    webhook = WebhookServer(config, kube, log)
    webhook.refresher.start()  # the refreshes; the HTTP front is not started
    yield webhook, log
    webhook.stop()


def generic(payload: dict[str, Any], *, secret: str = SECRET, age: float = 0) -> tuple:
    body = json.dumps(payload).encode()
    stamp = str(int(time.time() - age))
    headers = {
        TIMESTAMP_HEADER.lower(): stamp,
        SIGNATURE_HEADER.lower(): sign(secret, stamp, body),
    }
    return "generic", headers, body


def eventbridge(tag: str = "main", *, event_id: str | None = None, secret: str = SECRET) -> tuple:
    event = ecr_event("team/web", tag, event_id=event_id, digest=DIGEST)
    return "eventbridge", {SECRET_HEADER.lower(): secret}, json.dumps(event).encode()


def handle(webhook: WebhookServer, request: tuple, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    sender, headers, body = request
    return webhook.handle_event(sender, headers, body, time.monotonic(), **kwargs)


def test_an_authenticated_push_schedules_a_refresh_of_each_application_using_it(
    server: tuple[WebhookServer, io.StringIO], kube: Kube
) -> None:
    webhook, _ = server
    status, answer = handle(webhook, generic({"repository": WEB, "tag": "main"}))
    assert (status, answer) == (
        202,
        {
            "status": "accepted",
            "repository": WEB,
            "tag": "main",
            "applications": ["argocd/web"],
        },
    )
    status, answer = handle(webhook, eventbridge("main"))
    assert status == 202 and answer["applications"] == ["argocd/web"]
    assert kube.patched == []  # coalesced: sent once the window ends, or at the latest on stop
    webhook.stop()
    assert kube.patched == ["argocd/web"]


@pytest.mark.parametrize(
    "request_for",
    [
        lambda: eventbridge(secret="wrong-secret-0123456789abcdef"),
        lambda: generic({"repository": WEB, "tag": "main"}, secret="wrong-0123456789abcdef"),
        lambda: ("generic", {}, b"{}"),
    ],
    ids=["eventbridge, wrong secret", "generic, wrong signature", "generic, unsigned"],
)
def test_an_unauthenticated_request_is_401_and_costs_nothing(
    server: tuple[WebhookServer, io.StringIO], kube: Kube, request_for: Any
) -> None:
    """No request slot is asked for and no Application listed before the request is
    authenticated: unauthenticated traffic cannot tie up the webhook or the API server."""
    webhook, log = server
    asked: list[bool] = []

    def admit() -> bool:
        asked.append(True)
        return True

    status, answer = handle(webhook, request_for(), admit=admit)
    assert status == 401 and "error" in answer
    assert asked == [] and kube.lists == 0
    assert json.loads(log.getvalue().splitlines()[-1])["outcome"] == "unauthorized"


def test_an_authenticated_request_without_a_free_slot_is_503(
    server: tuple[WebhookServer, io.StringIO], kube: Kube
) -> None:
    webhook, _ = server
    status, answer = handle(webhook, eventbridge(), admit=lambda: False)
    assert status == 503 and "retry" in answer["error"]
    assert kube.lists == 0


def test_an_old_signed_request_is_400_which_no_sender_retries(
    server: tuple[WebhookServer, io.StringIO],
) -> None:
    webhook, _ = server
    status, answer = handle(webhook, generic({"repository": WEB, "tag": "main"}, age=3600))
    assert status == 400 and "replays of old events are refused" in answer["error"]


def test_the_same_signed_request_twice_is_409_and_a_redelivered_event_is_acknowledged(
    server: tuple[WebhookServer, io.StringIO],
) -> None:
    webhook, _ = server
    signed = generic({"repository": WEB, "tag": "main"})
    assert handle(webhook, signed)[0] == 202
    assert handle(webhook, signed)[0] == 409
    event = eventbridge(event_id="0f3c2b1a-redelivered")
    assert handle(webhook, event)[0] == 202
    assert handle(webhook, event) == (
        200,
        {"status": "duplicate", "reason": "event already accepted"},
    )


def test_a_push_accepted_while_the_api_is_down_is_503_and_not_remembered(
    server: tuple[WebhookServer, io.StringIO], kube: Kube
) -> None:
    """EventBridge retries a 5xx: the retry must be accepted, not taken for a replay."""
    webhook, log = server
    kube.down = True
    event = eventbridge(event_id="0f3c2b1a-retried")
    status, answer = handle(webhook, event)
    assert status == 503 and "retry" in answer["error"]
    assert any("cannot list Applications" in line for line in log.getvalue().splitlines())
    kube.down = False
    assert handle(webhook, event)[0] == 202


@pytest.mark.parametrize(
    ("payload", "said"),
    [
        ({"repository": WEB}, "tag"),
        ({"repository": "team/web", "tag": "v1"}, "no registry host"),
        ({"repository": WEB, "tag": "v1", "color": "red"}, "unknown field"),
    ],
)
def test_a_malformed_authenticated_payload_is_400_naming_the_problem(
    server: tuple[WebhookServer, io.StringIO], payload: dict[str, Any], said: str
) -> None:
    webhook, _ = server
    status, answer = handle(webhook, generic(payload))
    assert status == 400 and said in answer["error"]


def test_an_event_that_moves_no_tag_is_acknowledged_and_ignored(
    server: tuple[WebhookServer, io.StringIO],
) -> None:
    webhook, _ = server
    sender, headers, body = eventbridge()
    event = json.loads(body)
    event["detail"]["action-type"] = "DELETE"
    status, answer = handle(webhook, (sender, headers, json.dumps(event).encode()))
    assert status == 200 and answer["status"] == "ignored"


def test_readiness_follows_whether_applications_can_be_listed(
    server: tuple[WebhookServer, io.StringIO], kube: Kube
) -> None:
    webhook, _ = server
    assert webhook.readiness() == (200, {"status": "ready", "applications": 2})
    kube.down = True
    # app_cache_seconds=0: a fresh list, not the one cached a moment ago
    assert webhook.readiness() == (
        503,
        {"status": "not ready", "error": "cannot list Applications"},
    )
