"""Whether and where a render reads the live Argo CD Application (TAGPIN_APP_LOOKUP).

Kept apart from cmp/argocd/kube.py so a render that will not look anything up decides so without
importing the Kubernetes client (Argo CD starts a new process for every render).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

from cmp.errors import ConfigError
from cmp.settings import AppLookup, Settings

SERVICEACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
DEFAULT_NAMESPACE = "argocd"


class LookupSettings(NamedTuple):
    """Whether and where to read the live Application, resolved from the environment."""

    mode: AppLookup  # as requested
    enabled: bool  # the decision: auto resolved to on or off
    app_name: str  # the Application's metadata.name ("" when no app name is known)
    namespace: str  # the namespace the Application lives in

    @property
    def required(self) -> bool:
        """Failures are errors when the user asked for lookup, warnings under `auto`."""
        return self.mode is AppLookup.ON

    @property
    def where(self) -> str:
        return f"Application {self.namespace}/{self.app_name}"


def in_cluster(environ: Mapping[str, str], serviceaccount_dir: Path = SERVICEACCOUNT_DIR) -> bool:
    """True inside a pod with a mounted service-account token (the CMP sidecar)."""
    return bool(
        environ.get("KUBERNETES_SERVICE_HOST")
        and environ.get("KUBERNETES_SERVICE_PORT")
        and (serviceaccount_dir / "token").is_file()
    )


def lookup_settings(
    settings: Settings,
    environ: Mapping[str, str],
    app_name: str = "",
    serviceaccount_dir: Path = SERVICEACCOUNT_DIR,
) -> LookupSettings:
    """Apply TAGPIN_APP_LOOKUP and the namespace rules.

    `app_name` is the name the caller resolved (`--app-name`); empty means ARGOCD_APP_NAME. Argo CD
    names an app outside its own namespace `<namespace>_<name>`; `_` cannot occur in a Kubernetes
    name, so that form names both. Otherwise the namespace is ARGOCD_NAMESPACE, else the service
    account's namespace (the repo-server runs in Argo CD's namespace), else `argocd`.
    """
    mode = settings.app_lookup
    full_name = (app_name or environ.get("ARGOCD_APP_NAME") or "").strip()
    namespace, _, name = full_name.rpartition("_")
    if not namespace:
        namespace = (
            environ.get("ARGOCD_NAMESPACE", "").strip()
            or read_text(serviceaccount_dir / "namespace")
            or DEFAULT_NAMESPACE
        )
    if mode is AppLookup.ON and not name:
        raise ConfigError(
            "TAGPIN_APP_LOOKUP=on but no app name is known: pass --app-name or set ARGOCD_APP_NAME"
        )
    if mode is AppLookup.AUTO:
        enabled = bool(name) and (
            in_cluster(environ, serviceaccount_dir) or bool(environ.get("KUBECONFIG"))
        )
    else:
        enabled = mode is AppLookup.ON
    return LookupSettings(mode=mode, enabled=enabled, app_name=name, namespace=namespace)


def read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError:
        return ""
