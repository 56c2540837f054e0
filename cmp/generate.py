"""`tagpin generate`: what Argo CD's cmp-server runs; everything comes from the environment.

It runs in its own process, or in a render server's warm worker (cmp/server/listener.py) with
the environment the client sent; either way the settings are read here, once.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from cmp.output import Output, execute


def generate(environ: Mapping[str, str], cwd: Path, *, debug: bool = False) -> int:
    """Render the app in `cwd` as the environment Argo CD set up describes it."""

    def job(output: Output) -> str:
        from cmp.limits.cpu import cpu_budget
        from cmp.limits.memory import limit_render
        from cmp.limits.slots import Tenant, render_slot
        from cmp.pipeline import run
        from cmp.request import from_argocd_environment
        from cmp.services import default_cache_dir
        from cmp.settings import Settings

        settings = Settings.from_environ(environ)  # once; typos in any setting: an error
        limit_render(settings)
        request = from_argocd_environment(environ, cwd, settings)
        slots = default_cache_dir(settings, environ)
        with cpu_budget(settings), render_slot(settings, slots, Tenant.from_environ(environ)):
            return run(request, output=output).text

    return execute(job, debug=debug, environ=environ)
