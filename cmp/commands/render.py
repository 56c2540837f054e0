"""`tagpin render`: render an app directory exactly as the sidecar would, for people and CI."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click

from cmp.commands.options import (
    app_options,
    app_request,
    digests_option,
    image_updater_option,
    pairs,
)
from cmp.commands.run import execute


@click.command("render")
@app_options
@click.option("--repo-url", default="", help="Source repository URL.")
@click.option("--target-revision", default="", help="Source target revision (e.g. HEAD).")
@image_updater_option()
@digests_option("Render offline: take every digest from this lock file; never ask ECR.")
@click.option(
    "--output",
    "-o",
    "output_format",
    type=click.Choice(["yaml", "json"]),
    default="yaml",
    show_default=True,
    help="yaml: what Argo CD reads; json: one JSON list of the same objects, for tools.",
)
@click.option(
    "--refresh",
    is_flag=True,
    help="Ask ECR for every image now instead of trusting the cache (TAGPIN_CACHE=refresh): "
    "shows a push made a moment ago.",
)
@click.pass_context
def render_command(
    ctx: click.Context,
    /,
    app_dir: Path,
    updater_pairs: tuple[str, ...],
    digests: Path | None,
    output_format: str,
    refresh: bool,
    **options: Any,
) -> int:
    """Render APP_DIR exactly as the sidecar would, for people and CI."""
    from cmp.commands.run import limit_memory
    from cmp.pipeline import run
    from cmp.services import services_from

    # A malformed KEY=VALUE is a usage error before anything runs.
    pairs(options["env_pairs"], "--env")
    pairs(options["set_pairs"], "--set")
    updater = pairs(updater_pairs, "--image-updater")
    debug = ctx.obj["debug"]

    def job() -> Any:
        request = app_request(app_dir, options, updater=updater)
        if refresh and request.settings.cache != "off":
            # what ECR says now; still updates the cache
            request = request._replace(settings=request.settings._replace(cache="refresh"))
        limit_memory(request.settings)
        services = services_from(request)
        if digests is not None:
            services.digests_file = Path(os.path.abspath(digests))
        result = run(request, services)
        if output_format == "json":
            result.text = _as_json([m.body for m in result.manifests])
        return result

    return execute(job, debug=debug)


def _as_json(objects: list[Any]) -> str:
    """`render --output json`: the objects as one JSON list, keys sorted (deterministic too)."""
    from cmp.errors import ManifestError

    try:
        return (
            json.dumps(objects, sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False)
            + "\n"
        )
    except ValueError as exc:  # .nan/.inf: YAML has them, JSON does not
        raise ManifestError(
            f"the rendered objects cannot be written as JSON: {exc}; use --output yaml"
        ) from None
