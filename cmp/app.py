"""The composition root: load → render → parse → pin images → emit, for one RenderRequest.

I/O that tests swap (ECR, the digest cache, the Kubernetes API) is passed in as `Services`;
`Services.from_environment` builds the real ones. Nothing here prints: the CLI does.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import values as values_mod
from .emit import emit_stream
from .errors import LockError, ResolveError, TagpinError, TemplateError
from .manifests import Manifest, parse_rendered
from .render import TEMPLATE_NOT_FOUND, build_context, render_all
from .request import RenderRequest
from .settings import (
    IMAGE_UPDATER_PREFIX,
    LOCK_FILE,
    LOCK_MODES,
    setting_choice,
    setting_int,
)
from .sources import AppSource, Limits, load_app

SCHEMA_FILE = "values.schema.json"  # cmp.schema checks values against it (Helm's name)

CACHE_MODES = ("on", "off", "refresh")  # TAGPIN_CACHE; see cmp.registry.cache.CacheMode

if TYPE_CHECKING:
    from .images import ImageField, ImagePath
    from .lock import LockMode
    from .pin import TagChooser, Wanted
    from .pushes import PushFloors
    from .registry.base import Registry, TagInfo

# The live Application's annotations (and warnings) for a request; swapped in tests.
AnnotationSource = Callable[[RenderRequest], tuple[dict[str, str], list[str]]]


class RenderResult:
    """The YAML to print, the objects it holds, and what to say on stderr."""

    __slots__ = ("manifests", "notes", "text", "warnings")

    def __init__(self, text: str, manifests: list[Manifest], warnings: list[str] | None = None,
                 notes: list[str] | None = None) -> None:
        self.text = text
        self.manifests = manifests
        self.warnings = warnings if warnings is not None else []
        self.notes = notes if notes is not None else []  # human summary (overrides applied)


def limits_from(environ: Mapping[str, str]) -> Limits:
    return Limits(
        max_file_bytes=setting_int(environ, "TAGPIN_MAX_FILE_BYTES", minimum=1),
        max_output_bytes=setting_int(environ, "TAGPIN_MAX_OUTPUT_BYTES", minimum=1),
        max_yaml_nodes=setting_int(environ, "TAGPIN_MAX_YAML_NODES", minimum=1),
    )


def layered_values(source: AppSource, parameters: Mapping[str, Any]) -> dict[str, Any]:
    """values.yaml < tagpin.yaml valuesFiles < `values-files` parameter < `values` parameter."""
    merged = values_mod.layer(values for _, values in source.values_layers)
    return values_mod.set_dotted(
        merged, parameters.get("values") or {}, "plugin parameter 'values'"
    )


def values_of(request: RenderRequest) -> dict[str, Any]:
    """The values a render of `request` sees (every layer), without rendering anything."""
    source = load_app(request.app_dir, request.repo_root,
                      list(request.parameters.get("values-files") or []),
                      limits_from(request.settings_env))
    return layered_values(source, request.parameters)


def render_manifests(request: RenderRequest, limits: Limits,
                     bytecode_dir: Path | None = None,
                     warnings: list[str] | None = None) -> tuple[AppSource, list[Manifest]]:
    """The pure part: files in, checked Kubernetes objects out (images not yet pinned).
    `bytecode_dir` optionally keeps compiled templates between processes; kustomize's
    warnings go to `warnings`."""
    source = load_app(
        request.app_dir,
        request.repo_root,
        list(request.parameters.get("values-files") or []),
        limits,
    )
    if source.config.kustomize is not None:
        from .kustomize import build, refuse_values

        refuse_values(request.parameters)
        rendered = [build(source.files, request.app_dir, source.config.kustomize,
                          request.settings_env, limits, meanwhile=_import_pinning,
                          warnings=warnings)]
    else:
        values = layered_values(source, request.parameters)
        schema_path = request.app_dir / SCHEMA_FILE
        if os.path.lexists(schema_path):  # jsonschema is imported only for apps that have one
            from .schema import check_values

            check_values(source.files, schema_path, source.values_layers,
                         request.parameters.get("values") or {}, values)
        context = build_context(
            values=values,
            app=request.app.context(),
            env=request.env,
            params=request.parameters,
            kube=request.kube,
        )
        try:
            rendered = render_all(source, request.app_dir, context, limits, bytecode_dir)
        except TemplateError as error:
            if not (request.root_guessed
                    and any(TEMPLATE_NOT_FOUND in problem for problem in error.problems)):
                raise
            raise TemplateError(*error.problems, (
                f"no .git was found above {request.app_dir}, so the repository root is the app "
                "directory itself and nothing above it can be included; pass --repo-root "
                "(the directory Argo CD's source path is relative to)")) from error
    manifests = parse_rendered(
        rendered, default_namespace=request.app.namespace, max_nodes=limits.max_yaml_nodes
    )
    return source, manifests


def _import_pinning() -> None:
    """Run while kustomize builds: the pinning stage's imports (~40 ms in a fresh process)
    then cost no wall time on a machine with a spare core."""
    from . import pin  # noqa: F401
    from .registry import cache  # noqa: F401


class Services:
    """The I/O a render may need, built lazily; tests swap `registry_factory`."""

    __slots__ = ("annotations", "concurrency", "digests_file", "fresh_registry_factory",
                 "lock_mode", "notes", "pushes", "registry_factory", "warnings")

    def __init__(
        self,
        registry_factory: Callable[[], Registry],
        annotations: AnnotationSource | None = None,
        concurrency: int = 8,
        digests_file: Path | None = None,  # `tagpin render --digests FILE`: offline, no ECR
        lock_mode: LockMode | None = None,  # None: TAGPIN_LOCK from the request's settings
        warnings: list[str] | None = None,
        notes: list[str] | None = None,
        fresh_registry_factory: Callable[[], Registry] | None = None,
        pushes: PushFloors | None = None,  # filled from the live Application's push record
    ) -> None:
        self.registry_factory = registry_factory
        # ECR itself, never answered from a digest cache: what TAGPIN_LOCK=verify checks
        # the lock against. None: registry_factory (tests that swap in a cache-less registry).
        self.fresh_registry_factory = fresh_registry_factory
        self.pushes = pushes
        self.annotations = annotations
        self.concurrency = concurrency
        self.digests_file = digests_file
        self.lock_mode = lock_mode
        self.warnings = warnings if warnings is not None else []
        self.notes = notes if notes is not None else []


def default_cache_dir(environ: Mapping[str, str]) -> Path:
    if environ.get("TAGPIN_CACHE_DIR"):
        return Path(environ["TAGPIN_CACHE_DIR"])
    if environ.get("XDG_CACHE_HOME"):
        return Path(environ["XDG_CACHE_HOME"]) / "tagpin"
    import tempfile

    return Path(tempfile.gettempdir()) / f"tagpin-cache-{os.getuid()}"


def template_cache_dir(environ: Mapping[str, str]) -> Path | None:
    """Where compiled Jinja2 templates are kept, next to the digest cache (off with it)."""
    from . import __version__

    if setting_choice(environ, "TAGPIN_CACHE", CACHE_MODES) == "off":
        return None
    return default_cache_dir(environ) / f"jinja-{__version__}"


def ecr_registry_factory(
    environ: Mapping[str, str], warnings: list[str], pushes: PushFloors | None = None
) -> Callable[[], Registry]:
    """ECR behind the in-process and on-disk caches, configured from TAGPIN_* settings; the
    caches honour the pushes announced in `pushes` (filled before the first lookup)."""
    mode = setting_choice(environ, "TAGPIN_CACHE", CACHE_MODES)
    ttl = setting_int(environ, "TAGPIN_CACHE_TTL")
    list_ttl = setting_int(environ, "TAGPIN_TAG_LIST_TTL")
    stale_hours = setting_int(environ, "TAGPIN_SERVE_STALE_HOURS")
    ecr_numbers = {
        "max_attempts": setting_int(environ, "TAGPIN_ECR_MAX_ATTEMPTS", minimum=1),
        "connect_timeout": setting_int(environ, "TAGPIN_ECR_CONNECT_TIMEOUT", minimum=1),
        "read_timeout": setting_int(environ, "TAGPIN_ECR_READ_TIMEOUT", minimum=1),
        "deadline": setting_int(environ, "TAGPIN_ECR_DEADLINE", minimum=1),
        "concurrency": setting_int(environ, "TAGPIN_ECR_CONCURRENCY", minimum=1),
    }
    cache_dir = default_cache_dir(environ)
    shared = None
    if mode != "off" and environ.get("TAGPIN_REDIS_URL"):
        # Checked on every render, so a missing signing key fails even a warm one; the Redis
        # client itself is imported only when the local caches miss.
        from .registry.shared import redis_settings

        shared = redis_settings(environ)

    def build() -> Registry:
        from .registry.base import DeferredRegistry
        from .registry.cache import CacheMode, CachingRegistry, DiskCache

        def ecr() -> Registry:
            from .registry.ecr import EcrRegistryClient, EcrSettings

            return EcrRegistryClient(EcrSettings(**ecr_numbers))

        cache_mode = CacheMode(mode)
        store = None if cache_mode is CacheMode.OFF else DiskCache(cache_dir, warnings=warnings)
        inner: Registry = DeferredRegistry(ecr)
        if shared is not None:
            from .registry.shared import RedisStore, SharedRegistry

            inner = SharedRegistry(
                inner,
                RedisStore(shared),
                ttl=float(ttl),
                list_ttl=float(list_ttl),
                wait_limit=float(ecr_numbers["deadline"]),
                warnings=warnings,
                read=cache_mode is CacheMode.ON,
                # The push record read from the Application guards Redis too, even when the
                # webhook could not bump the repository's generation there.
                pushes=pushes,
            )
        return CachingRegistry(
            inner,
            store,
            mode=cache_mode,
            ttl=float(ttl),
            tag_list_ttl=float(list_ttl),
            stale_for=stale_hours * 3600.0,
            warnings=warnings,
            pushes=pushes,
        )

    return build


def live_annotations(request: RenderRequest) -> tuple[dict[str, str], list[str]]:
    """The live Application's annotations through the Kubernetes API (TAGPIN_APP_LOOKUP)."""
    from .lookup import lookup_settings

    environ = request.settings_env
    settings = lookup_settings(environ, request.app.instance)
    if not settings.enabled:
        return {}, []  # decided without importing the Kubernetes client
    from .kube import KubeApi, fetch_annotations

    return fetch_annotations(settings, lambda: KubeApi.from_environment(environ))


