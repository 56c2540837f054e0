"""The I/O a render may do, wired from its settings: ECR behind the digest caches, the lock
file, the live Application (Kubernetes API), the cache directories.

`Services` holds the factories cmp/pipeline.py calls when a stage needs them; tests swap them.
What a command asks for (`--digests`, a lock mode, no live Application) is on the request,
what a render says goes to its `Output`. Everything heavy (boto3, the Kubernetes client, the
lock module) is imported only when a render needs it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from cmp.errors import SourceError
from cmp.observe import SILENT, RenderObserver
from cmp.request import RenderRequest
from cmp.settings import LOCK_FILE, CacheMode, LockMode, Settings

if TYPE_CHECKING:
    from cmp.registry.base import Registry
    from cmp.registry.pushes import PushFloors
    from cmp.registry.shared import RedisSettings


def live_annotations(request: RenderRequest) -> tuple[dict[str, str], list[str]]:
    """The live Application's annotations (and warnings) through the Kubernetes API, as
    TAGPIN_APP_LOOKUP says."""
    from cmp.argocd.lookup import lookup_settings

    environ = request.settings_env
    settings = lookup_settings(request.settings, environ, request.app.instance)
    if not settings.enabled:
        return {}, []  # decided without importing the Kubernetes client
    from cmp.argocd.kube import KubeApi, fetch_annotations

    return fetch_annotations(settings, lambda: KubeApi.from_environment(environ))


# ECR behind the caches `settings` ask for; the caches honour the pushes announced in the
# PushFloors (filled before the first lookup) and add their warnings to the list.
EcrFactory = Callable[["Settings", "PushFloors | None", list[str]], "Registry"]
# The live Application's annotations, and warnings, for a request.
LiveApplication = Callable[[RenderRequest], tuple[dict[str, str], list[str]]]


class Services(NamedTuple):
    """The I/O factories of a render, and who hears what it does; `services_for` builds the
    real ones."""

    ecr: EcrFactory
    live_application: LiveApplication = live_annotations
    observer: RenderObserver = SILENT


def services_for(
    settings: Settings, environ: Mapping[str, str], observer: RenderObserver = SILENT
) -> Services:
    """The real I/O, from the settings (`environ`: XDG_CACHE_HOME, AWS_*, KUBECONFIG). The
    shared cache's settings are checked now, so a missing signing key fails every render, a
    warm one too; the Redis client itself is imported only when the local caches miss.
    `observer` hears what the render and its registry layers do (a render server's metrics)."""
    shared = None
    if settings.cache is not CacheMode.OFF and settings.redis_url:
        from cmp.registry.shared import redis_settings

        shared = redis_settings(settings)

    def ecr(asked: Settings, pushes: PushFloors | None, warnings: list[str]) -> Registry:
        return ecr_registry(asked, environ, warnings, pushes, shared, observer)

    return Services(ecr=ecr, observer=observer)


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

    if settings.cache is CacheMode.OFF:
        return None
    return default_cache_dir(settings, environ) / f"jinja-{__version__}"


def ecr_registry(
    settings: Settings,
    environ: Mapping[str, str],
    warnings: list[str],
    pushes: PushFloors | None = None,
    shared: RedisSettings | None = None,
    observer: RenderObserver = SILENT,
) -> Registry:
    """ECR behind the caches, as cmp.registry.build puts them in order (Redis too, with
    `shared`), configured from `settings` (`environ`: XDG_CACHE_HOME, for the default cache
    directory); the caches honour the pushes announced in `pushes`. The ECR client is made on
    the first cache miss."""
    from cmp.registry.build import build_registry
    from cmp.registry.pushes import PushFloors

    announced = pushes if pushes is not None else PushFloors(skew=float(settings.push_clock_skew))
    return build_registry(
        settings,
        cache_dir=default_cache_dir(settings, environ),
        pushes=announced,
        warnings=warnings,
        redis=shared,
        observer=observer,
    )


class LockFile(NamedTuple):
    """The lock a request's digests come from first: an app's tagpin.lock, or the file
    `tagpin pin --lock` names."""

    path: Path
    shown: str  # as messages name it
    repo_root: Path | None  # an app's lock obeys the repository's rules; a named file is the user's
    fix: str | None  # what to do about a tag it lacks (None: an app's, run `tagpin lock`)


def lock_file(request: RenderRequest) -> LockFile | None:
    if request.stream is None:
        return LockFile(request.app_dir / LOCK_FILE, LOCK_FILE, request.repo_root, None)
    path = request.stream.lock
    if path is None:
        return None
    fix = f"add it to {path}, or set TAGPIN_LOCK=use to ask ECR for the tags it lacks"
    return LockFile(path, str(path), None, fix)


def lock_only_source(request: RenderRequest) -> str | None:
    """What answers alone when ECR is never asked (--digests, TAGPIN_LOCK=strict), else None."""
    if request.digests is not None:
        return f"--digests {request.digests}"
    lock = lock_file(request)
    if lock is not None and request.settings.lock is LockMode.STRICT:
        return f"{lock.shown} (TAGPIN_LOCK=strict)"
    return None


def registry_for(
    request: RenderRequest, services: Services, pushes: PushFloors, warnings: list[str]
) -> Callable[[], Registry]:
    """The registry a render asks: `--digests FILE` alone; else the lock first, under
    TAGPIN_LOCK (use: ECR fills its gaps; verify: ECR checks it; strict: ECR is never asked;
    off: ignored); else ECR behind the caches. A lock is read now, so a bad one fails the
    render whatever it holds; ECR is built when called."""
    settings = request.settings
    lock = lock_file(request)
    named = request.stream is not None and lock is not None  # on the command line: must exist
    if request.digests is None and named and lock is not None and not lock.path.is_file():
        raise SourceError(f"--lock {lock.path}: no such file")
    mode = settings.lock
    if request.digests is None and (
        lock is None
        or mode is LockMode.OFF
        or (mode is not LockMode.STRICT and not lock.path.is_file())
    ):
        # No lock to read (as lockfile.app_lock decides too): ECR, without importing
        # the lock module on the most common path.
        return lambda: services.ecr(settings, pushes, warnings)
    from cmp.images.lockfile import app_lock, digests_lock
    from cmp.registry.build import with_lock
    from cmp.registry.lock import APP_LOCK_FIX

    if request.digests is not None:
        return with_lock(
            digests_lock(request.digests),
            lambda: services.ecr(settings, pushes, warnings),
            observer=services.observer,
        )
    assert lock is not None
    if mode is LockMode.VERIFY:
        settings = settings.fresh()  # a warm cache must not vouch
    found = app_lock(
        mode,
        lock.path,
        lock.shown,
        repo_root=lock.repo_root,
        max_bytes=request.settings.max_file_bytes,
        fix=lock.fix or APP_LOCK_FIX,
    )
    return with_lock(
        found, lambda: services.ecr(settings, pushes, warnings), observer=services.observer
    )
