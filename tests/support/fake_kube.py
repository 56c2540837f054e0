"""A fake Kubernetes API server for Argo CD Applications, on 127.0.0.1, plus its fixtures.

It answers like the real one (Status objects, `limit`/`continue` pages, merge patches, and the
409 Conflict a patch carrying a stale `metadata.resourceVersion` gets) and records every request,
so tests check what tagpin sent as well as what it did with the answer. Tests script what Argo
CD's controller would do between requests: a status progression that each GET advances one step,
and hooks that run after a GET has been answered.
"""

from __future__ import annotations

import base64
import copy
import datetime
import ipaddress
import json
import re
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

TOKEN = "fake-token-s3cr3t"
GROUP_VERSION = "argoproj.io/v1alpha1"
APPLICATION_PATH = re.compile(
    r"^/apis/argoproj\.io/v1alpha1/namespaces/(?P<namespace>[^/]+)/applications(?:/(?P<name>[^/]+))?$"
)


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str  # with the query string
    headers: dict[str, str]  # names lower-cased
    body: bytes
    time: float
    client_certificate: bool  # the TLS client presented a certificate the server trusted

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class FakeKube:
    """State the handler serves: Applications by (namespace, name), and what to refuse."""

    token: str = TOKEN
    applications: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    forbidden: set[str] = field(default_factory=set)  # names answered with 403
    requests: list[RecordedRequest] = field(default_factory=list)
    url: str = ""
    lock: threading.RLock = field(default_factory=threading.RLock)
    # (namespace, name) -> statuses still to come: each GET of that Application first moves it to
    # the next one (the last one stays), as Argo CD's controller would between two polls.
    progressions: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)
    # Called with (namespace, name) after a GET of one Application was read, before it is sent:
    # outside the lock, so a hook may wait for another client or write like a controller.
    after_get: list[Callable[[str, str], None]] = field(default_factory=list)
    # Applications served as given, byte for byte (GET and in lists): objects nested deeper
    # than Python's json can build or print, as the real API server stores them.
    raw: dict[tuple[str, str], str] = field(default_factory=dict)

    def add_raw(self, namespace: str, name: str, text: str) -> None:
        with self.lock:
            self.raw[(namespace, name)] = text

    def add(
        self, namespace: str, name: str, annotations: dict[str, str] | None = None
    ) -> dict[str, Any]:
        application = {
            "apiVersion": GROUP_VERSION,
            "kind": "Application",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "resourceVersion": "1",
                "annotations": dict(annotations or {}),
            },
            "spec": {"source": {"plugin": {"name": "tagpin"}}},
        }
        self.applications[(namespace, name)] = application
        return application

    def script_status(self, namespace: str, name: str, statuses: list[dict[str, Any]]) -> None:
        """What `status` the next GETs see, one step per GET."""
        with self.lock:
            self.progressions[(namespace, name)] = [copy.deepcopy(s) for s in statuses]

    def write(self, namespace: str, name: str, change: Callable[[dict[str, Any]], None]) -> None:
        """Change an Application as another writer would (bumps its resourceVersion)."""
        with self.lock:
            application = self.applications[(namespace, name)]
            change(application)
            metadata = application["metadata"]
            metadata["resourceVersion"] = str(int(metadata["resourceVersion"]) + 1)

    def annotations(self, namespace: str, name: str) -> dict[str, str]:
        with self.lock:
            return dict(self.applications[(namespace, name)]["metadata"].get("annotations") or {})

    # -- request handling, called from the server's threads --

    def handle(
        self, method: str, target: str, headers: dict[str, str], body: bytes, cert: bool
    ) -> tuple[int, Any]:
        with self.lock:
            self.requests.append(RecordedRequest(method, target, headers, body, time.time(), cert))
            url = urlsplit(target)
            match = APPLICATION_PATH.match(url.path)
            if headers.get("authorization") != f"Bearer {self.token}" and not cert:
                return 401, status(401, "Unauthorized", "Unauthorized")
            if match is None:
                return 404, status(
                    404, "NotFound", "the server could not find the requested resource"
                )
            namespace, name = match["namespace"], match["name"]
            if name in self.forbidden:
                verb = "patch" if method == "PATCH" else "get"
                return 403, status(
                    403,
                    "Forbidden",
                    f'applications.argoproj.io "{name}" is forbidden: User '
                    f'"system:serviceaccount:argocd:argocd-repo-server" cannot {verb} resource '
                    f'"applications" in API group "argoproj.io" in the namespace "{namespace}"',
                )
            if name is None and method == "GET":
                return 200, self.list_page(namespace, parse_qs(url.query))
            if (namespace, name) in self.raw:
                if method == "GET":
                    return 200, RawJson(self.raw[(namespace, name)])
                return 422, status(422, "Invalid", "the fake does not change raw Applications")
            application = self.applications.get((namespace, name))
            if application is None:
                return 404, status(404, "NotFound", f'applications.argoproj.io "{name}" not found')
            if method == "GET":
                steps = self.progressions.get((namespace, name))
                if steps:
                    application["status"] = steps.pop(0) if len(steps) > 1 else steps[0]
                return 200, copy.deepcopy(application)
            if method == "PATCH":
                if headers.get("content-type") != "application/merge-patch+json":
                    return 415, status(415, "UnsupportedMediaType", "unsupported patch type")
                patch = json.loads(body)
                # A resourceVersion in the patch is a precondition (optimistic concurrency).
                wanted = (patch.get("metadata") or {}).get("resourceVersion")
                if wanted is not None and wanted != application["metadata"]["resourceVersion"]:
                    return 409, status(
                        409,
                        "Conflict",
                        f'Operation cannot be fulfilled on applications.argoproj.io "{name}": '
                        "the object has been modified; please apply your changes to the latest "
                        "version and try again",
                    )
                merged = merge_patch(application, patch)
                merged["metadata"]["resourceVersion"] = str(
                    int(application["metadata"]["resourceVersion"]) + 1
                )
                self.applications[(namespace, name)] = merged
                return 200, copy.deepcopy(merged)
            return 405, status(405, "MethodNotAllowed", f"{method} is not supported")

    def list_page(self, namespace: str, query: dict[str, list[str]]) -> dict[str, Any]:
        names = sorted(name for ns, name in [*self.applications, *self.raw] if ns == namespace)
        start = int(base64.b64decode(query["continue"][0])) if "continue" in query else 0
        limit = int(query["limit"][0]) if "limit" in query else len(names)
        page = names[start : start + limit]
        metadata: dict[str, Any] = {"resourceVersion": "100"}
        if start + limit < len(names):
            metadata["continue"] = base64.b64encode(str(start + limit).encode()).decode()
        items: list[Any] = []
        for name in page:
            if (namespace, name) in self.raw:
                items.append(RawJson(self.raw[(namespace, name)]))
                continue
            item = copy.deepcopy(self.applications[(namespace, name)])
            del item["apiVersion"], item["kind"]  # the real API leaves these off list items
            items.append(item)
        return {
            "apiVersion": GROUP_VERSION,
            "kind": "ApplicationList",
            "metadata": metadata,
            "items": items,
        }