def services_from(environ: Mapping[str, str]) -> Services:
    from .pushes import PushFloors

    warnings: list[str] = []
    pushes = PushFloors(skew=float(setting_int(environ, "TAGPIN_PUSH_CLOCK_SKEW")))
    fresh = dict(environ)
    if setting_choice(environ, "TAGPIN_CACHE", CACHE_MODES) != "off":
        fresh["TAGPIN_CACHE"] = "refresh"  # asks ECR every time, still keeps the cache current
    return Services(
        registry_factory=ecr_registry_factory(environ, warnings, pushes),
        fresh_registry_factory=ecr_registry_factory(fresh, warnings, pushes),
        annotations=live_annotations,
        concurrency=setting_int(environ, "TAGPIN_ECR_CONCURRENCY", minimum=1),
        warnings=warnings,
        pushes=pushes,
    )


def tag_chooser(request: RenderRequest, services: Services) -> TagChooser:
    """Branch deploys: Image Updater overrides from the `image-updater` parameter and the live
    Application. Asked only when some ECR image needs a digest, before any is looked up: the
    same read brings the pushes the webhook announced (cmp.pushes), which the caches honour."""
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
        from . import branch_deploy

        policies = branch_deploy.policies_from(annotations, parameter)  # typos fail here
        # Said before the plan can fail: a warning often explains the failure.
        services.warnings.extend(branch_deploy.policy_warnings(policies))
        if not policies:
            return {}
        try:
            plan = branch_deploy.plan(
                [(w.field, w.repository, w.ref.repository, w.tag) for w in wanted], policies,
                registry)
        except ResolveError as error:
            only = lock_only_source(request, services)
            if only is None:
                raise
            raise type(error)(*error.problems, (
                f"the candidate tags came from {only} only: ECR is never listed there, so a "
                "branch's new tags are not seen; branch deploys need TAGPIN_LOCK=use (or a lock "
                "holding the branch's tags)")) from error
        services.warnings.extend(plan.warnings)
        services.notes.extend(branch_deploy.annotate(plan.overrides))
        return plan.chosen

    return choose


