"""Latency from a push event to the Application's refresh PATCH, for `tagpin webhook`.

Starts the webhook and the fake Kubernetes API of the tests, both on 127.0.0.1, sends a burst
of EventBridge events over HTTP at an even rate, and measures, per event, the time from sending
it to the first PATCH of its Application that the fake API received afterwards. Prints a
markdown table per coalescing window. Run from the repository root:

    .venv/bin/python -m bench.webhook_latency            # 200 events in 1 s, windows 0 s and 2 s
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import platform
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # `python bench/webhook_latency.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cmp.argocd.kube import Connection, KubeApi
from cmp.webhook.events import SECRET_HEADER
from cmp.webhook.server import WebhookConfig, WebhookServer
from tests.support.fake_kube import TOKEN, FakeKube, serve

ACCOUNT = "111122223333"
REGION = "eu-west-1"
HOST = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"
SECRET = "bench-secret-" + "0" * 24
NAMESPACE = "argocd"
PREFIX = "argocd-image-updater.argoproj.io/"


@dataclass(frozen=True)
class Result:
    coalesce_seconds: float
    events: int
    apps: int
    accepted: int
    patches: int
    latencies_ms: tuple[float, ...]

    def percentile(self, fraction: float) -> float:
        """Nearest-rank percentile."""
        ordered = sorted(self.latencies_ms)
        rank = max(1, round(fraction * len(ordered) + 0.5 - 1e-9))
        return ordered[min(rank, len(ordered)) - 1]


def ecr_event(repository: str, tag: str) -> bytes:
    return json.dumps(
        {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "ECR Image Action",
            "source": "aws.ecr",
            "account": ACCOUNT,
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "region": REGION,
            "resources": [],
            "detail": {
                "result": "SUCCESS",
                "repository-name": repository,
                "image-digest": "sha256:" + uuid.uuid4().hex * 2,
                "action-type": "PUSH",
                "image-tag": tag,
            },
        }
    ).encode()


def post(url: str, body: bytes) -> int:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.request(
            "POST",
            "/events/ecr",
            body,
            {"Content-Type": "application/json", SECRET_HEADER: SECRET},
        )
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def measure(events: int, seconds: float, apps: int, coalesce: float, senders: int) -> Result:
    fake = FakeKube()
    api_server = serve(fake)
    for index in range(apps):
        fake.add(
            NAMESPACE,
            f"svc-{index}",
            {
                f"{PREFIX}image-list": f"svc={HOST}/team/svc-{index}",
                f"{PREFIX}svc.update-strategy": "newest-build",
            },
        )
    config = WebhookConfig(
        secret=SECRET, namespaces=(NAMESPACE,), port=0, coalesce_seconds=coalesce
    )
    webhook = WebhookServer(
        config, KubeApi(Connection(fake.url, "bench", token=TOKEN)), io.StringIO()
    )
    webhook.start()
    sent: dict[int, float] = {}
    statuses: list[int] = []
    lock = threading.Lock()
    start = time.time() + 0.1

    def send(index: int) -> None:
        body = ecr_event(f"team/svc-{index % apps}", f"build-{index}")
        delay = start + index * seconds / events - time.time()
        if delay > 0:
            time.sleep(delay)
        sent_at = time.time()
        status = post(webhook.url, body)
        with lock:
            sent[index] = sent_at
            statuses.append(status)

    try:
        with ThreadPoolExecutor(senders) as pool:
            list(pool.map(send, range(events)))
        # Every event's refresh is due at most one window after it was sent.
        time.sleep(coalesce + 0.5)
    finally:
        webhook.stop()
        api_server.shutdown()
        api_server.server_close()
    patches: dict[str, list[float]] = {}
    for request in fake.requests:
        if request.method == "PATCH":
            patches.setdefault(request.path.rsplit("/", 1)[1], []).append(request.time)
    latencies = []
    for index, sent_at in sent.items():
        after = [t for t in patches.get(f"svc-{index % apps}", []) if t >= sent_at]
        if after:
            latencies.append((min(after) - sent_at) * 1000)
    return Result(
        coalesce_seconds=coalesce,
        events=events,
        apps=apps,
        accepted=sum(1 for status in statuses if status == 202),
        patches=sum(len(times) for times in patches.values()),
        latencies_ms=tuple(latencies),
    )


def table(results: Sequence[Result], seconds: float) -> str:
    lines = [
        f"{results[0].events} EventBridge events in {seconds:g} s over {results[0].apps} "
        f"Applications; Python {platform.python_version()}, {os.cpu_count()} CPUs",
        "",
        "| coalesce window | accepted | PATCHes | measured | p50 ms | p95 ms | max ms |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        if r.latencies_ms:
            figures = (
                f"{r.percentile(0.5):.1f} | {r.percentile(0.95):.1f} | {max(r.latencies_ms):.1f}"
            )
        else:
            figures = "- | - | -"
        lines.append(
            f"| {r.coalesce_seconds:g} s | {r.accepted}/{r.events} | {r.patches} | "
            f"{len(r.latencies_ms)} | {figures} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=1.0, help="spread the burst over this")
    parser.add_argument("--apps", type=int, default=50)
    parser.add_argument("--senders", type=int, default=16, help="concurrent HTTP clients")
    parser.add_argument(
        "--coalesce", type=float, nargs="+", default=[0.0, 2.0], help="windows to measure"
    )
    args = parser.parse_args(argv)
    results = [
        measure(args.events, args.seconds, args.apps, window, args.senders)
        for window in args.coalesce
    ]
    print(table(results, args.seconds))
    incomplete = [r for r in results if len(r.latencies_ms) != r.events or r.accepted != r.events]
    return 1 if incomplete else 0


if __name__ == "__main__":
    sys.exit(main())
