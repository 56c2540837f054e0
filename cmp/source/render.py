"""An app directory rendered into checked Kubernetes objects (images not yet pinned): tagpin.yaml,
the values layers, Jinja2 templates or kustomize, then the YAML parsed and checked. The first
stage of a render; `tagpin pin`'s is reading a stream (cmp/source/stream.py).

Everything a render says along the way is a warning: kustomize's, a plain file's Jinja2, a key
given twice, a block scalar at the very end of a file, a values file layered twice.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from cmp.errors import TemplateError
from cmp.output import Output
from cmp.request import RenderRequest
from cmp.source import values as values_mod
from cmp.source.appdir import TEMPLATE_DIR, AppSource, Limits, load_app, stray_manifests
from cmp.source.context import build_context
from cmp.source.manifests import Manifest, parse_rendered
from cmp.source.streamend import unterminated_block
from cmp.source.streamend import warning as unterminated_warning
from cmp.source.templates import TEMPLATE_NOT_FOUND, RenderedFile, render_all
from cmp.source.yamlread import Misread

SCHEMA_FILE = "values.schema.json"  # cmp.source.schema checks values against it (Helm's name)


class RenderedApp(NamedTuple):
    """An app's objects, and what the later stages ask of the app that made them."""

    source: AppSource
    manifests: list[Manifest]
    values: Mapping[str, Any]  # every layer applied ({} for a Kustomize app)
    # Values YAML read unlike their text (`tag: 1.10` is 1.1), and how to render the app again
    # with them printing as written: cmp.images.misread compares the two renders' images.
    misread: Sequence[Misread] = ()
    as_written: Callable[[Sequence[Misread]], list[Manifest]] | None = None


def limits_from(request: RenderRequest) -> Limits:
    settings = request.settings
    return Limits(
        max_file_bytes=settings.max_file_bytes,
        max_output_bytes=settings.max_output_bytes,
        max_yaml_nodes=settings.max_yaml_nodes,
    )


def load_request_app(request: RenderRequest) -> AppSource:
    """The app directory of `request` read (tagpin.yaml, values files, the template list)."""
    return load_app(
        request.app_dir,
        request.repo_root,
        list(request.parameters.get("values-files") or []),
        limits_from(request),
    )


def layered_values(source: AppSource, request: RenderRequest) -> dict[str, Any]:
    """values.yaml < tagpin.yaml valuesFiles < `values-files` parameter < `values` parameter
    (named as the request's command names it: `--set` at the CLI)."""
    merged = values_mod.layer(values for _, values in source.values_layers)
    return values_mod.set_dotted(
        merged, request.parameters.get("values") or {}, request.words.values
    )


def render_app(
    request: RenderRequest,
    bytecode_dir: Path | None,
    output: Output,
    meanwhile: Callable[[], None] | None = None,
) -> RenderedApp:
    """Files in, checked Kubernetes objects out. `bytecode_dir` optionally keeps compiled
    templates between processes; `meanwhile` runs while kustomize works (on another core)."""
    warnings = output.warnings
    source = load_request_app(request)
    limits = limits_from(request)
    if source.config.kustomize is None:
        return _render_templates(request, source, limits, bytecode_dir, warnings)
    from cmp.source.kustomize import checked_kustomization, refuse_values, run_kustomize

    refuse_values(request.parameters)
    built = run_kustomize(
        source.files,
        request.app_dir,
        checked_kustomization(source.files, request.app_dir, request.settings),
        source.config.kustomize,
        request.settings,
        request.settings_env,
        limits,
        meanwhile,
        warnings,
    )
    warnings.extend(unterminated_blocks([built]))
    manifests = parse_rendered(
        [built],
        default_namespace=request.app.namespace,
        max_nodes=limits.max_yaml_nodes,
        warnings=warnings,
    )
    return RenderedApp(source, manifests, {})


