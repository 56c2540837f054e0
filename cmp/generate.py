"""`tagpin generate`: what Argo CD's cmp-server runs; everything comes from the environment.

It runs in its own process, or in a render server's warm worker (cmp/server/listener.py) with
the environment the client sent; either way the settings are read here, once. A worker passes
an observer that counts for the server's metrics; in its own process a render tells no one.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from cmp.observe import SILENT, RenderObserver
from cmp.output import Output, execute


def generate(
    environ: Mapping[str, str],
    cwd: Path,
    *,
    debug: bool = False,
    observer: RenderObserver = SILENT,
) -> int:
    """Render the app in `cwd` as the environment Argo CD set up describes it."""

    def job(output: Output) -> str:
        import time

        from cmp.limits.cpu import CpuLimitExceeded, cpu_budget
        from cmp.limits.memory import MemoryLimitExceeded, limit_render
        from cmp.limits.slots import RenderTimeout, Tenant, render_slot
        from cmp.pipeline import run
        from cmp.request import from_argocd_environment
        from cmp.services import default_cache_dir, services_for
        from cmp.settings import Settings

        settings = Settings.from_environ(environ)  # once; typos in any setting: an error
        limit_render(settings)
        request = from_argocd_environment(environ, cwd, settings)
        slots = default_cache_dir(settings, environ)
        services = services_for(settings, request.settings_env, observer)
        asked_for_slot = time.monotonic()
        waited = False
        try:
            with cpu_budget(settings), render_slot(settings, slots, Tenant.from_environ(environ)):
                observer.slot_waited(time.monotonic() - asked_for_slot)
                waited = True
                return run(request, services, output=output).text
        except CpuLimitExceeded:
            observer.limit_hit("cpu")
            raise
        except RenderTimeout:
            observer.limit_hit("time")
            raise
        except (MemoryError, MemoryLimitExceeded):
            observer.limit_hit("memory")
            raise
        finally:
            if not waited:  # refused as busy, or failed on the way: the wait still counts
                observer.slot_waited(time.monotonic() - asked_for_slot)

    return execute(job, debug=debug, environ=environ)
