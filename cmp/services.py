"""The I/O a render may need, wired from the settings: ECR behind the digest caches, the lock
file, the live Application's annotations (Kubernetes API), the cache directories.

cmp/pipeline.py composes the stages and takes a `Services`; tests swap its parts. Everything
heavy (boto3, the Kubernetes client, the lock module) is imported only when a render needs it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from cmp.request import RenderRequest
from cmp.settings import LOCK_FILE, Settings
from cmp.source.appdir import Limits

if TYPE_CHECKING:
    from cmp.registry.base import Registry
    from cmp.registry.lock import LockMode
    from cmp.registry.pushes import PushFloors


# The live Application's annotations (and warnings) for a request; swapped in tests.
AnnotationSource = Callable[[RenderRequest], tuple[dict[str, str], list[str]]]


def limits_from(settings: Settings) -> Limits:
    return Limits(
        max_file_bytes=settings.max_file_bytes,
        max_output_bytes=settings.max_output_bytes,
        max_yaml_nodes=settings.max_yaml_nodes,
    )


class Services:
    """The I/O a render may need, built lazily; tests swap `registry_factory`."""

    __slots__ = (
        "annotations",
        "concurrency",
        "digests_file",
        "fresh_registry_factory",
        "lock_mode",
        "notes",
        "pushes",
        "registry_factory",
        "warnings",
    )

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


def default_cache_dir(settings: Settings, environ: Mapping[str, str]) -> Path:
    """TAGPIN_CACHE_DIR, else under XDG_CACHE_HOME (from `environ`), else the temp directory."""
    if settings.cache_dir:
        return Path(settings.cache_dir)
    if environ.get("XDG_CACHE_HOME"):
        return Path(environ["XDG_CACHE_HOME"]) / "tagpin"
    import tempfile

    return Path(tempfile.gettempdir()) / f"tagpin-cache-{os.getuid()}"


def template_cache_dir(settings: Settings, environ: Mapping[str, str]) -> Path | None:
    """Where compiled Jinja2 templates are kept, next to the digest cache (off with it)."""
    from cmp import __version__

    if settings.cache == "off":
        return None
    return default_cache_dir(settings, environ) / f"jinja-{__version__}"


def ecr_registry_factory(
    settings: Settings,
    environ: Mapping[str, str],
    warnings: list[str],
    pushes: PushFloors | None = None,
) -> Callable[[], Registry]:
    """ECR behind the caches, as cmp.registry.build puts them in order, configured from
    `settings` (`environ`: XDG_CACHE_HOME, for the default cache directory); the caches honour
    the pushes announced in `pushes` (filled before the first lookup)."""
    from cmp.registry.build import build_registry
    from cmp.registry.pushes import PushFloors

    cache_dir = default_cache_dir(settings, environ)
    shared = None
    if settings.cache != "off" and settings.redis_url:
        # Checked on every render, so a missing signing key fails even a warm one; the Redis
        # client itself is imported only when the local caches miss.
        from cmp.registry.shared import redis_settings

        shared = redis_settings(settings)
    announced = pushes if pushes is not None else PushFloors(skew=float(settings.push_clock_skew))
    return lambda: build_registry(
        settings, cache_dir=cache_dir, pushes=announced, warnings=warnings, redis=shared
    )


def live_annotations(request: RenderRequest) -> tuple[dict[str, str], list[str]]:
    """The live Application's annotations through the Kubernetes API (TAGPIN_APP_LOOKUP)."""
    from cmp.argocd.lookup import lookup_settings

    environ = request.settings_env
    settings = lookup_settings(request.settings, environ, request.app.instance)
    if not settings.enabled:
        return {}, []  # decided without importing the Kubernetes client
    from cmp.argocd.kube import KubeApi, fetch_annotations

    return fetch_annotations(settings, lambda: KubeApi.from_environment(environ))


def services_from(request: RenderRequest) -> Services:
    """The I/O for `request`, wired from its settings (built once, at the edge)."""
    from cmp.registry.pushes import PushFloors

    settings, environ = request.settings, request.settings_env
    warnings: list[str] = []
    pushes = PushFloors(skew=float(settings.push_clock_skew))
    # asks ECR every time, still keeps the cache current
    fresh = settings._replace(cache="refresh") if settings.cache != "off" else settings
    return Services(
        registry_factory=ecr_registry_factory(settings, environ, warnings, pushes),
        fresh_registry_factory=ecr_registry_factory(fresh, environ, warnings, pushes),
        annotations=live_annotations,
        concurrency=settings.ecr_concurrency,
        warnings=warnings,
        pushes=pushes,
    )


def lock_only_source(request: RenderRequest, services: Services) -> str | None:
    """What answers alone when ECR is never asked (--digests, TAGPIN_LOCK=strict), else None."""
    if services.digests_file is not None:
        return f"--digests {services.digests_file}"
    mode = services.lock_mode.value if services.lock_mode is not None else request.settings.lock
    return f"{LOCK_FILE} (TAGPIN_LOCK=strict)" if mode == "strict" else None


def registry_for(request: RenderRequest, services: Services) -> Callable[[], Registry]:
    """A lock in the app directory (or --digests) answers first; TAGPIN_LOCK decides whether
    ECR fills its gaps (use), checks it (verify), is never asked (strict) or the lock is ignored."""
    mode = services.lock_mode.value if services.lock_mode is not None else request.settings.lock
    lock_path = request.app_dir / LOCK_FILE
    if services.digests_file is None and (
        mode == "off" or (mode != "strict" and not lock_path.is_file())
    ):
        # No lock to read (as lockfile.app_lock decides too): ECR, without importing
        # the lock module on the most common path.
        return services.registry_factory
    from cmp.images.lockfile import app_lock, digests_lock
    from cmp.registry.build import with_lock
    from cmp.registry.lock import LockMode

    if services.digests_file is not None:
        return with_lock(digests_lock(services.digests_file), services.registry_factory)
    lock_mode = LockMode(mode)
    fallback = services.registry_factory
    if lock_mode is LockMode.VERIFY and services.fresh_registry_factory is not None:
        fallback = services.fresh_registry_factory  # a warm cache must not vouch for the lock
    lock = app_lock(
        lock_mode,
        lock_path,
        LOCK_FILE,
        repo_root=request.repo_root,
        max_bytes=request.settings.max_file_bytes,
    )
    return with_lock(lock, fallback)