def lock_only_source(request: RenderRequest, services: Services) -> str | None:
    """What answers alone when ECR is never asked (--digests, TAGPIN_LOCK=strict), else None."""
    if services.digests_file is not None:
        return f"--digests {services.digests_file}"
    mode = (services.lock_mode.value if services.lock_mode is not None
            else setting_choice(request.settings_env, "TAGPIN_LOCK", LOCK_MODES))
    return f"{LOCK_FILE} (TAGPIN_LOCK=strict)" if mode == "strict" else None


def registry_for(request: RenderRequest, services: Services) -> Callable[[], Registry]:
    """A lock in the app directory (or --digests) answers first; TAGPIN_LOCK decides whether
    ECR fills its gaps (use), checks it (verify), is never asked (strict) or the lock is ignored."""
    mode = (services.lock_mode.value if services.lock_mode is not None
            else setting_choice(request.settings_env, "TAGPIN_LOCK", LOCK_MODES))
    lock_path = request.app_dir / LOCK_FILE
    if services.digests_file is None and (
            mode == "off" or (mode != "strict" and not lock_path.is_file())):
        # No lock to read (as lock.registry_with_lock decides too): ECR, without importing
        # the lock module on the most common path.
        return services.registry_factory
    from .lock import LockedRegistry, LockMode, read_lock, registry_with_lock

    if services.digests_file is not None:
        shown = str(services.digests_file)
        entries = read_lock(services.digests_file, shown)
        return lambda: LockedRegistry(entries, fallback=None, shown=shown,
                                      strict_reason="--digests never asks ECR")
    lock_mode = LockMode(mode)
    fallback = services.registry_factory
    if lock_mode is LockMode.VERIFY and services.fresh_registry_factory is not None:
        fallback = services.fresh_registry_factory  # a warm cache must not vouch for the lock
    return registry_with_lock(lock_mode, lock_path, LOCK_FILE, fallback,
                              repo_root=request.repo_root,
                              max_bytes=limits_from(request.settings_env).max_file_bytes)


