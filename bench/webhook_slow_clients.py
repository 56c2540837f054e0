"""How many real pushes `tagpin webhook` accepts while slow unauthenticated clients keep
sockets open (issue 22: more of them than `--max-connections` used to keep pushes out).

Starts the fake Kubernetes API of the tests and a real `tagpin webhook` process, both on
127.0.0.1; opens N sockets that trickle request headers a byte at a time and connect again
whenever they are cut off; then sends 50 EventBridge pushes one after another and counts the
202 answers. Prints a markdown table. Run from the repository root:

    .venv/bin/python -m bench.webhook_slow_clients                   # N = 40 and 400
    .venv/bin/python -m bench.webhook_slow_clients --slow 100 --max-connections 8
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

if __package__ in (None, ""):  # `python bench/webhook_slow_clients.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.fake_kube import FakeKube, serve, write_kubeconfig

ROOT = Path(__file__).resolve().parent.parent
TAGPIN = str(Path(sys.executable).with_name("tagpin"))
SECRET = "bench-secret-" + "0" * 24
WEB = "111122223333.dkr.ecr.eu-west-1.amazonaws.com/team/web"
PUSHES = 50


def push(port: int) -> int:
    body = json.dumps(
        {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "ECR Image Action",
            "source": "aws.ecr",
            "account": "111122223333",
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "region": "eu-west-1",
            "detail": {
                "result": "SUCCESS",
                "repository-name": "team/web",
                "action-type": "PUSH",
                "image-tag": "main",
            },
        }
    )
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        headers = {"Content-Type": "application/json", "X-Tagpin-Secret": SECRET}
        connection.request("POST", "/events/ecr", body=body, headers=headers)
        return connection.getresponse().status
    except OSError:
        return 0
    finally:
        connection.close()


def slow_client(port: int, stop: threading.Event) -> None:
    """Header bytes every 0.3 s, never a whole request; connects again when cut off."""
    while not stop.is_set():
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
                connection.sendall(b"POST /events/ecr HTTP/1.1\r\nHost: x\r\n")
                while not stop.is_set():
                    connection.sendall(b"X")
                    time.sleep(0.3)
        except OSError:
            time.sleep(0.05)


def measure(slow: int, max_connections: int) -> tuple[int, float]:
    """(pushes accepted of PUSHES, seconds they took) beside `slow` slow sockets."""
    fake = FakeKube()
    api = serve(fake)
    fake.add("argocd", "prod")["status"] = {"summary": {"images": [f"{WEB}:main"]}}
    with tempfile.TemporaryDirectory() as directory:
        kubeconfig = write_kubeconfig(
            Path(directory) / "kubeconfig", fake.url, {"token": fake.token}
        )
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TAGPIN_", "ARGOCD_"))}
        webhook = subprocess.Popen(
            [TAGPIN, "webhook", "--listen", f"127.0.0.1:{port}"]
            + ["--max-connections", str(max_connections), "--coalesce-seconds", "0"],
            cwd=ROOT,
            env={**env, "KUBECONFIG": str(kubeconfig), "TAGPIN_WEBHOOK_SECRET": SECRET},
            stderr=subprocess.PIPE,
            text=True,
        )
        assert webhook.stderr is not None
        webhook.stderr.readline()  # `listening`; the rest of its log is read and dropped
        threading.Thread(target=webhook.stderr.read, daemon=True).start()
        stop = threading.Event()
        clients = [
            threading.Thread(target=slow_client, args=(port, stop), daemon=True)
            for _ in range(slow)
        ]
        try:
            for client in clients:
                client.start()
            time.sleep(2)  # every slow socket is open
            started = time.monotonic()
            accepted = sum(push(port) == 202 for _ in range(PUSHES))
            return accepted, time.monotonic() - started
        finally:
            stop.set()
            webhook.terminate()  # SIGTERM: it sends its pending refreshes, then exits
            webhook.wait(timeout=60)
            api.shutdown()
            api.server_close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slow", type=int, action="append", help="slow sockets (repeatable)")
    parser.add_argument("--max-connections", type=int, action="append")
    args = parser.parse_args(argv)
    cases = [(40, 8), (400, 64)]
    if args.slow or args.max_connections:
        cases = [(s, m) for s in args.slow or [40] for m in args.max_connections or [64]]
    print("| slow sockets | --max-connections | pushes accepted | seconds |")
    print("|---|---|---|---|")
    for slow, max_connections in cases:
        accepted, seconds = measure(slow, max_connections)
        print(f"| {slow} | {max_connections} | {accepted} of {PUSHES} | {seconds:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
