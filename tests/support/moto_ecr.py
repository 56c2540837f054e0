"""pytest fixtures: moto's ECR as a real HTTP server on 127.0.0.1, with a server-side call counter.

The counter sits in front of moto's WSGI app, so it also counts calls made by tagpin subprocesses.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from moto.moto_server.threaded_moto_server import ThreadedMotoServer
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import make_server

from cmp.registry.names import EcrRegistry, EcrRepository

ACCOUNT = "123456789012"  # moto's default account
REGION = "eu-west-1"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


class CallCounter:
    """WSGI middleware counting AWS JSON-protocol operations (`X-Amz-Target: …ECR….Operation`).

    `hold(operation)` delays that operation's answers, already computed, until `release()`: a
    client then holds a registry answer older than whatever the test does meanwhile.
    """

    def __init__(self, app: Callable[..., Any]) -> None:
        self._app = app
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self.delay = 0.0  # seconds added to each counted call: ECR across a network
        self._gates: dict[str, threading.Event] = {}
        self._waiting = 0
        self._keys: list[str] = []  # the access key id signing each counted call, in order

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        operation = target.rsplit(".", 1)[-1]
        if target:
            # SigV4: `AWS4-HMAC-SHA256 Credential=<access key id>/<date>/<region>/ecr/...`
            signed = environ.get("HTTP_AUTHORIZATION", "").partition("Credential=")[2]
            with self._lock:
                self._counts[operation] += 1
                self._keys.append(signed.partition("/")[0])
                gate = self._gates.get(operation)
            if self.delay:
                time.sleep(self.delay)
        answer = self._app(environ, start_response)
        if not target or gate is None:
            return answer
        body = list(answer)  # computed now; werkzeug sends nothing before it is returned
        with self._lock:
            self._waiting += 1
        gate.wait(timeout=60)
        with self._lock:
            self._waiting -= 1
        return body

    def hold(self, operation: str) -> None:
        with self._lock:
            self._gates[operation] = threading.Event()

    def held(self) -> int:
        """Answers being held now."""
        with self._lock:
            return self._waiting

    def release(self) -> None:
        with self._lock:
            gates, self._gates = list(self._gates.values()), {}
        for gate in gates:
            gate.set()

    def snapshot(self) -> Counter[str]:
        with self._lock:
            return Counter(self._counts)

    def access_keys(self) -> list[str]:
        """The access key id that signed each call since the last clear, in order."""
        with self._lock:
            return list(self._keys)

    def clear(self) -> None:
        with self._lock:
            self._counts.clear()
            self._keys.clear()
        self.release()


class CountingMotoServer(ThreadedMotoServer):
    """ThreadedMotoServer whose app is wrapped in a `CallCounter`."""

    def __init__(self) -> None:
        super().__init__(ip_address="127.0.0.1", port=0, verbose=False)
        self.counter = CallCounter(DomainDispatcherApplication(create_backend_app))

    def _server_entry(self) -> None:
        self._server = make_server(
            self._ip_address, self._port, self.counter, True, request_handler=MotoRequestHandler
        )
        self._server_ready_event.set()
        self._server.serve_forever()

    @property
    def url(self) -> str:
        host, port = self.get_host_and_port()
        return f"http://{host}:{port}"


@dataclass
class MotoEcr:
    """One test's view of moto's ECR: push images, build repository values, count calls."""

    url: str
    counter: CallCounter
    _clients: dict[str, Any] = field(default_factory=dict)

    def client(self, region: str = REGION) -> Any:
        import boto3

        if region not in self._clients:
            self._clients[region] = boto3.client("ecr", region_name=region, endpoint_url=self.url)
        return self._clients[region]

    def repository(
        self, name: str, *, account: str = ACCOUNT, region: str = REGION, **kwargs: Any
    ) -> EcrRepository:
        registry = EcrRegistry(
            host=f"{account}.dkr.ecr.{region}.amazonaws.com",
            account=account,
            region=region,
            fips=False,
            dualstack=False,
        )
        return EcrRepository(registry=registry, name=name, **kwargs)

    def create_repository(
        self, name: str, *, account: str | None = None, region: str = REGION
    ) -> None:
        client = self.client(region)
        params: dict[str, Any] = {"repositoryName": name}
        if account is not None:
            params["registryId"] = account
        with contextlib.suppress(client.exceptions.RepositoryAlreadyExistsException):
            client.create_repository(**params)

    def push(
        self,
        repo: str,
        tag: str | None,
        manifest: bytes | None = None,
        *,
        index: bool = False,
        account: str | None = None,
        region: str = REGION,
    ) -> str:
        """Put an image and return its digest, sha256 of the manifest bytes as on real ECR."""
        self.create_repository(repo, account=account, region=region)
        if manifest is None:
            if index:
                children = [
                    self.push(repo, None, _image_manifest(f"{repo}:{tag}:{arch}"), region=region)
                    for arch in ("amd64", "arm64")
                ]
                manifest = _index_manifest(children)
            else:
                manifest = _image_manifest(f"{repo}:{tag}")
        digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
        params: dict[str, Any] = {
            "repositoryName": repo,
            "imageManifest": manifest.decode(),
            "imageDigest": digest,  # moto invents a digest otherwise
        }
        if tag is not None:
            params["imageTag"] = tag
        self.client(region).put_image(**params)
        return digest

    def calls(self, operation: str) -> int:
        """ECR requests for `operation` that reached the server since the last reset."""
        return self.counter.snapshot()[operation]

    def counts(self) -> Counter[str]:
        """ECR requests per operation since the last reset, from any process."""
        return self.counter.snapshot()

    def reset_calls(self) -> None:
        self.counter.clear()


def _image_manifest(seed: str) -> bytes:
    layer = "sha256:" + hashlib.sha256(seed.encode()).hexdigest()
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "size": 2,
            "digest": "sha256:" + hashlib.sha256(b"{}").hexdigest(),
        },
        "layers": [
            {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "size": 1, "digest": layer}
        ],
    }
    return json.dumps(manifest, sort_keys=True).encode()


def _index_manifest(children: Iterable[str]) -> bytes:
    manifests = [
        {
            "mediaType": OCI_MANIFEST,
            "size": 1,
            "digest": digest,
            "platform": {"architecture": arch, "os": "linux"},
        }
        for digest, arch in zip(children, ("amd64", "arm64"), strict=False)
    ]
    return json.dumps(
        {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}, sort_keys=True
    ).encode()


@pytest.fixture(scope="session")
def moto_server() -> Iterator[CountingMotoServer]:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one access-log line per request else
    server = CountingMotoServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """Fake credentials and no shared config, so nothing can reach a real AWS account."""
    for name in (
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_SESSION_TOKEN",
        "AWS_ROLE_ARN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_ECR",
        "AWS_MAX_ATTEMPTS",
        "AWS_RETRY_MODE",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))


@pytest.fixture
def moto_ecr(
    moto_server: CountingMotoServer, aws_env: None, monkeypatch: pytest.MonkeyPatch
) -> MotoEcr:
    """A freshly reset moto ECR that tagpin reaches through AWS_ENDPOINT_URL_ECR."""
    request = urllib.request.Request(f"{moto_server.url}/moto-api/reset", method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()
    monkeypatch.setenv("AWS_ENDPOINT_URL_ECR", moto_server.url)
    moto_server.counter.clear()
    moto_server.counter.delay = 0.0
    return MotoEcr(url=moto_server.url, counter=moto_server.counter)
