"""Read the live Argo CD Application from the Kubernetes API, for branch deploys.

Argo CD passes no annotations to a plugin, so tagpin asks the API server itself. Written on the
standard library, imported lazily, because tagpin starts a new process for every render.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

# The settings half of the Application lookup lives in cmp.argocd.lookup; re-exported here.
from cmp.argocd.lookup import DEFAULT_NAMESPACE as DEFAULT_NAMESPACE
from cmp.argocd.lookup import SERVICEACCOUNT_DIR as SERVICEACCOUNT_DIR
from cmp.argocd.lookup import LookupSettings as LookupSettings
from cmp.argocd.lookup import in_cluster as in_cluster
from cmp.argocd.lookup import lookup_settings as lookup_settings
from cmp.errors import AppLookupError

if TYPE_CHECKING:
    import ssl
    import tempfile

    from cmp.jsonread import Skipped

APPLICATIONS_PATH = "/apis/argoproj.io/v1alpha1/namespaces/{namespace}/applications"
HTTP_TIMEOUT_SECONDS = 5.0
EXEC_TIMEOUT_SECONDS = 10.0
LIST_PAGE_SIZE = 250
# One answer at most: an Application is at most ~1.5 MiB (etcd's limit), a page of them is
# asked again in smaller pages when it is larger than this.
MAX_RESPONSE_BYTES = 64 * 1024 * 1024
MAX_CREDENTIAL_BYTES = 1024 * 1024
EXEC_API_VERSIONS = ("client.authentication.k8s.io/v1", "client.authentication.k8s.io/v1beta1")
USER_AGENT = "tagpin"
KUBECONFIG_SECTIONS = (("clusters", "cluster"), ("contexts", "context"), ("users", "user"))
WITHOUT_OVERRIDES = "rendering without branch-deploy annotations"


class ApplicationReader(Protocol):
    """The one call a render needs; tests hand in a small fake instead of a server."""

    def get_application(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The Application object, or None when it does not exist."""
        ...


class ApplicationApi(ApplicationReader, Protocol):
    """The three KubeApi calls `tagpin branch` and the webhook make; tests hand in fakes."""

    def list_applications(self, namespace: str) -> Applications: ...

    def patch_application(
        self, namespace: str, name: str, patch: dict[str, Any]
    ) -> dict[str, Any]: ...


class KubeApiError(AppLookupError):
    """The API server answered with an error (`status` is its HTTP code) or could not be reached."""

    def __init__(self, *problems: str, status: int | None = None) -> None:
        super().__init__(*problems)
        self.status = status


class ResponseTooLarge(AppLookupError):
    """An answer longer than MAX_RESPONSE_BYTES; a list asks again in smaller pages."""


class Applications(list[dict[str, Any]]):
    """The Applications of a list, and those left out because they cannot be read (nested
    deeper than cmp/jsonread.py's bound): one tenant's object never costs the others theirs."""

    def __init__(self, items: list[dict[str, Any]], unreadable: list[Skipped]) -> None:
        super().__init__(items)
        self.unreadable = unreadable


def fetch_annotations(
    settings: LookupSettings,
    api_factory: Callable[[], ApplicationReader | None],
) -> tuple[dict[str, str], list[str]]:
    """The live Application's annotations and any warnings for the caller to print.

    Under `auto`, a missing Application or a missing permission only warns: the render goes on
    without branch-deploy overrides. Anything else (bad credentials, an unreachable or failing API
    server) is an error in every mode, because rendering the wrong images is worse than none.
    """
    if not settings.enabled:
        return {}, []
    soft_statuses = () if settings.required else (403,)
    api = api_factory()
    if api is None:
        problem = (
            f"cannot read {settings.where}: no Kubernetes credentials found (no service-account "
            "token, KUBECONFIG or ~/.kube/config)"
        )
        if settings.required:
            raise AppLookupError(problem + "; set TAGPIN_APP_LOOKUP=off to render without it")
        return {}, [f"{problem}; {WITHOUT_OVERRIDES}"]
    try:
        application = api.get_application(settings.namespace, settings.app_name)
    except KubeApiError as error:
        if error.status not in soft_statuses:
            raise
        return {}, [f"{line}; {WITHOUT_OVERRIDES}" for line in error.problems]
    finally:
        close = getattr(api, "close", None)
        if close is not None:
            close()  # removes any client key written to disk now: `generate` skips teardown
    if application is None:
        problem = (
            f"{settings.where} does not exist: check the app name and namespace "
            "(ARGOCD_NAMESPACE, or `<namespace>_<name>`)"
        )
        if settings.required:
            raise AppLookupError(problem)
        return {}, [f"{problem}; {WITHOUT_OVERRIDES}"]
    metadata = application.get("metadata")
    annotations = metadata.get("annotations") if isinstance(metadata, dict) else None
    if not isinstance(annotations, dict):  # the API server's schema makes it a string map
        return {}, []
    return {str(key): str(value) for key, value in annotations.items()}, []


