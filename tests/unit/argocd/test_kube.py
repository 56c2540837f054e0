"""Reading the live Application: lookup rules, kubeconfig and in-cluster auth, API behaviour."""

from __future__ import annotations

import base64
import json
import os
import stat
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from cmp.argocd.kube import (
    KubeApi,
    KubeApiError,
    LookupSettings,
    fetch_annotations,
    lookup_settings,
)
from cmp.errors import AppLookupError, ConfigError
from cmp.settings import AppLookup, Settings
from tests.support.fake_kube import TOKEN, FakeKube, Pki, write_kubeconfig

UPDATER = "argocd-image-updater.argoproj.io/image-list"


@pytest.fixture
def serviceaccount_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "serviceaccount"
    directory.mkdir()
    (directory / "token").write_text(TOKEN)
    (directory / "namespace").write_text("argo-system\n")
    return directory


def api_from(kubeconfig: Path, tmp_path: Path) -> KubeApi:
    api = KubeApi.from_environment(
        {"KUBECONFIG": str(kubeconfig)}, serviceaccount_dir=tmp_path / "no-serviceaccount"
    )
    assert api is not None
    return api


# --- mode and namespace rules ---------------------------------------------------------------

IN_CLUSTER = {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"}


@pytest.mark.parametrize(
    ("environ", "app_name", "has_serviceaccount", "expected"),
    [
        # mode off never looks up
        ({"TAGPIN_APP_LOOKUP": "off", **IN_CLUSTER}, "web", True, (False, "argo-system", "web")),
        # auto: in a cluster with an app name
        ({"ARGOCD_APP_NAME": "web", **IN_CLUSTER}, "", True, (True, "argo-system", "web")),
        # auto: in a cluster but no app name
        (IN_CLUSTER, "", True, (False, "argo-system", "")),
        # auto: the service-account env vars without a mounted token are not a cluster
        ({"ARGOCD_APP_NAME": "web", **IN_CLUSTER}, "", False, (False, "argocd", "web")),
        # auto: laptop with KUBECONFIG and --app-name
        ({"KUBECONFIG": "/k"}, "web", False, (True, "argocd", "web")),
        # auto: laptop without KUBECONFIG
        ({}, "web", False, (False, "argocd", "web")),
        # Argo CD v3 passes unset variables as empty strings
        ({"TAGPIN_APP_LOOKUP": "", "KUBECONFIG": "/k"}, "web", False, (True, "argocd", "web")),
        # on: always, whatever the environment
        ({"TAGPIN_APP_LOOKUP": "on"}, "web", False, (True, "argocd", "web")),
        ({"TAGPIN_APP_LOOKUP": " ON "}, "web", False, (True, "argocd", "web")),
        # ARGOCD_NAMESPACE beats the service account's namespace
        ({"ARGOCD_NAMESPACE": "gitops", **IN_CLUSTER}, "web", True, (True, "gitops", "web")),
        # <namespace>_<name> names both, beating ARGOCD_NAMESPACE
        ({"ARGOCD_NAMESPACE": "gitops", **IN_CLUSTER}, "team-a_web", True, (True, "team-a", "web")),
        # --app-name beats ARGOCD_APP_NAME
        (
            {"ARGOCD_APP_NAME": "team-a_api", **IN_CLUSTER},
            "web",
            True,
            (True, "argo-system", "web"),
        ),
    ],
)
def test_lookup_settings_rules(
    environ: dict[str, str],
    app_name: str,
    has_serviceaccount: bool,
    expected: tuple[bool, str, str],
    serviceaccount_dir: Path,
    tmp_path: Path,
) -> None:
    directory = serviceaccount_dir if has_serviceaccount else tmp_path / "absent"
    settings = lookup_settings(
        Settings.from_environ(environ), environ, app_name, serviceaccount_dir=directory
    )
    assert (settings.enabled, settings.namespace, settings.app_name) == expected


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"TAGPIN_APP_LOOKUP": "yes"}, "TAGPIN_APP_LOOKUP='yes' must be one of auto, on, off"),
        ({"TAGPIN_APP_LOOKUP": "on"}, "pass --app-name or set ARGOCD_APP_NAME"),
    ],
)
def test_lookup_settings_rejects(environ: dict[str, str], message: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=message):
        settings = Settings.from_environ(environ)  # a bad value: refused with the others
        lookup_settings(settings, environ, "", serviceaccount_dir=tmp_path)


