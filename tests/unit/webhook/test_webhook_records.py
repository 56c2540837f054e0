"""The webhook's push record under races: a writer between read and patch, two webhook
replicas at once, two pushes of one repository inside the coalescing window. Real HTTP to the
Kubernetes API stand-in, which refuses a patch naming a stale resourceVersion like the real one."""

from __future__ import annotations

import io
import json
import threading
import time
import uuid
from typing import Any

from cmp.argocd.kube import Connection, KubeApi
from cmp.registry.pushes import PUSHES_ANNOTATION, PushRecord, parse_record
from cmp.webhook.events import PushEvent, sign
from cmp.webhook.records import REFRESH_ANNOTATION, refresh_and_record
from cmp.webhook.server import WebhookConfig, WebhookServer
from tests.support.fake_kube import TOKEN, FakeKube

HOST = "111122223333.dkr.ecr.eu-west-1.amazonaws.com"
SECRET = "records-test-secret-0123456789ab"


def api(fake: FakeKube) -> KubeApi:
    return KubeApi(Connection(server=fake.url, source="test", token=TOKEN))


def event(repository: str, tag: str = "main", digest: str | None = None) -> PushEvent:
    return PushEvent(f"{HOST}/{repository}", tag, digest, "generic", str(uuid.uuid4()))


def record(fake: FakeKube, name: str) -> PushRecord:
    annotations = fake.applications[("argocd", name)]["metadata"]["annotations"]
    return parse_record(annotations[PUSHES_ANNOTATION])


def test_a_writer_between_read_and_patch_loses_nothing(fake_kube: FakeKube) -> None:
    fake_kube.add("argocd", "web")

    class Interleaved(KubeApi):
        """Another webhook replica records its push right after this one read the app."""

        interleaved = False

        def get_application(self, namespace: str, name: str) -> dict[str, Any] | None:
            application = super().get_application(namespace, name)
            if not self.interleaved:
                self.interleaved = True
                refresh_and_record(api(fake_kube), namespace, name, [event("team/api")])
            return application

    mine = Interleaved(Connection(server=fake_kube.url, source="test", token=TOKEN))
    refresh_and_record(mine, "argocd", "web", [event("team/web")])

    assert set(record(fake_kube, "web").pushes) == {f"{HOST}/team/api", f"{HOST}/team/web"}
    patches = [r for r in fake_kube.requests if r.method == "PATCH"]
    assert len(patches) == 3  # the other's, mine refused (409), mine again on a fresh read
    assert (
        fake_kube.applications[("argocd", "web")]["metadata"]["annotations"][REFRESH_ANNOTATION]
        == "hard"
    )


def start(fake: FakeKube, coalesce: float = 0.0) -> WebhookServer:
    config = WebhookConfig(
        secret=SECRET,
        namespaces=("argocd",),
        port=0,
        coalesce_seconds=coalesce,
        app_cache_seconds=0.0,
    )
    server = WebhookServer(config, api(fake), io.StringIO())
    server.start()
    return server


def push(server: WebhookServer, repository: str, tag: str, digest: str) -> None:
    import http.client

    body = json.dumps({"repository": f"{HOST}/{repository}", "tag": tag, "digest": digest})
    stamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "X-Tagpin-Timestamp": stamp,
        # Distinct bodies per call: identical signed requests are refused as replays.
        "X-Tagpin-Signature": sign(SECRET, stamp, body.encode()),
    }
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.request("POST", "/events/generic", body=body, headers=headers)
        response = connection.getresponse()
        assert response.status == 202, response.read()
        response.read()
    finally:
        connection.close()


def test_two_webhook_replicas_at_once_lose_no_push(fake_kube: FakeKube) -> None:
    names = [f"team/svc-{n:02d}" for n in range(12)]
    many = fake_kube.add("argocd", "many")
    many["status"] = {"summary": {"images": [f"{HOST}/{name}:main" for name in names]}}
    replicas = [start(fake_kube), start(fake_kube)]
    try:
        threads = [
            threading.Thread(
                target=push,
                args=(replicas[n % 2], name, "main", "sha256:" + f"{n:02d}" * 32),
            )
            for n, name in enumerate(names)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        for server in replicas:
            server.stop()  # sends every pending patch first
    pushes = record(fake_kube, "many").pushes
    assert {r: p.digest for r, p in pushes.items()} == {
        f"{HOST}/{name}": "sha256:" + f"{n:02d}" * 32 for n, name in enumerate(names)
    }


def test_two_pushes_of_one_repository_inside_the_window_record_the_later(
    fake_kube: FakeKube,
) -> None:
    api_app = fake_kube.add("argocd", "api")
    api_app["status"] = {"summary": {"images": [f"{HOST}/team/api:main"]}}
    server = start(fake_kube, coalesce=0.5)
    try:
        push(server, "team/api", "main", "sha256:" + "1" * 64)
        push(server, "team/api", "main", "sha256:" + "2" * 64)
    finally:
        server.stop()
    assert sum(1 for r in fake_kube.requests if r.method == "PATCH") == 1  # one refresh
    assert record(fake_kube, "api").pushes[f"{HOST}/team/api"].digest == "sha256:" + "2" * 64