# --- connection -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ExecPlugin:
    """A kubeconfig `user.exec` credential plugin (e.g. `aws eks get-token`)."""

    command: str
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    api_version: str = "client.authentication.k8s.io/v1"
    install_hint: str = ""
    provide_cluster_info: bool = False


@dataclass(frozen=True)
class Connection:
    """Where the API server is and how to authenticate; `source` names it in messages."""

    server: str
    source: str
    ca_file: str | None = None
    ca_data: str | None = None  # PEM
    insecure: bool = False
    token: str | None = field(default=None, repr=False)
    token_file: str | None = None  # re-read per request: projected tokens rotate
    cert_file: str | None = None
    key_file: str | None = None
    cert_data: bytes | None = field(default=None, repr=False)
    key_data: bytes | None = field(default=None, repr=False)
    exec_plugin: ExecPlugin | None = None


def in_cluster_connection(environ: Mapping[str, str], serviceaccount_dir: Path) -> Connection:
    host = environ["KUBERNETES_SERVICE_HOST"]
    if ":" in host:  # IPv6
        host = f"[{host}]"
    return Connection(
        server=f"https://{host}:{environ['KUBERNETES_SERVICE_PORT']}",
        source=f"in-cluster service account ({serviceaccount_dir})",
        ca_file=str(serviceaccount_dir / "ca.crt"),
        token_file=str(serviceaccount_dir / "token"),
    )


def kubeconfig_connection(paths: list[Path]) -> Connection:
    """Merge kubeconfig files like kubectl (first definition wins) and use the current context."""
    import yaml  # lazily: only laptops and CI read kubeconfig files

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    merged: dict[str, dict[str, dict[str, Any]]] = {"clusters": {}, "contexts": {}, "users": {}}
    origin: dict[tuple[str, str], Path] = {}  # relative paths resolve against their own file
    current_context = ""
    for path in paths:
        try:
            document = yaml.load(path.read_text(encoding="utf-8"), Loader=loader) or {}
        except OSError as error:
            raise AppLookupError(f"cannot read kubeconfig {path}: {error.strerror}") from error
        except yaml.YAMLError as error:
            raise AppLookupError(f"kubeconfig {path} is not valid YAML: {error}") from error
        if not isinstance(document, dict):
            raise AppLookupError(f"kubeconfig {path} is not a mapping")
        current_context = current_context or str(document.get("current-context") or "")
        for section, body_key in KUBECONFIG_SECTIONS:
            for entry in document.get(section) or []:
                if not isinstance(entry, dict):
                    continue
                name = str(entry.get("name", ""))
                if name not in merged[section]:
                    merged[section][name] = entry.get(body_key) or {}
                    origin[(section, name)] = path
    shown = os.pathsep.join(str(path) for path in paths)
    if not current_context:
        raise AppLookupError(
            f"kubeconfig {shown} has no current-context: run `kubectl config use-context`"
        )
    context = merged["contexts"].get(current_context)
    if context is None:
        raise AppLookupError(
            f"kubeconfig {shown}: current-context {current_context!r} is not defined"
        )
    cluster_name = str(context.get("cluster", ""))
    cluster = merged["clusters"].get(cluster_name)
    if cluster is None or not cluster.get("server"):
        raise AppLookupError(
            f"kubeconfig {shown}: context {current_context!r} names cluster {cluster_name!r}, "
            "which is not defined or has no server"
        )
    user_name = str(context.get("user", ""))
    user = merged["users"].get(user_name, {})
    cluster_dir = origin[("clusters", cluster_name)].parent
    user_dir = origin.get(("users", user_name), cluster_dir).parent

    def resolve(directory: Path, value: object) -> str | None:
        return str(directory / str(value)) if value else None

    def data(value: object) -> bytes | None:
        import base64

        return base64.b64decode(str(value)) if value else None

    exec_spec = user.get("exec")
    exec_plugin = None
    if exec_spec:
        command = str(exec_spec.get("command", ""))
        if os.sep in command and not os.path.isabs(command):
            command = str(user_dir / command)  # kubectl resolves these against the kubeconfig
        exec_plugin = ExecPlugin(
            command=command,
            args=tuple(str(arg) for arg in exec_spec.get("args") or []),
            env=tuple(
                (str(v["name"]), str(v.get("value", ""))) for v in exec_spec.get("env") or []
            ),
            api_version=str(exec_spec.get("apiVersion") or EXEC_API_VERSIONS[0]),
            install_hint=str(exec_spec.get("installHint") or ""),
            provide_cluster_info=bool(exec_spec.get("provideClusterInfo")),
        )
    ca_data = data(cluster.get("certificate-authority-data"))
    return Connection(
        server=str(cluster["server"]).rstrip("/"),
        source=f"kubeconfig {shown}, context {current_context!r}",
        ca_file=resolve(cluster_dir, cluster.get("certificate-authority")),
        ca_data=ca_data.decode("ascii") if ca_data else None,
        insecure=bool(cluster.get("insecure-skip-tls-verify")),
        token=str(user["token"]) if user.get("token") else None,
        token_file=resolve(user_dir, user.get("tokenFile")),
        cert_file=resolve(user_dir, user.get("client-certificate")),
        key_file=resolve(user_dir, user.get("client-key")),
        cert_data=data(user.get("client-certificate-data")),
        key_data=data(user.get("client-key-data")),
        exec_plugin=exec_plugin,
        # proxy-url is ignored: tagpin connects directly (the sidecar never needs a proxy).
    )


