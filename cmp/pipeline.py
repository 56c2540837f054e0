"""The composition root: load → render → parse → pin images → emit, for one RenderRequest.

I/O that tests swap (ECR, the digest cache, the Kubernetes API) is passed in as `Services`
(cmp/services.py builds the real ones from the settings). Nothing here prints: the commands do.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cmp.errors import LockError, ResolveError, TagpinError, TemplateError
from cmp.request import RenderRequest
from cmp.services import (
    Services,
    limits_from,
    lock_only_source,
    registry_for,
    services_from,
    template_cache_dir,
)
from cmp.settings import IMAGE_UPDATER_PREFIX
from cmp.source import values as values_mod
from cmp.source.appdir import AppSource, Limits, load_app
from cmp.source.emit import emit_stream
from cmp.source.manifests import Manifest, parse_rendered
from cmp.source.streamend import unterminated_block
from cmp.source.streamend import warning as unterminated_warning
from cmp.source.templates import TEMPLATE_NOT_FOUND, RenderedFile, build_context, render_all

SCHEMA_FILE = "values.schema.json"  # cmp.source.schema checks values against it (Helm's name)

if TYPE_CHECKING:
    from cmp.images.fields import ImageField
    from cmp.images.pin import ImageRules, TagChooser, Wanted
    from cmp.registry.base import Registry, TagInfo
    from cmp.source.yamlread import Misread


class RenderResult:
    """The YAML to print, the objects it holds, and what to say on stderr."""

    __slots__ = ("manifests", "notes", "text", "warnings")

    def __init__(
        self,
        text: str,
        manifests: list[Manifest],
        warnings: list[str] | None = None,
        notes: list[str] | None = None,
    ) -> None:
        self.text = text
        self.manifests = manifests
        self.warnings = warnings if warnings is not None else []
        self.notes = notes if notes is not None else []  # human summary (overrides applied)


def layered_values(source: AppSource, request: RenderRequest) -> dict[str, Any]:
    """values.yaml < tagpin.yaml valuesFiles < `values-files` parameter < `values` parameter
    (named as the request's command names it: `--set` at the CLI)."""
    merged = values_mod.layer(values for _, values in source.values_layers)
    return values_mod.set_dotted(
        merged, request.parameters.get("values") or {}, request.words.values
    )


def values_of(request: RenderRequest) -> dict[str, Any]:
    """The values a render of `request` sees (every layer), without rendering anything."""
    source = load_app(
        request.app_dir,
        request.repo_root,
        list(request.parameters.get("values-files") or []),
        limits_from(request.settings),
    )
    return layered_values(source, request)


def render_manifests(
    request: RenderRequest,
    limits: Limits,
    bytecode_dir: Path | None = None,
    warnings: list[str] | None = None,
) -> tuple[AppSource, list[Manifest]]:
    """The pure part: files in, checked Kubernetes objects out (images not yet pinned).
    `bytecode_dir` optionally keeps compiled templates between processes; kustomize's
    warnings go to `warnings`."""
    source = load_app(
        request.app_dir,
        request.repo_root,
        list(request.parameters.get("values-files") or []),
        limits,
    )
    if source.config.kustomize is None:
        return source, _render_templates(request, source, limits, bytecode_dir, warnings)
    from cmp.source.kustomize import build, refuse_values

    refuse_values(request.parameters)
    built = build(
        source.files,
        request.app_dir,
        source.config.kustomize,
        request.settings,
        request.settings_env,
        limits,
        meanwhile=_import_pinning,
        warnings=warnings,
    )
    if warnings is not None:
        warnings.extend(unterminated_blocks([built]))
    manifests = parse_rendered(
        [built],
        default_namespace=request.app.namespace,
        max_nodes=limits.max_yaml_nodes,
        warnings=warnings,
    )
    return source, manifests


def _render_templates(
    request: RenderRequest,
    source: AppSource,
    limits: Limits,
    bytecode_dir: Path | None,
    warnings: list[str] | None,
) -> list[Manifest]:
    """A template app's objects; refused when an image depends on how YAML read a value."""
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
        values: Mapping[str, Any],
        as_data: Callable[[Any], Any] | None = None,
        *,
        again: bool = False,
    ) -> list[RenderedFile]:
        context = build_context(
            values=values,
            app=request.app.context(),
            env=request.env,
            params=request.parameters,
            kube=request.kube,
        )
        said = [] if again else warnings  # a second render's warnings were said by the first
        return render_all(source, request.app_dir, context, limits, bytecode_dir, said, as_data)

    try:
        rendered = render(values)
    except TemplateError as error:
        if not (
            request.root_guessed
            and any(TEMPLATE_NOT_FOUND in problem for problem in error.problems)
        ):
            raise
        raise TemplateError(
            *error.problems,
            (
                f"no .git was found above {request.app_dir}, so the repository root is the app "
                "directory itself and nothing above it can be included; pass --repo-root "
                "(the directory Argo CD's source path is relative to)"
            ),
        ) from error
    if warnings is not None:
        warnings.extend(unterminated_blocks(rendered))
    manifests = parse_rendered(
        rendered,
        default_namespace=request.app.namespace,
        max_nodes=limits.max_yaml_nodes,
        warnings=warnings,
    )
    misread = [
        *source.values_misread,
        *values_mod.misread_assignments(
            request.parameters.get("values") or {}, request.words.values
        ),
    ]
    if misread:
        from cmp.images.misread import refuse_misread_images
        from cmp.source.aswritten import as_data, as_written

        def as_they_were_written(involved: Sequence[Misread]) -> list[Manifest]:
            return parse_rendered(
                render(as_written(values, involved), as_data, again=True),
                default_namespace=request.app.namespace,
                max_nodes=limits.max_yaml_nodes,
                warnings=[],
            )

        refuse_misread_images(manifests, image_rules(source).paths, misread, as_they_were_written)
    return manifests


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