# --- fetch_annotations with a swapped-in reader ---------------------------------------------


class StaticReader:
    def __init__(self, application: dict[str, Any] | None = None, error: Exception | None = None):
        self.application = application
        self.error = error
        self.calls: list[tuple[str, str]] = []

    def get_application(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.calls.append((namespace, name))
        if self.error:
            raise self.error
        return self.application


def settings(mode: str, enabled: bool = True) -> LookupSettings:
    return LookupSettings(mode=AppLookup(mode), enabled=enabled, app_name="web", namespace="argocd")


def test_fetch_annotations_returns_the_live_annotations() -> None:
    reader = StaticReader({"metadata": {"annotations": {UPDATER: "app=x/app:~1.2"}}})
    assert fetch_annotations(settings("auto"), lambda: reader) == ({UPDATER: "app=x/app:~1.2"}, [])
    assert reader.calls == [("argocd", "web")]


def test_fetch_annotations_does_not_connect_when_disabled() -> None:
    def factory() -> StaticReader:
        raise AssertionError("no API client should be built")

    assert fetch_annotations(settings("off", enabled=False), factory) == ({}, [])


def test_missing_application_is_an_error_when_on() -> None:
    with pytest.raises(AppLookupError, match="Application argocd/web does not exist"):
        fetch_annotations(settings("on"), lambda: StaticReader(None))


def test_missing_application_is_a_warning_under_auto() -> None:
    annotations, warnings = fetch_annotations(settings("auto"), lambda: StaticReader(None))
    assert annotations == {}
    assert warnings == [
        "Application argocd/web does not exist: check the app name and namespace "
        "(ARGOCD_NAMESPACE, or `<namespace>_<name>`); rendering without branch-deploy annotations"
    ]


def test_forbidden_is_a_warning_under_auto_and_an_error_when_on() -> None:
    forbidden = KubeApiError("GET … failed: 403 Forbidden", status=403)
    _, warnings = fetch_annotations(settings("auto"), lambda: StaticReader(error=forbidden))
    assert warnings == ["GET … failed: 403 Forbidden; rendering without branch-deploy annotations"]
    with pytest.raises(KubeApiError):
        fetch_annotations(settings("on"), lambda: StaticReader(error=forbidden))


def test_other_api_failures_are_errors_even_under_auto() -> None:
    # Rendering main-branch tags for a branch deploy would silently deploy the wrong images.
    failure = KubeApiError("GET … failed: 500 Internal Server Error", status=500)
    with pytest.raises(KubeApiError):
        fetch_annotations(settings("auto"), lambda: StaticReader(error=failure))


def test_no_credentials_is_an_error_when_on_and_a_warning_under_auto() -> None:
    with pytest.raises(AppLookupError, match="no Kubernetes credentials found"):
        fetch_annotations(settings("on"), lambda: None)
    _, warnings = fetch_annotations(settings("auto"), lambda: None)
    assert len(warnings) == 1 and "no Kubernetes credentials found" in warnings[0]


# --- the API client against the fake server -------------------------------------------------


def test_get_application_sends_the_token(
    fake_kube: FakeKube, kubeconfig: Path, tmp_path: Path
) -> None:
    fake_kube.add("argocd", "web", {UPDATER: "app=x/app"})
    application = api_from(kubeconfig, tmp_path).get_application("argocd", "web")
    assert application is not None
    assert application["metadata"]["annotations"] == {UPDATER: "app=x/app"}
    (request,) = fake_kube.requests
    assert request.method == "GET"
    assert request.path == "/apis/argoproj.io/v1alpha1/namespaces/argocd/applications/web"
    assert request.headers["authorization"] == f"Bearer {TOKEN}"


def test_get_application_returns_none_when_absent(
    fake_kube: FakeKube, kubeconfig: Path, tmp_path: Path
) -> None:
    assert api_from(kubeconfig, tmp_path).get_application("argocd", "nope") is None


def test_fetch_annotations_end_to_end(
    fake_kube: FakeKube, kubeconfig: Path, tmp_path: Path
) -> None:
    fake_kube.add("team-a", "web", {UPDATER: "app=x/app"})
    environ = {"KUBECONFIG": str(kubeconfig)}
    lookup = lookup_settings(
        Settings.from_environ(environ), environ, "team-a_web", serviceaccount_dir=tmp_path
    )
    annotations, warnings = fetch_annotations(
        lookup, lambda: KubeApi.from_environment(environ, serviceaccount_dir=tmp_path)
    )
    assert (annotations, warnings) == ({UPDATER: "app=x/app"}, [])


def test_forbidden_reports_the_api_message(
    fake_kube: FakeKube, kubeconfig: Path, tmp_path: Path
) -> None:
    fake_kube.add("argocd", "web")
    fake_kube.forbidden.add("web")
    with pytest.raises(KubeApiError) as caught:
        api_from(kubeconfig, tmp_path).get_application("argocd", "web")
    assert caught.value.status == 403
    message = str(caught.value)
    assert "403 Forbidden" in message
    assert 'cannot get resource "applications" in API group "argoproj.io"' in message
    assert "README" in message


def test_rejected_token_is_reported_without_the_token(fake_kube: FakeKube, tmp_path: Path) -> None:
    config = write_kubeconfig(tmp_path / "config", fake_kube.url, {"token": "wrong-token-123"})
    with pytest.raises(KubeApiError) as caught:
        api_from(config, tmp_path).get_application("argocd", "web")
    assert caught.value.status == 401
    assert "401 Unauthorized" in str(caught.value)
    assert "wrong-token-123" not in str(caught.value)


def test_unreachable_server_is_an_app_lookup_error(tmp_path: Path) -> None:
    config = write_kubeconfig(tmp_path / "config", "http://127.0.0.1:1", {"token": TOKEN})
    with pytest.raises(KubeApiError, match="cannot reach the Kubernetes API at http://127.0.0.1:1"):
        api_from(config, tmp_path).get_application("argocd", "web")


def test_list_applications_follows_continue(
    fake_kube: FakeKube, kubeconfig: Path, tmp_path: Path
) -> None:
    for name in ["a", "b", "c", "d", "e"]:
        fake_kube.add("argocd", name)
    fake_kube.add("elsewhere", "z")
    items = api_from(kubeconfig, tmp_path).list_applications("argocd", page_size=2)
    assert [item["metadata"]["name"] for item in items] == ["a", "b", "c", "d", "e"]
    paths = [request.path for request in fake_kube.requests]
    assert len(paths) == 3
    assert paths[0] == "/apis/argoproj.io/v1alpha1/namespaces/argocd/applications?limit=2"
    assert all("continue=" in path for path in paths[1:])


def test_patch_application_sends_a_merge_patch(
    fake_kube: FakeKube, kubeconfig: Path, tmp_path: Path
) -> None:
    fake_kube.add("argocd", "web", {"keep": "1", "drop": "2"})
    patch = {"metadata": {"annotations": {"drop": None, "new": "3"}}}
    updated = api_from(kubeconfig, tmp_path).patch_application("argocd", "web", patch)
    assert updated["metadata"]["annotations"] == {"keep": "1", "new": "3"}
    (request,) = fake_kube.requests
    assert request.method == "PATCH"
    assert request.headers["content-type"] == "application/merge-patch+json"
    assert request.json() == patch


def test_patch_of_a_missing_application_is_an_error(
    fake_kube: FakeKube, kubeconfig: Path, tmp_path: Path
) -> None:
    with pytest.raises(
        KubeApiError, match='404 Not Found: applications.argoproj.io "web" not found'
    ):
        api_from(kubeconfig, tmp_path).patch_application("argocd", "web", {"metadata": {}})


# --- kubeconfig -----------------------------------------------------------------------------


def test_kubeconfig_list_merges_and_uses_the_first_current_context(
    fake_kube: FakeKube, tmp_path: Path
) -> None:
    first = tmp_path / "first"
    first.write_text(
        json.dumps(
            {
                "current-context": "dev",
                "contexts": [{"name": "prod", "context": {"cluster": "nowhere", "user": "u"}}],
                "users": [{"name": "u", "user": {"token": TOKEN}}],
            }
        )
    )
    second = tmp_path / "second"
    second.write_text(
        json.dumps(
            {
                "current-context": "prod",
                "clusters": [{"name": "fake", "cluster": {"server": fake_kube.url}}],
                "contexts": [{"name": "dev", "context": {"cluster": "fake", "user": "u"}}],
                "users": [{"name": "u", "user": {"token": "shadowed-by-first-file"}}],
            }
        )
    )
    fake_kube.add("argocd", "web")
    environ = {"KUBECONFIG": f"{first}{os.pathsep}{tmp_path / 'missing'}{os.pathsep}{second}"}
    api = KubeApi.from_environment(environ, serviceaccount_dir=tmp_path)
    assert api is not None
    assert api.get_application("argocd", "web") is not None


def test_token_file_is_relative_to_the_kubeconfig(fake_kube: FakeKube, tmp_path: Path) -> None:
    (tmp_path / "token").write_text(TOKEN + "\n")
    config = write_kubeconfig(tmp_path / "config", fake_kube.url, {"tokenFile": "token"})
    fake_kube.add("argocd", "web")
    assert api_from(config, tmp_path).get_application("argocd", "web") is not None


def test_home_kubeconfig_is_the_fallback(fake_kube: FakeKube, tmp_path: Path) -> None:
    (tmp_path / ".kube").mkdir()
    write_kubeconfig(tmp_path / ".kube" / "config", fake_kube.url, {"token": TOKEN})
    fake_kube.add("argocd", "web")
    api = KubeApi.from_environment({"HOME": str(tmp_path)}, serviceaccount_dir=tmp_path / "none")
    assert api is not None
    assert api.get_application("argocd", "web") is not None


def test_no_configuration_at_all_gives_none(tmp_path: Path) -> None:
    assert KubeApi.from_environment({"HOME": str(tmp_path)}, serviceaccount_dir=tmp_path) is None


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"clusters": []}, "has no current-context"),
        ({"current-context": "x"}, "current-context 'x' is not defined"),
        (
            {"current-context": "x", "contexts": [{"name": "x", "context": {"cluster": "c"}}]},
            "names cluster 'c', which is not defined",
        ),
    ],
)
def test_broken_kubeconfig_is_explained(
    document: dict[str, Any], message: str, tmp_path: Path
) -> None:
    config = tmp_path / "config"
    config.write_text(json.dumps(document))
    with pytest.raises(AppLookupError, match=message):
        KubeApi.from_environment({"KUBECONFIG": str(config)}, serviceaccount_dir=tmp_path)