def run_exec_plugin(plugin: ExecPlugin, connection: Connection) -> dict[str, Any]:
    """Run a credential plugin and return its ExecCredential `status`."""
    import json
    import subprocess

    request: dict[str, Any] = {
        "apiVersion": plugin.api_version,
        "kind": "ExecCredential",
        "spec": {"interactive": False},
    }
    if plugin.provide_cluster_info:
        cluster: dict[str, Any] = {"server": connection.server}
        if connection.ca_data:
            import base64

            cluster["certificate-authority-data"] = base64.b64encode(
                connection.ca_data.encode("ascii")
            ).decode("ascii")
        if connection.insecure:
            cluster["insecure-skip-tls-verify"] = True
        request["spec"]["cluster"] = cluster
    env = {**os.environ, **dict(plugin.env), "KUBERNETES_EXEC_INFO": json.dumps(request)}
    what = f"credential plugin {plugin.command!r} ({connection.source})"
    if plugin.api_version not in EXEC_API_VERSIONS:
        raise AppLookupError(
            f"{what}: apiVersion {plugin.api_version!r} is not supported; "
            f"use {' or '.join(EXEC_API_VERSIONS)}"
        )
    try:
        completed = subprocess.run(
            [plugin.command, *plugin.args],
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=EXEC_TIMEOUT_SECONDS,
            check=False,
        )
    except FileNotFoundError as error:
        hint = f" {plugin.install_hint.strip()}" if plugin.install_hint else ""
        raise AppLookupError(f"{what} was not found on PATH.{hint}") from error
    except subprocess.TimeoutExpired as error:
        raise AppLookupError(f"{what} did not finish within {EXEC_TIMEOUT_SECONDS:g} s") from error
    except OSError as error:
        raise AppLookupError(f"{what} could not be run: {error.strerror}") from error
    if completed.returncode != 0:
        stderr_lines = completed.stderr.decode("utf-8", "replace").strip().splitlines()
        last_line = stderr_lines[-1][:300] if stderr_lines else "no message"
        raise AppLookupError(f"{what} failed with exit code {completed.returncode}: {last_line}")
    from cmp.jsonread import loads

    try:
        credential = loads(completed.stdout, max_bytes=MAX_CREDENTIAL_BYTES)
        status = credential["status"]
        if credential.get("kind") != "ExecCredential" or not isinstance(status, dict):
            raise ValueError
    except (ValueError, KeyError, TypeError) as error:
        raise AppLookupError(f"{what} did not print an ExecCredential JSON object") from error
    if not status.get("token") and not (
        status.get("clientCertificateData") and status.get("clientKeyData")
    ):
        raise AppLookupError(
            f"{what} printed no status.token and no clientCertificateData/clientKeyData"
        )
    return status


# --- the client -----------------------------------------------------------------------------