def _import_pinning() -> None:
    """Run while kustomize builds: the pinning stage's imports (~40 ms in a fresh process)
    then cost no wall time on a machine with a spare core."""
    from cmp.images import pin  # noqa: F401
    from cmp.registry import cache  # noqa: F401


def tag_chooser(request: RenderRequest, services: Services) -> TagChooser:
    """Branch deploys: Image Updater overrides from the `image-updater` parameter and the live
    Application. Asked only when some ECR image needs a digest, before any is looked up: the
    same read brings the pushes the webhook announced (cmp.registry.pushes), which the caches
    honour."""

    def choose(
        wanted: Sequence[Wanted], registry: Callable[[], Registry]
    ) -> Mapping[ImageField, TagInfo]:
        annotations: dict[str, str] = {}
        if services.annotations is not None:
            annotations, warnings = services.annotations(request)
            services.warnings.extend(warnings)
            if services.pushes is not None:
                services.warnings.extend(services.pushes.announce_annotations(annotations))
        parameter = request.parameters.get("image-updater") or {}
        if not parameter and not any(key.startswith(IMAGE_UPDATER_PREFIX) for key in annotations):
            return {}  # production apps: skip loading the semver/override machinery
        from cmp.imageupdater import plan as branch_deploy

        # typos fail here
        policies = branch_deploy.policies_from(annotations, parameter, request.words.image_updater)
        # Said before the plan can fail: a warning often explains the failure.
        services.warnings.extend(branch_deploy.policy_warnings(policies))
        if not policies:
            return {}
        try:
            plan = branch_deploy.plan(
                [(w.field, w.repository, w.ref.repository, w.tag) for w in wanted],
                policies,
                registry,
            )
        except ResolveError as error:
            only = lock_only_source(request, services)
            if only is None:
                raise
            raise type(error)(
                *error.problems,
                (
                    f"the candidate tags came from {only} only: ECR is never listed there, so a "
                    "branch's new tags are not seen; branch deploys need TAGPIN_LOCK=use (or a "
                    "lock holding the branch's tags)"
                ),
            ) from error
        services.warnings.extend(plan.warnings)
        services.notes.extend(branch_deploy.annotate(plan.overrides))
        return plan.chosen

    return choose


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


def image_rules(source: AppSource) -> ImageRules:
    """tagpin.yaml's `images` settings, parsed; errors name tagpin.yaml."""
    from cmp.images.fields import parse_image_paths
    from cmp.images.pin import ImageRules

    config = source.config
    return ImageRules(
        paths=parse_image_paths(list(config.image_paths or []), "tagpin.yaml"),
        require_digests=config.require_digests,
        allow_unpinned=config.allow_unpinned,
    )


def run(request: RenderRequest, services: Services | None = None) -> RenderResult:
    services = services or services_from(request)
    limits = limits_from(request.settings)
    try:
        source, manifests = render_manifests(
            request,
            limits,
            template_cache_dir(request.settings, request.settings_env),
            services.warnings,
        )
        rules = image_rules(source)
    except TagpinError as error:
        error.warnings = [*services.warnings, *error.warnings]  # they often explain it
        raise
    services.warnings.extend(repeated_layers(source))
    return pin_and_emit(
        manifests,
        rules,
        request,
        services,
        registry_for(request, services),
        values=lambda: layered_values(source, request),
    )


def pin_and_emit(
    manifests: list[Manifest],
    rules: ImageRules,
    request: RenderRequest,
    services: Services,
    registry_factory: Callable[[], Registry],
    values: Callable[[], Mapping[str, Any]] | None = None,
) -> RenderResult:
    """The end every render shares, an app's and `tagpin pin`'s: pin the images, name those
    left unpinned (on stderr), emit. `values` (an app's) explain a tag that is a number."""
    from cmp.images.pin import pin

    try:
        report = pin(
            manifests,
            rules=rules,
            registry_factory=registry_factory,
            concurrency=services.concurrency,
            choose_tags=tag_chooser(request, services),
        )
    except TagpinError as error:
        failure = error
        if values is not None and isinstance(error, (ResolveError, LockError)):
            from cmp.source.hints import with_number_hints

            failure = with_number_hints(error, values())
        failure.warnings = [*services.warnings, *error.warnings]  # the CLI prints them too
        if failure is error:
            raise
        raise failure from error
    services.warnings.extend(report.notices())
    return RenderResult(
        text=emit_stream(m.body for m in manifests),
        manifests=manifests,
        warnings=services.warnings,
        notes=services.notes,
    )
