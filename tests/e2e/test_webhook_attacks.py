"""Attacks on the running `tagpin webhook` process from one tenant or from the internet (issue
15, part C): a broken or exponential policy in one Application, trickling clients, a flood of
connections, a slow client at shutdown. Each test names its attack; docs/reliability.md lists
them with the behaviour users rely on."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cmp.webhook.matching import select
from tests.support.ecr_events import ecr_event as pushed
from tests.support.fake_kube import FakeKube

REPO = Path(__file__).resolve().parents[2]
SECRET = "attack-webhook-secret-0123456789abcdef"
HOST = "111122223333.dkr.ecr.eu-west-1.amazonaws.com"
WEB = f"{HOST}/team/web"
PREFIX = "argocd-image-updater.argoproj.io/"
DIGEST = "sha256:" + "cd" * 32
EXPONENTIAL_TAG = "a" * 40 + "b"  # 41 characters: `^(a+)+$` never finished on it with `re`


def ecr_event(repository: str, tag: str) -> bytes:
    return json.dumps(pushed(repository, tag, digest=DIGEST)).encode()


def policy(allow_tags: str) -> dict[str, str]:
    return {
        f"{PREFIX}image-list": f"web={WEB}",
        f"{PREFIX}web.update-strategy": "newest-build",
        f"{PREFIX}web.allow-tags": allow_tags,
    }


class Webhook:
    """`tagpin webhook` in its own process, as the Deployment runs it."""

    def __init__(self, kubeconfig: Path, secret_file: Path, *args: str) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("TAGPIN_", "ARGOCD_"))},
            "KUBECONFIG": str(kubeconfig),
            "ARGOCD_NAMESPACE": "argocd",
        }
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import sys; from cmp.commands.webhook import webhook_command; "
                "sys.exit(webhook_command().main(prog_name='tagpin webhook', "
                "standalone_mode=False))",
                "--listen",
                f"127.0.0.1:{self.port}",
                "--secret-file",
                str(secret_file),
                "--coalesce-seconds",
                "0",
                *args,
            ],
            cwd=REPO,
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.process.stderr is not None
        self.lines: list[dict[str, Any]] = []
        while not self.lines or self.lines[-1]["msg"] != "listening":  # JSON lines only
            self.lines.append(json.loads(self.process.stderr.readline()))
        self._reader = threading.Thread(target=self._read_log, daemon=True)
        self._reader.start()

    def _read_log(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(json.loads(line))

    def request(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            connection.request(method, path, body=body or None, headers=headers or {})
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def push(self, repository: str, tag: str) -> tuple[int, Any]:
        status, body = self.request(
            "POST",
            "/events/ecr",
            ecr_event(repository, tag),
            {"Content-Type": "application/json", "X-Tagpin-Secret": SECRET},
        )
        return status, json.loads(body)

    def metric(self, sample: str) -> float:
        _, text = self.request("GET", "/metrics")
        for line in text.decode().splitlines():
            if line.startswith(sample + " "):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=60)
        self._reader.join(timeout=10)
        return code


@pytest.fixture
def start(fake_kube: FakeKube, kubeconfig: Path, tmp_path: Path) -> Iterator[Any]:
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET + "\n")
    started: list[Webhook] = []

    def run(*args: str) -> Webhook:
        started.append(Webhook(kubeconfig, secret_file, *args))
        return started[-1]

    yield run
    for webhook in started:
        if webhook.process.poll() is None:
            webhook.process.kill()
            webhook.process.wait()


def patched(fake: FakeKube) -> list[str]:
    return sorted(r.path.split("/")[7] for r in fake.requests if r.method == "PATCH")


def wait_for(condition: Any, what: str, limit: float = 20.0) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


# --- one tenant's policy ---------------------------------------------------------------------


def test_broken_and_exponential_policies_of_one_app_do_not_stop_the_others_refreshing(
    fake_kube: FakeKube, start: Any
) -> None:
    """The attack: `regexp:a{99999999999}` (OverflowError) or 1,000 nested parentheses
    (RecursionError) made every push to the repository answer 500 and refresh nothing, and an
    exponential regexp blocked /healthz."""
    fake_kube.add("argocd", "evil-overflow", policy("regexp:a{99999999999}"))
    fake_kube.add("argocd", "evil-deep", policy("regexp:" + "(" * 1000 + "a" + ")" * 1000))
    fake_kube.add("argocd", "evil-exponential", policy("regexp:^(a+)+$"))
    fake_kube.add("argocd", "branch", policy("regexp:^a+b$"))
    prod = fake_kube.add("argocd", "prod")
    prod["status"] = {"summary": {"images": [f"{WEB}:main"]}}
    webhook = start()

    status, reply = webhook.push("team/web", EXPONENTIAL_TAG)
    assert status == 202, reply
    assert reply["applications"] == ["argocd/branch", "argocd/prod"]
    assert webhook.request("GET", "/healthz")[0] == 200
    wait_for(lambda: patched(fake_kube) == ["branch", "prod"], "the two refreshes")
    assert webhook.metric("tagpin_webhook_policy_errors_total") == 2
    assert webhook.stop() == 0
    errors = {
        line["app"]: line["problem"] for line in webhook.lines if line["msg"] == "policy error"
    }
    assert set(errors) == {"argocd/evil-overflow", "argocd/evil-deep"}
    assert "invalid repeat count" in errors["argocd/evil-overflow"]
    assert "nests too deeply" in errors["argocd/evil-deep"]


def test_an_application_the_matching_cannot_read_is_skipped_and_reported() -> None:
    """Defence in depth: whatever breaks while one Application is evaluated skips it alone."""
    good = {
        "metadata": {"name": "good", "namespace": "argocd"},
        "status": {"summary": {"images": [f"{WEB}:main"]}},
    }
    unreadable = {"metadata": {"name": "odd", "namespace": "argocd", "annotations": ["a"]}}
    reported: list[tuple[str, str]] = []
    matches = select(
        [unreadable, good],
        WEB,
        "main",
        lambda app, error: reported.append((app, type(error).__name__)),
    )
    assert [str(m.app) for m in matches] == ["argocd/good"]
    assert reported == [("argocd/odd", "AttributeError")]


def deeply_nested_application(name: str, depth: int = 1500) -> str:
    """An Application as the API server stores it, `spec.source.helm.valuesObject` nested
    `depth` levels deep (Argo CD's CRD keeps unknown fields there), running WEB."""
    values = '{"a":' * depth + "1" + "}" * depth
    return (
        f'{{"metadata":{{"name":"{name}","namespace":"argocd","resourceVersion":"1"}},'
        f'"spec":{{"source":{{"helm":{{"valuesObject":{values}}}}}}},'
        f'"status":{{"summary":{{"images":["{WEB}:main"]}}}}}}'
    )


def test_one_deeply_nested_application_does_not_stop_the_webhook_for_everyone(
    fake_kube: FakeKube, start: Any
) -> None:
    """The attack: one Application with a 1,500-deep `valuesObject` made the list of
    Applications fail to decode (RecursionError): every push got HTTP 500, /readyz 500, start-up
    printed a traceback and the process then ignored SIGTERM."""
    for name in ("prod", "staging"):
        fake_kube.add("argocd", name)["status"] = {"summary": {"images": [f"{WEB}:main"]}}
    fake_kube.add_raw("argocd", "evil", deeply_nested_application("evil"))
    webhook = start()  # it logs JSON lines only, no traceback
    assert webhook.lines[-1]["ready"] is True
    status, body = webhook.request("GET", "/readyz")
    assert (status, json.loads(body)) == (200, {"status": "ready", "applications": 2})

    status, reply = webhook.push("team/web", "main")
    assert status == 202, reply
    assert reply["applications"] == ["argocd/prod", "argocd/staging"]
    wait_for(lambda: patched(fake_kube) == ["prod", "staging"], "the two refreshes")
    assert webhook.metric("tagpin_webhook_unreadable_applications") == 1
    assert webhook.stop() == 0  # SIGTERM is obeyed
    [skipped] = [line for line in webhook.lines if line["msg"] == "unreadable application"]
    assert skipped["app"] == "argocd/evil"
    assert "nested too deeply (more than 256 levels)" in skipped["problem"]
    assert webhook.lines[-1]["msg"] == "stopped"


# --- the HTTP front --------------------------------------------------------------------------


def trickle(port: int, stop: threading.Event, cut: list[float]) -> None:
    """A slowloris client: one header byte every 0.3 s, never finishing its request."""
    started = time.monotonic()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
            connection.sendall(b"POST /events/ecr HTTP/1.1\r\nHost: x\r\n")
            while not stop.is_set():
                connection.sendall(b"X")
                time.sleep(0.3)
                connection.setblocking(False)
                try:
                    if connection.recv(4096) == b"":
                        break  # the server hung up
                except BlockingIOError:
                    pass
                finally:
                    connection.setblocking(True)
    except OSError:
        pass  # reset by the server: cut off too
    if not stop.is_set():
        cut.append(time.monotonic() - started)


def test_trickling_clients_are_cut_off_and_cannot_lock_out_pushes(
    fake_kube: FakeKube, start: Any
) -> None:
    """The attack: 300 clients sending a byte every few seconds were never cut off (the 10 s
    timeout was per read), each holding a thread."""
    prod = fake_kube.add("argocd", "prod")
    prod["status"] = {"summary": {"images": [f"{WEB}:main"]}}
    webhook = start("--request-timeout", "2", "--max-connections", "8")
    stop, cut = threading.Event(), list[str]()
    clients = [
        threading.Thread(target=trickle, args=(webhook.port, stop, cut), daemon=True)
        for _ in range(40)
    ]

    def refused(reason: str) -> float:
        return webhook.metric(f'tagpin_webhook_connections_refused_total{{reason="{reason}"}}')

    try:
        for client in clients:
            client.start()
        # 40 unfinished requests, room for 4 x 8 of them: the oldest are dropped for newer ones
        # (8 tricklers, and the metric polls that find it full), and each of the others is cut
        # off at its 2 s deadline, however steadily it sends (a byte every 0.3 s: a per-read
        # timeout never fires).
        wait_for(lambda: refused("evicted") + refused("deadline") >= 40, "every trickler cut")
        assert refused("evicted") >= 8
        # No trickler ever held a request slot: every push is served.
        statuses = [webhook.push("team/web", "main")[0] for _ in range(3)]
        assert statuses == [202, 202, 202]
    finally:
        stop.set()
        for client in clients:
            client.join(timeout=10)
    wait_for(lambda: "prod" in patched(fake_kube), "the push's refresh")


def hold_a_slow_socket(port: int, stop: threading.Event, connects: list[int]) -> None:
    """An unauthenticated slow client that keeps one socket open: it trickles request headers
    and connects again whenever the server cuts it off."""
    while not stop.is_set():
        connects.append(1)
        trickle(port, stop, [])


def test_slow_unauthenticated_clients_beyond_max_connections_do_not_lock_out_pushes(
    fake_kube: FakeKube, start: Any
) -> None:
    """The attack: more slow unauthenticated clients than --max-connections let 1-2 of 50
    real pushes through in 25 s (each slot was taken at accept, before any authentication)."""
    prod = fake_kube.add("argocd", "prod")
    prod["status"] = {"summary": {"images": [f"{WEB}:main"]}}
    webhook = start("--max-connections", "8")
    stop, connects = threading.Event(), list[int]()
    clients = [
        threading.Thread(target=hold_a_slow_socket, args=(webhook.port, stop, connects))
        for _ in range(40)
    ]
    try:
        for client in clients:
            client.start()
        wait_for(
            lambda: (
                webhook.metric('tagpin_webhook_connections_refused_total{reason="evicted"}') > 0
            ),
            "more slow sockets than the webhook keeps pending",
        )
        accepted = 0
        for _ in range(50):
            with contextlib.suppress(OSError, ValueError):
                accepted += webhook.push("team/web", "main")[0] == 202
        slow_sockets = len(connects)
    finally:
        stop.set()
        for client in clients:
            client.join(timeout=10)
    assert accepted == 50, f"{accepted} of 50 pushes accepted beside 40 slow sockets"
    assert slow_sockets >= 40
    assert webhook.metric('tagpin_webhook_connections_refused_total{reason="busy"}') == 0
    wait_for(lambda: "prod" in patched(fake_kube), "the pushes' refresh")


def test_a_slow_client_does_not_hold_shutdown_past_the_grace_period(
    fake_kube: FakeKube, start: Any
) -> None:
    """The attack: one client trickling its request held SIGTERM-to-exit for 24.5 s, past the
    pod's grace period (30 s), where the kubelet SIGKILLs and pending refreshes are lost."""
    prod = fake_kube.add("argocd", "prod")
    prod["status"] = {"summary": {"images": [f"{WEB}:main"]}}
    webhook = start(
        "--request-timeout", "60", "--coalesce-seconds", "600", "--shutdown-seconds", "5"
    )
    assert webhook.push("team/web", "main")[0] == 202  # held for the 600 s window
    stop, cut = threading.Event(), list[str]()
    client = threading.Thread(target=trickle, args=(webhook.port, stop, cut), daemon=True)
    client.start()
    time.sleep(1)  # the client is connected and trickling
    asked = time.monotonic()
    try:
        assert webhook.stop() == 0
        took = time.monotonic() - asked
        # The server hung up on the slow client (it sees that at its next send).
        wait_for(lambda: len(cut) == 1, "the slow client to be cut off")
    finally:
        stop.set()
        client.join(timeout=10)
    assert took < 5 + 5  # the 5 s budget, not the slow client's 60 s deadline, nor 30 s
    assert patched(fake_kube) == ["prod"]  # the pending refresh was sent before exiting
    assert webhook.lines[-1]["msg"] == "stopped"