def test_kubeconfig_naming_no_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(AppLookupError, match="names no readable file"):
        KubeApi.from_environment(
            {"KUBECONFIG": str(tmp_path / "nope")}, serviceaccount_dir=tmp_path
        )


# --- exec credential plugins ----------------------------------------------------------------


CREDENTIAL_PLUGIN = """\
import json, os, sys

with open(os.environ["FAKE_LOG"], "a") as log:
    info = json.loads(os.environ["KUBERNETES_EXEC_INFO"])
    log.write(json.dumps({"info": info, "argv": sys.argv[1:]}) + "\\n")
if os.environ["FAKE_EXIT"] != "0":
    print("first line", file=sys.stderr)
    print("error: the SSO session has expired", file=sys.stderr)
    sys.exit(int(os.environ["FAKE_EXIT"]))
status = json.loads(os.environ["FAKE_STATUS"])
print(json.dumps({"apiVersion": info["apiVersion"], "kind": "ExecCredential", "status": status}))
"""


def exec_user(
    directory: Path,
    api_version: str,
    status: dict[str, Any],
    exit_code: int = 0,
    command: str = "./get-token",
) -> dict[str, Any]:
    """A kubeconfig user whose exec plugin (next to the kubeconfig) prints `status`.

    The plugin learns what to do from the kubeconfig's `env` additions and logs each call.
    """
    script = directory / "get-token"
    script.write_text(f"#!{sys.executable}\n{CREDENTIAL_PLUGIN}")
    script.chmod(0o755)
    env = {
        "FAKE_LOG": str(directory / "calls.jsonl"),
        "FAKE_EXIT": str(exit_code),
        "FAKE_STATUS": json.dumps(status),
    }
    return {
        "exec": {
            "apiVersion": api_version,
            "command": command,
            "args": ["eks", "get-token", "--cluster-name", "dev"],
            "env": [{"name": name, "value": value} for name, value in env.items()],
            "installHint": "Install the AWS CLI: https://aws.amazon.com/cli/",
            "interactiveMode": "Never",
        }
    }