def _render_templates(
    request: RenderRequest,
    source: AppSource,
    limits: Limits,
    bytecode_dir: Path | None,
    warnings: list[str],
) -> RenderedApp:
    values = layered_values(source, request)
    schema_path = request.app_dir / SCHEMA_FILE
    if os.path.lexists(schema_path):  # jsonschema is imported only for apps that have one
        from cmp.source.schema import check_values

        check_values(
            source.files,
            schema_path,
            source.values_layers,
            request.parameters.get("values") or {},
            values,
            assigned_by=request.words.values,
        )

    def render(
        values: Mapping[str, Any], as_data: Callable[[Any], Any] | None, said: list[str]
    ) -> list[Manifest]:
        context = build_context(
            values=values,
            app=request.app.context(),
            env=request.env,
            params=request.parameters,
            kube=request.kube,
        )
        try:
            rendered = render_all(
                source, request.app_dir, context, limits, bytecode_dir, said, as_data
            )
        except TemplateError as error:
            raise _with_root_hint(error, request) from error
        said.extend(unterminated_blocks(rendered))
        return parse_rendered(
            rendered,
            default_namespace=request.app.namespace,
            max_nodes=limits.max_yaml_nodes,
            warnings=said,
        )

    manifests = render(values, None, warnings)
    warnings.extend(repeated_layers(source))
    warnings.extend(stray_warnings(source, request.app_dir))

    def as_written(involved: Sequence[Misread]) -> list[Manifest]:
        from cmp.source.aswritten import as_data
        from cmp.source.aswritten import as_written as written

        # A second render's warnings were said by the first.
        return render(written(values, involved), as_data, [])

    misread = [
        *source.values_misread,
        *values_mod.misread_assignments(
            request.parameters.get("values") or {}, request.words.values
        ),
    ]
    return RenderedApp(source, manifests, values, misread, as_written)


def _with_root_hint(error: TemplateError, request: RenderRequest) -> TemplateError:
    """A template included from above the app is "not found" when the app directory had to be
    taken as the repository root: say so, and how to give the real one."""
    if not (
        request.root_guessed and any(TEMPLATE_NOT_FOUND in problem for problem in error.problems)
    ):
        return error
    return TemplateError(
        *error.problems,
        (
            f"no .git was found above {request.app_dir}, so the repository root is the app "
            "directory itself and nothing above it can be included; pass --repo-root "
            "(the directory Argo CD's source path is relative to)"
        ),
    )


def unterminated_blocks(rendered: Sequence[RenderedFile]) -> list[str]:
    """A warning per file whose last block scalar has no line break after it: readers differ
    on its value (cmp/source/streamend.py). Costs nothing for a file ending in a line break."""
    found = []
    for item in rendered:
        line = unterminated_block(item.text)
        if line is not None:
            where = (item.locate(line, 1) if item.locate else None) or f"{item.name}:{line}"
            found.append(unterminated_warning(where))
    return found


def stray_warnings(source: AppSource, app_dir: Path) -> list[str]:
    """A Kubernetes object in a file next to templates/ is not deployed: say so, since the
    file's being there says the user thinks it is."""
    return [
        f"{name}: not rendered: it holds a Kubernetes object, and a tagpin app renders only the "
        f"files under {TEMPLATE_DIR}/; move it there to deploy it"
        for name in stray_manifests(source.files, app_dir, (n for n, _ in source.values_layers))
    ]


def repeated_layers(source: AppSource) -> list[str]:
    """A values file layered twice (`values.yaml` named again in `values-files`, say) puts its
    values back over every layer between, silently undoing them."""
    names = [name for name, _ in source.values_layers]
    return [
        f"values file {name} is layered {names.count(name)} times (values.yaml always comes "
        "first, then tagpin.yaml's valuesFiles, then the values-files parameter); a later "
        "copy puts its values back over the layers between, so list it once"
        for name in sorted(set(names))
        if names.count(name) > 1
    ]
