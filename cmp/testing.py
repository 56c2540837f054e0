"""Render an app in your own tests, offline: digests come from its tagpin.lock, never from ECR.

    from cmp.testing import render_app

    def test_web(snapshot):
        assert render_app("deploy/web", app_name="web", namespace="shop") == snapshot

The output is byte for byte what `tagpin render` (and the Argo CD sidecar, given the same
inputs) prints. No AWS configuration is needed or read: an ECR tag missing from the lock
raises `cmp.errors.LockError` naming it, so a snapshot can never depend on ECR's state.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from cmp.errors import LockError
from cmp.pipeline import run
from cmp.registry.base import Registry
from cmp.request import AppInfo, KubeInfo, for_directory, parameters_json, parse_api_versions
from cmp.services import Services
from cmp.settings import DEFAULT_SETTINGS, AppLookup, CacheMode, LockMode, parse_parameters


def render_app(
    app_dir: str | os.PathLike[str],
    *,
    app_name: str = "",
    namespace: str = "",
    project: str = "",
    revision: str = "",
    repo_url: str = "",
    target_revision: str = "",
    values_files: Sequence[str] = (),
    values: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
    digests: str | os.PathLike[str] | None = None,
    kube_version: str = "",
    api_versions: Sequence[str] = (),
    repo_root: str | os.PathLike[str] | None = None,
) -> str:
    """The canonical YAML `tagpin render` prints for these inputs, rendered without ECR.

    app_dir:      the app directory (holding tagpin.yaml).
    app_name:     ARGOCD_APP_NAME (`name` or `<app namespace>_<name>`); `app.name` in templates.
    namespace:    the destination namespace (`app.namespace`, and the default for objects).
    values_files: the `values-files` plugin parameter, relative to app_dir, layered in order.
    values:       the `values` plugin parameter: dotted keys to strings, like `--set`
                  (`{"image.tag": "v2", "replicas": "8"}`), as Argo CD sends them.
    env:          the Application's plugin env, without the ARGOCD_ENV_ prefix.
    digests:      a lock file to take digests from instead of app_dir/tagpin.lock.
    repo_root:    how far templates may reach; default the nearest ancestor holding `.git`.

    Raises a `cmp.errors.TagpinError` subclass (with `.problems` and `.exit_status`) when the
    render fails, `LockError` when an ECR tag is not in the lock.
    """
    request = for_directory(
        app_dir,
        repo_root=repo_root,
        app=AppInfo(
            instance=app_name,
            namespace=namespace,
            project=project,
            revision=revision,
            repo_url=repo_url,
            target_revision=target_revision,
        ),
        kube=KubeInfo(
            version=kube_version, api_versions=parse_api_versions(",".join(api_versions))
        ),
        env=env or {},
        parameters=parse_parameters(parameters_json(values_files, values)),
        # The defaults, whatever TAGPIN_* the test process has, no cache on disk and no live
        # Application: a snapshot test reads nothing but the app and writes nothing at all;
        # digests come from the lock alone.
        settings_env={},
        settings=DEFAULT_SETTINGS._replace(
            cache=CacheMode.OFF, lock=LockMode.STRICT, app_lookup=AppLookup.OFF
        ),
    )
    if digests:
        request = request._replace(digests=Path(os.path.abspath(digests)))
    return run(request, Services(ecr=_no_registry)).text


def _no_registry(*_: object) -> Registry:
    # Strict lock mode never builds the fallback registry; this only guards that promise.
    raise LockError("render_app never asks ECR; add the image to tagpin.lock with `tagpin lock`")