@pytest.mark.parametrize(
    "api_version", ["client.authentication.k8s.io/v1", "client.authentication.k8s.io/v1beta1"]
)
def test_exec_plugin_token_is_used_and_fetched_once(
    api_version: str, fake_kube: FakeKube, tmp_path: Path
) -> None:
    status = {"token": TOKEN, "expirationTimestamp": "2099-01-01T00:00:00Z"}
    user = exec_user(tmp_path, api_version, status)
    config = write_kubeconfig(tmp_path / "config", fake_kube.url, user)
    for name in ["a", "b", "c"]:
        fake_kube.add("argocd", name)
    items = api_from(config, tmp_path).list_applications("argocd", page_size=1)
    assert len(items) == 3
    calls = [json.loads(line) for line in (tmp_path / "calls.jsonl").read_text().splitlines()]
    assert calls == [
        {
            "info": {
                "apiVersion": api_version,
                "kind": "ExecCredential",
                "spec": {"interactive": False},
            },
            "argv": ["eks", "get-token", "--cluster-name", "dev"],
        }
    ]
    assert all(r.headers["authorization"] == f"Bearer {TOKEN}" for r in fake_kube.requests)


def test_exec_plugin_failure_shows_its_last_error_line(fake_kube: FakeKube, tmp_path: Path) -> None:
    user = exec_user(tmp_path, "client.authentication.k8s.io/v1", {"token": TOKEN}, exit_code=3)
    config = write_kubeconfig(tmp_path / "config", fake_kube.url, user)
    with pytest.raises(
        AppLookupError, match="failed with exit code 3: error: the SSO session has expired"
    ):
        api_from(config, tmp_path).get_application("argocd", "web")