class RawJson(str):
    """JSON text served verbatim where a value belongs."""


def encode(value: Any) -> str:
    """json.dumps, except that RawJson is written as it is (shallow structures only)."""
    if isinstance(value, RawJson):
        return str(value)
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{encode(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(encode(v) for v in value) + "]"
    return json.dumps(value)


def status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge recursively, null deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def serve(fake: FakeKube, tls: ssl.SSLContext | None = None) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def _dispatch(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            peer_cert = isinstance(self.connection, ssl.SSLSocket) and bool(
                self.connection.getpeercert()
            )
            headers = {name.lower(): value for name, value in self.headers.items()}
            code, document = fake.handle(self.command, self.path, headers, body, peer_cert)
            match = APPLICATION_PATH.match(urlsplit(self.path).path)
            if self.command == "GET" and code == 200 and match and match["name"]:
                for hook in list(fake.after_get):
                    hook(match["namespace"], match["name"])
            payload = (encode(document) if fake.raw else json.dumps(document)).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_PATCH = do_POST = do_PUT = do_DELETE = _dispatch

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep pytest output clean

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    port = server.server_address[1]
    fake.url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    # a short poll interval keeps shutdown (once per test) fast
    threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True).start()
    return server


# --- certificates, generated offline with `cryptography` (a moto dependency) -----------------


@dataclass(frozen=True)
class Pki:
    ca_cert: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def make_pki(directory: Path) -> Pki:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)

    def key() -> ec.EllipticCurvePrivateKey:
        return ec.generate_private_key(ec.SECP256R1())

    def name(common_name: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])

    def certificate(
        subject: str,
        public: ec.EllipticCurvePrivateKey,
        signer: ec.EllipticCurvePrivateKey,
        issuer: str,
        extensions: list[tuple[x509.ExtensionType, bool]],
    ) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(name(subject))
            .issuer_name(name(issuer))
            .public_key(public.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
        )
        for extension, critical in extensions:
            builder = builder.add_extension(extension, critical=critical)
        return builder.sign(signer, hashes.SHA256())

    ca_key, server_key, client_key = key(), key(), key()
    ca = certificate(
        "fake-kube-ca",
        ca_key,
        ca_key,
        "fake-kube-ca",
        [
            (x509.BasicConstraints(ca=True, path_length=None), True),
            (x509.KeyUsage(False, False, False, False, False, True, True, False, False), True),
            (x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False),
        ],
    )
    authority = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key())
    server = certificate(
        "kubernetes",
        server_key,
        ca_key,
        "fake-kube-ca",
        [
            (
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                False,
            ),
            (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False),
            (authority, False),
        ],
    )
    client = certificate(
        "tagpin-user",
        client_key,
        ca_key,
        "fake-kube-ca",
        [
            (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False),
            (authority, False),
        ],
    )

    def write(file_name: str, data: bytes) -> Path:
        path = directory / file_name
        path.write_bytes(data)
        return path

    def private(private_key: ec.EllipticCurvePrivateKey) -> bytes:
        return private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    pem = serialization.Encoding.PEM
    return Pki(
        ca_cert=write("ca.crt", ca.public_bytes(pem)),
        server_cert=write("server.crt", server.public_bytes(pem)),
        server_key=write("server.key", private(server_key)),
        client_cert=write("client.crt", client.public_bytes(pem)),
        client_key=write("client.key", private(client_key)),
    )


