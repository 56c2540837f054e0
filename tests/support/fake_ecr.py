"""pytest fixtures: a scripted ECR JSON-protocol endpoint on 127.0.0.1, for what moto cannot do.

Throttling, AccessDenied, 500s, scripted pages, a port that accepts but never answers (timeouts),
and a port nobody listens on (connection refused).
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


@dataclass(frozen=True)
class Reply:
    status: int
    body: dict[str, Any]


def throttling() -> Reply:
    return Reply(400, {"__type": "ThrottlingException", "message": "Rate exceeded"})


def access_denied(operation: str = "DescribeImages", repo: str = "team/web") -> Reply:
    message = (
        "User: arn:aws:sts::123456789012:assumed-role/argocd-repo-server/botocore-session is not "
        f"authorized to perform: ecr:{operation} on resource: "
        f"arn:aws:ecr:eu-west-1:123456789012:repository/{repo} because no identity-based "
        f"policy allows the ecr:{operation} action"
    )
    return Reply(400, {"__type": "AccessDeniedException", "message": message})


def server_error() -> Reply:
    return Reply(500, {"__type": "ServerException", "message": "internal error"})


def ok(body: dict[str, Any]) -> Reply:
    return Reply(200, body)


class FakeEcr:
    """Answers each request with the next scripted reply, then `otherwise` for ever after."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._script: list[Reply] = []
        self._otherwise: Reply = server_error()
        self.requests: list[tuple[str, dict[str, Any]]] = []  # (operation, JSON body)
        handler = _handler(self)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def script(self, *replies: Reply, otherwise: Reply | None = None) -> None:
        with self._lock:
            self._script = list(replies)
            if otherwise is not None:
                self._otherwise = otherwise

    def operations(self) -> list[str]:
        with self._lock:
            return [operation for operation, _ in self.requests]

    def _next(self, operation: str, body: dict[str, Any]) -> Reply:
        with self._lock:
            self.requests.append((operation, body))
            return self._script.pop(0) if self._script else self._otherwise

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _handler(fake: FakeEcr) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            length = int(self.headers.get("Content-Length", "0"))
            raw = self.rfile.read(length) if length else b"{}"
            operation = self.headers.get("X-Amz-Target", "").rsplit(".", 1)[-1]
            reply = fake._next(operation, json.loads(raw or b"{}"))
            payload = json.dumps(reply.body).encode()
            self.send_response(reply.status)
            self.send_header("Content-Type", "application/x-amz-json-1.1")
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("x-amzn-RequestId", "fake-request")
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            return

    return Handler


@pytest.fixture
def fake_ecr(aws_env: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeEcr]:
    """A scripted ECR, reached through AWS_ENDPOINT_URL_ECR."""
    fake = FakeEcr()
    fake.start()
    monkeypatch.setenv("AWS_ENDPOINT_URL_ECR", fake.url)
    yield fake
    fake.stop()


@pytest.fixture
def hung_ecr_url(aws_env: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An endpoint whose socket accepts connections and never answers."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)  # the kernel completes handshakes from the backlog; nobody reads
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    monkeypatch.setenv("AWS_ENDPOINT_URL_ECR", url)
    yield url
    listener.close()


@pytest.fixture
def unreachable_ecr_url(aws_env: None, monkeypatch: pytest.MonkeyPatch) -> str:
    """An endpoint on a port nobody listens on (connection refused)."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    probe.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    probe.close()
    monkeypatch.setenv("AWS_ENDPOINT_URL_ECR", url)
    return url