def test_exec_plugin_missing_shows_the_install_hint(fake_kube: FakeKube, tmp_path: Path) -> None:
    user = exec_user(
        tmp_path, "client.authentication.k8s.io/v1", {}, command="tagpin-no-such-command"
    )
    config = write_kubeconfig(tmp_path / "config", fake_kube.url, user)
    with pytest.raises(AppLookupError, match="not found on PATH. Install the AWS CLI"):
        api_from(config, tmp_path).get_application("argocd", "web")


# --- TLS: CA, client certificates, in-cluster -----------------------------------------------


def b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


@pytest.mark.parametrize("ca_form", ["file", "data"])
def test_tls_with_ca_and_token(
    ca_form: str, fake_kube_tls: FakeKube, pki: Pki, tmp_path: Path
) -> None:
    cluster = (
        {"certificate-authority": str(pki.ca_cert)}
        if ca_form == "file"
        else {"certificate-authority-data": b64(pki.ca_cert)}
    )
    config = write_kubeconfig(tmp_path / "config", fake_kube_tls.url, {"token": TOKEN}, cluster)
    fake_kube_tls.add("argocd", "web")
    assert api_from(config, tmp_path).get_application("argocd", "web") is not None


def test_tls_without_the_ca_fails_unless_verification_is_skipped(
    fake_kube_tls: FakeKube, tmp_path: Path
) -> None:
    fake_kube_tls.add("argocd", "web")
    strict = write_kubeconfig(tmp_path / "strict", fake_kube_tls.url, {"token": TOKEN})
    with pytest.raises(KubeApiError, match="CERTIFICATE_VERIFY_FAILED"):
        api_from(strict, tmp_path).get_application("argocd", "web")
    insecure = write_kubeconfig(
        tmp_path / "insecure",
        fake_kube_tls.url,
        {"token": TOKEN},
        {"insecure-skip-tls-verify": True},
    )
    assert api_from(insecure, tmp_path).get_application("argocd", "web") is not None