def write_kubeconfig(
    path: Path,
    server: str,
    user: dict[str, Any],
    cluster_extra: dict[str, Any] | None = None,
    context: str = "fake",
) -> Path:
    """A one-context kubeconfig; `user` is the `users[].user` mapping (token, exec, …)."""
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": context,
        "clusters": [
            {"name": "fake-cluster", "cluster": {"server": server, **(cluster_extra or {})}}
        ],
        "contexts": [
            {"name": context, "context": {"cluster": "fake-cluster", "user": "fake-user"}}
        ],
        "users": [{"name": "fake-user", "user": user}],
    }
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture
def fake_kube() -> Iterator[FakeKube]:
    """A plain-HTTP fake API server that accepts bearer token `TOKEN`."""
    fake = FakeKube()
    server = serve(fake)
    yield fake
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def server_tls(pki: Pki) -> ssl.SSLContext:
    """The fake's TLS: `pki.server_cert`, and a client certificate signed by `pki.ca_cert`
    accepted in place of the token."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.server_cert, pki.server_key)
    context.load_verify_locations(pki.ca_cert)
    context.verify_mode = ssl.CERT_OPTIONAL
    return context


@pytest.fixture
def fake_kube_tls(pki: Pki) -> Iterator[FakeKube]:
    """The fake over TLS; a client certificate signed by `pki.ca_cert` replaces the token."""
    fake = FakeKube()
    server = serve(fake, tls=server_tls(pki))
    yield fake
    server.shutdown()
    server.server_close()


@pytest.fixture
def kubeconfig(fake_kube: FakeKube, tmp_path: Path) -> Path:
    """A kubeconfig whose current context reaches `fake_kube` with its token."""
    return write_kubeconfig(tmp_path / "kubeconfig", fake_kube.url, {"token": fake_kube.token})
