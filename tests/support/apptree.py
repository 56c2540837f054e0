"""Inline app trees for tests (copier-style `{path: content}` dicts) and one-call renders.

Tests describe an app as a dict of files, build it under tmp_path and render it in-process
through `cmp.pipeline`, or through the real CLI in a subprocess when stdout and exit codes matter.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from cmp.output import Output
from cmp.pipeline import RenderResult, run
from cmp.registry.names import EcrRepository
from cmp.request import AppInfo, KubeInfo, RenderRequest
from cmp.services import Services
from cmp.settings import Settings, parse_parameters
from cmp.source.manifests import Manifest
from cmp.source.render import render_app
from tests.support.cli import tagpin
from tests.support.static_registry import StaticRegistry

# The smallest valid app: a marker file and one plain manifest.
MINIMAL_APP: dict[str, str | bytes] = {
    "tagpin.yaml": "{}\n",
    "templates/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm\n",
}


def build_tree(
    root: Path, files: Mapping[str, str | bytes], order: Iterable[str] | None = None
) -> Path:
    """Write `files` (POSIX relative path → text or bytes) under `root`; returns `root`.

    Content is written exactly as given. `order` fixes the creation order
    (directory listings follow it on most file systems), for file-system order tests.
    """
    root.mkdir(parents=True, exist_ok=True)
    for relative in order if order is not None else files:
        content = files[relative]
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    return root


def cm(name: str, **data: str) -> str:
    """A ConfigMap manifest as YAML text (double-quoted values)."""
    lines = ["apiVersion: v1", "kind: ConfigMap", "metadata:", f"  name: {name}"]
    if data:
        lines.append("data:")
        lines += [f"  {key}: {value}" for key, value in data.items()]
    return "\n".join(lines) + "\n"


def parameters(**by_name: Any) -> dict[str, Any]:
    """Plugin parameters with defaults applied: parameters(values={"a": "1"})."""
    merged = parse_parameters(None)
    merged.update({name.replace("_", "-"): value for name, value in by_name.items()})
    return merged


def make_request(
    app_dir: Path,
    repo_root: Path | None = None,
    *,
    app: AppInfo | None = None,
    kube: KubeInfo | None = None,
    env: Mapping[str, str] | None = None,
    params: Mapping[str, Any] | None = None,
    settings_env: Mapping[str, str] | None = None,
) -> RenderRequest:
    # The test's own cache directory (tests/conftest.py), never the machine's: compiled and
    # rendered templates are kept there.
    private = {k: v for k, v in os.environ.items() if k == "TAGPIN_CACHE_DIR"}
    configured = {**private, **(settings_env or {})}
    return RenderRequest(
        app_dir=app_dir,
        repo_root=repo_root if repo_root is not None else app_dir,
        app=app or AppInfo(),
        kube=kube or KubeInfo(),
        env=dict(env or {}),
        parameters=dict(params) if params is not None else parameters(),
        settings_env=configured,
        settings=Settings.from_environ(configured),
    )


def render_dir(
    app_dir: Path,
    repo_root: Path | None = None,
    *,
    registry: Mapping[EcrRepository, Mapping[str, str]] | None = None,
    **request_fields: Any,
) -> RenderResult:
    """Run the whole pipeline in-process; ECR answers from `registry` ({repo: {tag: digest}})."""
    static = StaticRegistry.of_digests(registry or {})
    return run(make_request(app_dir, repo_root, **request_fields), Services(ecr=lambda *_: static))


def render_text(app_dir: Path, repo_root: Path | None = None, **request_fields: Any) -> str:
    return render_dir(app_dir, repo_root, **request_fields).text


def manifests_of(
    app_dir: Path, repo_root: Path | None = None, **request_fields: Any
) -> list[Manifest]:
    """Load → render → parse only (no image pinning): the objects an app produces."""
    request = make_request(app_dir, repo_root, **request_fields)
    return render_app(request, None, Output()).manifests


def bodies(app_dir: Path, repo_root: Path | None = None, **request_fields: Any) -> list[Any]:
    return [m.body for m in manifests_of(app_dir, repo_root, **request_fields)]


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """A minimal subprocess environment: no AWS, no ARGOCD_* leaking from the test runner."""
    # TAGPIN_CACHE_DIR: the test's own (tests/conftest.py), which holds the render slots too,
    # never the machine's, which other test runs and renders share.
    kept = ("PATH", "HOME", "SYSTEMROOT", "TAGPIN_CACHE_DIR")
    env = {key: os.environ[key] for key in kept if key in os.environ}
    env.update({"TAGPIN_APP_LOOKUP": "off", "TAGPIN_CACHE": "off"})
    env.update(extra or {})
    return env


def run_cli(
    args: Sequence[str], *, cwd: Path | None = None, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    """`tagpin ARGS` in a subprocess with a minimal environment (`clean_env`), bytes out."""
    return tagpin(*args, cwd=cwd, env=clean_env(env), binary=True)
