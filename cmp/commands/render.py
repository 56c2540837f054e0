"""`tagpin render`: render an app directory exactly as the sidecar would, for people and CI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from cmp.commands.options import check_pairs, render_options
from cmp.output import Output, execute


@click.command("render")
@render_options
@click.pass_context
def render_command(ctx: click.Context, /, app_dir: Path, **options: Any) -> int:
    """Render APP_DIR exactly as the sidecar would, for people and CI."""
    from cmp.commands.options import app_request, formatted
    from cmp.limits.memory import limit_render
    from cmp.pipeline import run

    check_pairs(options)

    def job(output: Output) -> str:
        request = app_request(app_dir, options)
        limit_render(request.settings)
        return formatted(run(request, output=output), options)

    return execute(job, debug=ctx.obj["debug"])