class KubeApi:
    """A minimal Kubernetes API client for Argo CD Applications (get, list, merge-patch)."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self._credential: dict[str, Any] | None = None  # exec plugin output, once per process
        self._ssl_context: ssl.SSLContext | None = None
        self._private_dir: tempfile.TemporaryDirectory[str] | None = None

    @classmethod
    def from_environment(
        cls,
        environ: Mapping[str, str],
        serviceaccount_dir: Path = SERVICEACCOUNT_DIR,
    ) -> KubeApi | None:
        """KUBECONFIG, else the pod's service account, else ~/.kube/config; None if none exists.

        The order is controller-runtime's: an explicit KUBECONFIG wins even inside a pod.
        """
        listed = [Path(p) for p in environ.get("KUBECONFIG", "").split(os.pathsep) if p]
        existing = [path for path in listed if path.is_file()]
        if existing:
            return cls(kubeconfig_connection(existing))
        if listed:
            raise AppLookupError(
                f"KUBECONFIG={environ['KUBECONFIG']} names no readable file: fix it or unset it"
            )
        if in_cluster(environ, serviceaccount_dir):
            return cls(in_cluster_connection(environ, serviceaccount_dir))
        home = Path(environ["HOME"]) if environ.get("HOME") else Path.home()
        default = home / ".kube" / "config"
        if default.is_file():
            return cls(kubeconfig_connection([default]))
        return None

    def close(self) -> None:
        if self._private_dir is not None:
            self._private_dir.cleanup()
            self._private_dir = None

    def __enter__(self) -> KubeApi:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def get_application(self, namespace: str, name: str) -> dict[str, Any] | None:
        path = _application_path(namespace, name)
        try:
            raw = self._request("GET", path)
        except KubeApiError as error:
            if error.status == 404:
                return None
            raise
        return _object("GET", path, raw)

    def list_applications(self, namespace: str, page_size: int = LIST_PAGE_SIZE) -> Applications:
        """Every Application in `namespace`, following `metadata.continue` across pages.

        Each item is decoded on its own: one nested too deeply is left out and named in
        `unreadable`. A page larger than MAX_RESPONSE_BYTES is asked again at half the size."""
        from urllib.parse import urlencode

        from cmp.jsonread import JsonError, load_list

        items: list[dict[str, Any]] = []
        unreadable: list[Skipped] = []
        collection = _applications_path(namespace)
        token = ""
        while True:
            query = {"limit": str(page_size), **({"continue": token} if token else {})}
            target = f"{collection}?{urlencode(query)}"
            try:
                raw = self._request("GET", target)
            except ResponseTooLarge:
                if page_size == 1:
                    raise
                page_size = max(1, page_size // 2)
                continue
            try:
                page, skipped = load_list(raw)
            except JsonError as error:
                raise AppLookupError(_unreadable("GET", target, error)) from None
            items.extend(item for item in page.get("items") or [] if isinstance(item, dict))
            unreadable.extend(skipped)
            token = str((page.get("metadata") or {}).get("continue") or "")
            if not token:
                return Applications(items, unreadable)

    def patch_application(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        """Apply a JSON merge patch (RFC 7386) and return the updated Application."""
        path = _application_path(namespace, name)
        raw = self._request("PATCH", path, body=patch, content_type="application/merge-patch+json")
        return _object("PATCH", path, raw)

    # -- plumbing --

    def _request(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        content_type: str = "application/json",
    ) -> bytes:
        """The body of a 2xx answer, at most MAX_RESPONSE_BYTES; KubeApiError otherwise."""
        import http.client
        import json
        from urllib.parse import urlsplit

        server = urlsplit(self.connection.server)
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        token = self._bearer_token()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        payload = None
        if body is not None:
            payload = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = content_type
        connection: http.client.HTTPConnection
        if server.scheme == "https":
            connection = http.client.HTTPSConnection(
                server.hostname or "",
                server.port,
                timeout=HTTP_TIMEOUT_SECONDS,
                context=self._tls_context(),
            )
        elif server.scheme == "http":  # `kubectl proxy`
            connection = http.client.HTTPConnection(
                server.hostname or "", server.port, timeout=HTTP_TIMEOUT_SECONDS
            )
        else:
            raise AppLookupError(
                f"{self.connection.source}: server {self.connection.server!r} is not an http(s) URL"
            )
        target = server.path.rstrip("/") + path
        try:
            connection.request(method, target, body=payload, headers=headers)
            response = connection.getresponse()
            raw = response.read(MAX_RESPONSE_BYTES + 1)
        except (OSError, http.client.HTTPException) as error:  # timeouts, TLS, garbled HTTP
            raise KubeApiError(
                f"cannot reach the Kubernetes API at {self.connection.server} "
                f"({self.connection.source}): {error or type(error).__name__}"
            ) from error
        finally:
            connection.close()
        if len(raw) > MAX_RESPONSE_BYTES:
            raise ResponseTooLarge(
                f"{method} {path}: the API server's answer is larger than "
                f"{MAX_RESPONSE_BYTES // (1024 * 1024)} MiB; tagpin reads no more"
            )
        if 200 <= response.status < 300:
            return raw
        raise _http_error(method, path, response.status, response.reason, raw, self.connection)

    def _bearer_token(self) -> str | None:
        if self.connection.token_file:
            try:
                return Path(self.connection.token_file).read_text(encoding="utf-8").strip()
            except OSError as error:
                raise AppLookupError(
                    f"cannot read token file {self.connection.token_file} "
                    f"({self.connection.source}): {error.strerror}"
                ) from error
        if self.connection.token:
            return self.connection.token
        credential = self._exec_credential()
        return str(credential["token"]) if credential and credential.get("token") else None

    def _exec_credential(self) -> dict[str, Any] | None:
        if self.connection.exec_plugin is None:
            return None
        if self._credential is None:
            self._credential = run_exec_plugin(self.connection.exec_plugin, self.connection)
        return self._credential

    def _tls_context(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            self._ssl_context = self._build_tls_context()
        return self._ssl_context

    def _build_tls_context(self) -> ssl.SSLContext:
        import ssl

        conn = self.connection
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies certificate and host name
        try:
            if conn.insecure:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            elif conn.ca_data:  # like kubectl: a cluster's own CA replaces the system roots
                context.load_verify_locations(cadata=conn.ca_data)
            elif conn.ca_file:
                context.load_verify_locations(cafile=conn.ca_file)
            else:
                context.load_default_certs()
            cert_file, key_file = conn.cert_file, conn.key_file
            credential = self._exec_credential() if not (conn.cert_data or cert_file) else None
            cert_data = conn.cert_data
            key_data = conn.key_data
            if credential and credential.get("clientCertificateData"):
                cert_data = str(credential["clientCertificateData"]).encode("ascii")
                key_data = str(credential["clientKeyData"]).encode("ascii")
            if cert_data and key_data:
                cert_file = self._private_file("client.crt", cert_data)
                key_file = self._private_file("client.key", key_data)
            if cert_file:
                context.load_cert_chain(cert_file, key_file)
        except (OSError, ssl.SSLError, ValueError) as error:
            raise AppLookupError(
                f"cannot load the TLS certificates of {conn.source}: {error}"
            ) from error
        return context

    def _private_file(self, name: str, content: bytes) -> str:
        """ssl loads client keys only from files: keep them in a 0700 dir, 0600 files."""
        import tempfile

        if self._private_dir is None:
            self._private_dir = tempfile.TemporaryDirectory(prefix="tagpin-kube-")
        path = os.path.join(self._private_dir.name, name)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(content)
        return path


def _applications_path(namespace: str) -> str:
    from urllib.parse import quote

    return APPLICATIONS_PATH.format(namespace=quote(namespace, safe=""))


def _application_path(namespace: str, name: str) -> str:
    from urllib.parse import quote

    return f"{_applications_path(namespace)}/{quote(name, safe='')}"


def _object(method: str, path: str, raw: bytes) -> dict[str, Any]:
    """One object from the API server, decoded under cmp/jsonread.py's bounds."""
    from cmp.jsonread import JsonError, loads

    try:
        document = loads(raw)
    except JsonError as error:
        raise AppLookupError(_unreadable(method, path, error)) from None
    if not isinstance(document, dict):
        raise AppLookupError(f"{method} {path}: the API server's answer is not an object")
    return document


def _unreadable(method: str, path: str, error: ValueError) -> str:
    return f"{method} {path}: tagpin cannot read the API server's answer: {error}"


def _http_error(
    method: str, path: str, status: int, reason: str, raw: bytes, connection: Connection
) -> KubeApiError:
    """One line with the HTTP status, the API's own Status.message and what to do."""
    from cmp.jsonread import JsonError, loads

    message = ""
    try:
        document = loads(raw)
        if isinstance(document, dict) and document.get("kind") == "Status":
            message = str(document.get("message") or "")[:500]
    except JsonError:
        pass
    advice = {
        401: f"the credentials from {connection.source} were rejected; refresh them",
        403: "grant get/list/patch on applications.argoproj.io (see README, App lookup)",
        404: "check the name and namespace, and that Argo CD is installed in this cluster",
    }.get(status, f"using {connection.source}")
    detail = f": {message}" if message else ""
    return KubeApiError(
        f"{method} {path} failed: {status} {reason}{detail} ({advice})", status=status
    )
