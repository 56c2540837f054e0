"""The parts of a push-to-render fleet: the `tagpin webhook` process, the events it accepts, the
GitOps repository and Applications of a branch deploy beside an app on `main`, and one sidecar
replica. Shared by the e2e push tests and bench/push_freshness.py, so both run the same setup.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cmp.webhook.events import sign
from tests.support.cmpserver import CmpServer
from tests.support.fake_kube import FakeKube
from tests.support.listener import start_listener
from tests.support.moto_ecr import ACCOUNT, REGION
from tests.support.redis_server import free_port

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
HOST = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"
PREFIX = "argocd-image-updater.argoproj.io/"
JSON = {"Content-Type": "application/json"}


def wait_until(condition: Callable[[], bool], limit: float = 30.0) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def manifest(seed: str) -> bytes:
    """An OCI image manifest whose digest is unique to `seed`."""
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "layers": [],
            "seed": seed,
        },
        sort_keys=True,
    ).encode()


def ecr_push_event(repository: str, tag: str, digest: str | None = None) -> dict[str, Any]:
    """The EventBridge event ECR sends for a successful push."""
    detail = {
        "result": "SUCCESS",
        "action-type": "PUSH",
        "repository-name": repository,
        "image-tag": tag,
    }
    if digest is not None:
        detail["image-digest"] = digest
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "ECR Image Action",
        "source": "aws.ecr",
        "account": ACCOUNT,
        "region": REGION,
        "resources": [],
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "detail": detail,
    }


def post(url: str, path: str, body: bytes, headers: Mapping[str, str]) -> tuple[int, Any]:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.request("POST", path, body=body, headers=dict(headers))
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


@dataclass
class Webhook:
    url: str
    log: Path  # its stderr: one JSON line per event, written when the event's patches are done
    secret: str

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log.read_text().splitlines() if line]

    def wait_for_pushes(self, count: int) -> None:
        wait_until(lambda: sum(r["msg"] == "push" for r in self.records()) >= count)

    def eventbridge(self, repository: str, tag: str, digest: str) -> list[str]:
        event = ecr_push_event(repository, tag, digest)
        headers = {**JSON, "X-Tagpin-Secret": self.secret}
        status, answer = post(self.url, "/events/ecr", json.dumps(event).encode(), headers)
        assert status == 202, answer
        return list(answer["applications"])

    def generic(self, repository: str, tag: str, digest: str) -> list[str]:
        body = json.dumps({"repository": f"{HOST}/{repository}", "tag": tag, "digest": digest})
        stamp = str(int(time.time()))
        headers = {
            **JSON,
            "X-Tagpin-Timestamp": stamp,
            "X-Tagpin-Signature": sign(self.secret, stamp, body.encode()),
        }
        status, answer = post(self.url, "/events/generic", body.encode(), headers)
        assert status == 202, answer
        return list(answer["applications"])


@contextlib.contextmanager
def running_webhook(
    kubeconfig: Path, directory: Path, secret: str, extra_env: Mapping[str, str] | None = None
) -> Iterator[Webhook]:
    """The `tagpin webhook` command in its own process, as deploy/webhook runs it; ready (its
    first log line says so) when this yields."""
    port = free_port()
    secret_file = directory / "webhook-secret"
    secret_file.write_text(secret + "\n")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("TAGPIN_", "ARGOCD_"))},
        "KUBECONFIG": str(kubeconfig),
        "ARGOCD_NAMESPACE": "argocd",
        **(extra_env or {}),
    }
    log = directory / "webhook.log"
    with log.open("w") as stderr:  # a file: a pipe nobody reads would block the webhook
        process = subprocess.Popen(
            [
                str(BIN / "tagpin"),
                "webhook",
                "--listen",
                f"127.0.0.1:{port}",
                "--secret-file",
                str(secret_file),
                "--coalesce-seconds",
                "0",
                "--app-cache-seconds",
                "0",
            ],
            env=env,
            stderr=stderr,
        )
        try:
            webhook = Webhook(f"http://127.0.0.1:{port}", log, secret)
            wait_until(lambda: bool(log.read_text()))
            listening = webhook.records()[0]
            assert listening["msg"] == "listening" and listening["ready"] is True, listening
            yield webhook
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def write_gitops(root: Path, images: Mapping[str, str]) -> Path:
    """The GitOps repository: under apps/<name>, one Deployment running `images[name]`."""
    deployment = (
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n  template:\n"
        "    spec:\n      containers:\n      - name: {name}\n        image: {image}\n"
    )
    for name, image in images.items():
        app = root / "apps" / name
        (app / "templates").mkdir(parents=True)
        (app / "tagpin.yaml").write_text("{}\n")
        (app / "templates" / "deployment.yaml").write_text(
            deployment.format(name=name, image=image)
        )
    return root


def add_applications(fake_kube: FakeKube, web: str, web_tag: str, api: str) -> None:
    """The Applications: `web-staging` follows ^pr-42- builds of `web` by Image Updater
    annotations (deployed now: `web_tag`); `api` runs `api:main`, known by its status."""
    web_staging = fake_kube.add(
        "argocd",
        "web-staging",
        {
            f"{PREFIX}image-list": f"web={web}",
            f"{PREFIX}web.allow-tags": "regexp:^pr-42-",
            f"{PREFIX}web.update-strategy": "alphabetical",
        },
    )
    web_staging["status"] = {"summary": {"images": [f"{web}:{web_tag}"]}}
    fake_kube.add("argocd", "api")["status"] = {"summary": {"images": [f"{api}:main"]}}


def replica(
    workdir: Path,
    name: str,
    kubeconfig: Path,
    aws_env: Mapping[str, str],
    render_server: Path | None = None,
) -> CmpServer:
    """One repo-server pod's tagpin sidecar, with a cache directory of its own, reaching ECR
    through `aws_env`; with `render_server` (a socket), renders run in that server's warm
    workers, as in the image."""
    env = {
        **aws_env,
        "PATH": f"{BIN}{os.pathsep}/usr/bin:/bin",
        "HOME": str(workdir / name / "home"),
        "TAGPIN_CACHE_DIR": str(workdir / name / "cache"),
        "TAGPIN_APP_LOOKUP": "on",
        "KUBECONFIG": str(kubeconfig),
        "ARGOCD_NAMESPACE": "argocd",
    }
    if render_server is not None:
        env |= {"TAGPIN_RENDER_SERVER": "on", "TAGPIN_RENDER_SERVER_SOCKET": str(render_server)}
    (workdir / name / "cmp-tmp").mkdir(parents=True)
    return CmpServer.from_plugin_yaml(
        REPO / "plugin.yaml", sidecar_env=env, workdir=workdir / name / "cmp-tmp"
    )


@contextlib.contextmanager
def render_server(directory: Path, env: Mapping[str, str] | None = None) -> Iterator[Path]:
    """A `tagpin render-server` process, as the image's sidecar starts one (with `env`, else
    this process's environment without TAGPIN_/ARGOCD_ settings); yields its socket, and on a
    clean exit checks that some render was served by its workers."""
    socket_path, log = directory / "render.sock", directory / "server.log"
    if env is None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TAGPIN_", "ARGOCD_"))}
    process = start_listener(socket_path, log, env)
    try:
        wait_until(lambda: log.exists() and "serving" in log.read_text(), limit=60)
        yield socket_path
        served = [line for line in log.read_text().splitlines() if " worker " in line]
        assert served, "no render reached the render server"
    finally:
        process.terminate()
        process.wait(timeout=30)
