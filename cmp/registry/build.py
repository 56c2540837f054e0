"""The registry a render asks, and the order of its layers:

    lock → memory → disk → Redis → ECR

- lock: the app's tagpin.lock or `--digests FILE` (cmp.registry.lock), put in front by
  `with_lock` as TAGPIN_LOCK says;
- memory, then disk: the local caches (cmp.registry.cache), one per machine;
- Redis: the fleet's shared cache (cmp.registry.shared), when TAGPIN_REDIS_URL is set;
- ECR (cmp.registry.ecr), built, and boto3 imported, only when every cache above missed.

Each layer is a `Registry` (cmp.registry.base) and asks the one under it through that
protocol only; an answer carries its age up through them, and each judges it with the one
freshness rule (cmp.registry.freshness). `build_registry` makes the layers under the lock from
the typed settings and what only the caller knows (where the cache lives, the pushes
announced to this render, the Redis settings, ECR clients a process may keep); cmp/services.py
calls it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from cmp.registry.base import DeferredRegistry, Registry
from cmp.registry.observe import SILENT, RegistryObserver

if TYPE_CHECKING:
    from cmp.registry.ecr import EcrClients
    from cmp.registry.lock import Lock
    from cmp.registry.pushes import PushFloors
    from cmp.registry.shared import RedisSettings
    from cmp.settings import Settings


def build_registry(
    settings: Settings,
    *,
    cache_dir: Path,
    pushes: PushFloors,
    warnings: list[str],
    redis: RedisSettings | None = None,
    ecr_clients: EcrClients | None = None,
    observer: RegistryObserver = SILENT,
) -> Registry:
    """Memory → disk → Redis → ECR, as `settings` configure them (TAGPIN_CACHE, its TTLs,
    TAGPIN_SERVE_STALE_HOURS, TAGPIN_ECR_*). `cache_dir` holds the disk cache; `pushes` the
    pushes announced to this render (filled before the first lookup); `redis` the shared
    cache, if any (cmp.registry.shared.redis_settings); `ecr_clients` ECR clients the process
    keeps between renders (else the ECR layer makes its own); `warnings` gathers what the
    layers have to say; `observer` hears what they do (cmp.registry.observe)."""
    from cmp.registry.cache import CachingRegistry, DiskCache
    from cmp.settings import CacheMode

    mode = settings.cache
    ecr_numbers = {
        "max_attempts": settings.ecr_max_attempts,
        "connect_timeout": settings.ecr_connect_timeout,
        "read_timeout": settings.ecr_read_timeout,
        "deadline": settings.ecr_deadline,
        "concurrency": settings.ecr_concurrency,
    }

    def ecr() -> Registry:
        # Imported here: a render the caches answer never pays for the module (nor boto3).
        from cmp.registry.ecr import EcrRegistryClient, EcrSettings

        numbers = EcrSettings(**ecr_numbers)
        return EcrRegistryClient(numbers, clients=ecr_clients, observer=observer)

    below: Registry = DeferredRegistry(ecr)
    if redis is not None and mode is not CacheMode.OFF:
        from cmp.registry.shared import RedisStore, SharedRegistry

        below = SharedRegistry(
            below,
            RedisStore.for_render(redis),
            ttl=float(settings.cache_ttl),
            list_ttl=float(settings.tag_list_ttl),
            wait_limit=float(settings.ecr_deadline),
            warnings=warnings,
            read=mode is CacheMode.ON,
            pushes=pushes,
            observer=observer,
        )
    store = None
    if mode is not CacheMode.OFF:
        store = DiskCache(cache_dir, warnings=warnings, observer=observer)
    return CachingRegistry(
        below,
        store,
        mode=mode,
        ttl=float(settings.cache_ttl),
        tag_list_ttl=float(settings.tag_list_ttl),
        stale_for=settings.serve_stale_hours * 3600.0,
        warnings=warnings,
        pushes=pushes,
        observer=observer,
    )


def with_lock(
    lock: Lock | None,
    below: Callable[[], Registry],
    *,
    observer: RegistryObserver = SILENT,
) -> Callable[[], Registry]:
    """The registry a render asks: `lock` in front of `below` as TAGPIN_LOCK says (`strict`
    never builds `below`; for `verify`, pass layers that ask ECR afresh, since a warm cache
    must not vouch for the lock), or `below` alone when no lock applies."""
    if lock is None:
        return below
    from cmp.registry.lock import LockedRegistry, LockMode

    if lock.mode is LockMode.STRICT:
        return lambda: LockedRegistry(
            lock.entries,
            fallback=None,
            shown=lock.shown,
            strict_reason=lock.strict_reason,
            fix=lock.fix,
            observer=observer,
        )
    verify = lock.mode is LockMode.VERIFY
    return lambda: LockedRegistry(
        lock.entries, below, shown=lock.shown, verify=verify, observer=observer
    )