def test_client_certificate_files(fake_kube_tls: FakeKube, pki: Pki, tmp_path: Path) -> None:
    user = {"client-certificate": str(pki.client_cert), "client-key": str(pki.client_key)}
    cluster = {"certificate-authority": str(pki.ca_cert)}
    config = write_kubeconfig(tmp_path / "config", fake_kube_tls.url, user, cluster)
    fake_kube_tls.add("argocd", "web")
    assert api_from(config, tmp_path).get_application("argocd", "web") is not None
    (request,) = fake_kube_tls.requests
    assert request.client_certificate and "authorization" not in request.headers


@pytest.fixture
def key_data_config(
    fake_kube_tls: FakeKube, pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[Path, Path]:
    """A kubeconfig holding client key data (which tagpin must write to disk to load), and the
    empty directory standing in for the temporary directory it goes to."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    user = {"client-certificate-data": b64(pki.client_cert), "client-key-data": b64(pki.client_key)}
    cluster = {"certificate-authority-data": b64(pki.ca_cert)}
    return write_kubeconfig(tmp_path / "config", fake_kube_tls.url, user, cluster), scratch


def test_client_certificate_data_goes_to_private_files_removed_on_close(
    fake_kube_tls: FakeKube, key_data_config: tuple[Path, Path], tmp_path: Path
) -> None:
    config, scratch = key_data_config
    fake_kube_tls.add("argocd", "web")
    with api_from(config, tmp_path) as api:
        assert api.get_application("argocd", "web") is not None
        (key_file,) = scratch.glob("tagpin-kube-*/client.key")
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        assert stat.S_IMODE(key_file.parent.stat().st_mode) == 0o700
    assert list(scratch.iterdir()) == []


def test_a_lookup_removes_its_client_key_before_returning(
    fake_kube_tls: FakeKube, key_data_config: tuple[Path, Path], tmp_path: Path
) -> None:
    """`tagpin generate` ends with os._exit (no interpreter teardown), so no finalizer would
    remove a key written for the lookup: fetch_annotations must."""
    config, scratch = key_data_config
    fake_kube_tls.add("argocd", "web", annotations={UPDATER: "app=x/app:~1.2"})
    apis: list[KubeApi] = []

    def factory() -> KubeApi:
        apis.append(api_from(config, tmp_path))
        return apis[-1]

    assert fetch_annotations(settings("on"), factory) == ({UPDATER: "app=x/app:~1.2"}, [])
    assert apis and list(scratch.iterdir()) == []


def test_exec_plugin_client_certificate(fake_kube_tls: FakeKube, pki: Pki, tmp_path: Path) -> None:
    status = {
        "clientCertificateData": pki.client_cert.read_text(),
        "clientKeyData": pki.client_key.read_text(),
    }
    user = exec_user(tmp_path, "client.authentication.k8s.io/v1", status)
    cluster = {"certificate-authority": str(pki.ca_cert)}
    config = write_kubeconfig(tmp_path / "config", fake_kube_tls.url, user, cluster)
    fake_kube_tls.add("argocd", "web")
    with api_from(config, tmp_path) as api:
        assert api.get_application("argocd", "web") is not None
    (request,) = fake_kube_tls.requests
    assert request.client_certificate and "authorization" not in request.headers


def test_in_cluster_uses_the_service_account_and_rereads_the_token(
    fake_kube_tls: FakeKube, pki: Pki, serviceaccount_dir: Path
) -> None:
    (serviceaccount_dir / "ca.crt").write_bytes(pki.ca_cert.read_bytes())
    host, port = fake_kube_tls.url.removeprefix("https://").split(":")
    environ = {"KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": port}
    fake_kube_tls.add("argo-system", "web", {UPDATER: "app=x/app"})
    lookup = lookup_settings(
        Settings.from_environ(environ),
        {**environ, "ARGOCD_APP_NAME": "web"},
        serviceaccount_dir=serviceaccount_dir,
    )
    api = KubeApi.from_environment(environ, serviceaccount_dir=serviceaccount_dir)
    assert api is not None
    assert fetch_annotations(lookup, lambda: api) == ({UPDATER: "app=x/app"}, [])

    # kubelet rotates projected tokens in place
    fake_kube_tls.token = "rotated-token"
    (serviceaccount_dir / "token").write_text("rotated-token")
    assert api.get_application("argo-system", "web") is not None
    assert [r.headers["authorization"] for r in fake_kube_tls.requests] == [
        f"Bearer {TOKEN}",
        "Bearer rotated-token",
    ]


# --- bounds on what the API server sends ----------------------------------------------------


def test_a_list_page_too_large_is_asked_again_in_smaller_pages(
    fake_kube: FakeKube, kubeconfig: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Applications with a large status make a page of 250 huge: tagpin reads at most
    MAX_RESPONSE_BYTES of an answer, and halves the page until one fits."""
    import cmp.argocd.kube as kube

    for name in ["a", "b", "c", "d", "e"]:
        fake_kube.add("argocd", name)["status"] = {"history": ["x" * 400]}
    monkeypatch.setattr(kube, "MAX_RESPONSE_BYTES", 1500)
    items = api_from(kubeconfig, tmp_path).list_applications("argocd", page_size=8)
    assert [item["metadata"]["name"] for item in items] == ["a", "b", "c", "d", "e"]
    limits = [r.path.split("limit=")[1].split("&")[0] for r in fake_kube.requests]
    assert limits[:3] == ["8", "4", "2"] and set(limits[3:]) == {"2"}


def test_one_application_nested_too_deeply_is_left_out_of_a_list_and_refused_alone(
    fake_kube: FakeKube, kubeconfig: Path, tmp_path: Path
) -> None:
    fake_kube.add("argocd", "good")
    deep = '{"a":' * 2000 + "1" + "}" * 2000
    fake_kube.add_raw(
        "argocd", "evil", '{"metadata":{"name":"evil","namespace":"argocd"},"spec":' + deep + "}"
    )
    api = api_from(kubeconfig, tmp_path)
    listed = api.list_applications("argocd")
    assert [item["metadata"]["name"] for item in listed] == ["good"]
    [skipped] = listed.unreadable
    assert skipped.describe("argocd") == "argocd/evil"
    with pytest.raises(AppLookupError, match=r"applications/evil: tagpin cannot read the API"):
        api.get_application("argocd", "evil")
    assert api.get_application("argocd", "good") is not None
