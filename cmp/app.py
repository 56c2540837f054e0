"""The composition root: load → render → parse → pin images → emit, for one RenderRequest.

I/O that tests swap (ECR, the digest cache, the Kubernetes API) is passed in as `Services`;
`Services.from_environment` builds the real ones. Nothing here prints: the CLI does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from . import values as values_mod
from .emit import emit_stream
from .manifests import Manifest, parse_rendered
from .render import build_context, render_all
from .request import RenderRequest
from .settings import setting_int
from .sources import AppSource, Limits, load_app


@dataclass
class RenderResult:
    text: str
    manifests: list[Manifest]
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # human summary (overrides applied)


def limits_from(environ: Mapping[str, str]) -> Limits:
    return Limits(
        max_file_bytes=setting_int(environ, "TAGPIN_MAX_FILE_BYTES", minimum=1),
        max_output_bytes=setting_int(environ, "TAGPIN_MAX_OUTPUT_BYTES", minimum=1),
        max_yaml_nodes=setting_int(environ, "TAGPIN_MAX_YAML_NODES", minimum=1),
    )


def layered_values(source: AppSource, parameters: Mapping[str, Any]) -> dict[str, Any]:
    """values.yaml < tagpin.yaml valuesFiles < `values-files` parameter < `values` parameter."""
    merged = values_mod.layer(values for _, values in source.values_layers)
    return values_mod.set_dotted(merged, parameters.get("values") or {}, "plugin parameter 'values'")


def render_manifests(request: RenderRequest, limits: Limits) -> tuple[AppSource, list[Manifest]]:
    """The pure part: files in, checked Kubernetes objects out (images not yet pinned)."""
    source = load_app(request.app_dir, request.repo_root,
                      list(request.parameters.get("values-files") or []), limits)
    context = build_context(
        values=layered_values(source, request.parameters),
        app=request.app.context(),
        env=request.env,
        params=request.parameters,
        kube=request.kube,
    )
    rendered = render_all(source, request.app_dir, context, limits)
    manifests = parse_rendered(rendered, default_namespace=request.app.namespace,
                               max_nodes=limits.max_yaml_nodes)
    return source, manifests


def run(request: RenderRequest) -> RenderResult:
    limits = limits_from(request.settings_env)
    _source, manifests = render_manifests(request, limits)
    return RenderResult(text=emit_stream(m.body for m in manifests), manifests=manifests)