def repeated_layers(source: AppSource) -> list[str]:
    """A values file layered twice (`values.yaml` named again in `values-files`, say) puts its
    values back over every layer between, silently undoing them."""
    names = [name for name, _ in source.values_layers]
    return [f"values file {name} is layered {names.count(name)} times (values.yaml always comes "
            "first, then tagpin.yaml's valuesFiles, then the values-files parameter); a later "
            "copy puts its values back over the layers between, so list it once"
            for name in sorted(set(names)) if names.count(name) > 1]


def custom_image_paths(source: AppSource) -> tuple[ImagePath, ...]:
    """tagpin.yaml's `images.paths` rules, parsed; errors name tagpin.yaml."""
    from .images import parse_image_paths

    return parse_image_paths(list(source.config.image_paths or []), "tagpin.yaml")


def run(request: RenderRequest, services: Services | None = None) -> RenderResult:
    services = services or services_from(request.settings_env)
    limits = limits_from(request.settings_env)
    source, manifests = render_manifests(request, limits, template_cache_dir(request.settings_env),
                                         services.warnings)
    services.warnings.extend(repeated_layers(source))
    from .pin import pin

    try:
        pin(
            manifests,
            extra_paths=custom_image_paths(source),
            require_digests=source.config.require_digests,
            registry_factory=registry_for(request, services),
            concurrency=services.concurrency,
            choose_tags=tag_chooser(request, services),
        )
    except TagpinError as error:
        failure = error
        if isinstance(error, (ResolveError, LockError)):
            from .hints import with_number_hints

            failure = with_number_hints(error, layered_values(source, request.parameters))
        failure.warnings = [*services.warnings, *error.warnings]  # the CLI prints them too
        if failure is error:
            raise
        raise failure from error
    return RenderResult(
        text=emit_stream(m.body for m in manifests),
        manifests=manifests,
        warnings=services.warnings,
        notes=services.notes,
    )
