"""`tagpin render`: render an app directory exactly as the sidecar would, for people and CI."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click

from cmp.commands.options import app_request, pairs
from cmp.commands.run import execute


@click.command("render")
@click.argument("app_dir", default=".", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--repo-root",
    type=click.Path(file_okay=False, path_type=Path),
    help="Repository root (default: the nearest directory holding .git).",
)
@click.option("--app-name", default="", help="Application name (ARGOCD_APP_NAME).")
@click.option("--namespace", "-n", default="", help="Destination namespace.")
@click.option("--project", default="", help="Argo CD project.")
@click.option("--revision", default="", help="Resolved revision (commit SHA).")
@click.option("--repo-url", default="", help="Source repository URL.")
@click.option("--target-revision", default="", help="Source target revision (e.g. HEAD).")
@click.option(
    "--env",
    "env_pairs",
    multiple=True,
    metavar="KEY=VALUE",
    help="Plugin env entry, as ARGOCD_ENV_KEY (repeatable).",
)
@click.option(
    "--values-file",
    "-f",
    "values_files",
    multiple=True,
    metavar="FILE",
    help="Values file relative to APP_DIR: the values-files parameter (repeatable).",
)
@click.option(
    "--set",
    "set_pairs",
    multiple=True,
    metavar="KEY=VALUE",
    help="The values parameter, e.g. --set image.tag=v2 (repeatable).",
)
@click.option(
    "--image-updater",
    "updater_pairs",
    multiple=True,
    metavar="KEY=VALUE",
    help="The image-updater parameter, e.g. web.allow-tags=regexp:^pr-42- (repeatable).",
)
@click.option(
    "--parameters-json",
    default=None,
    metavar="JSON",
    help="Parameters exactly as Argo CD sends them in ARGOCD_APP_PARAMETERS.",
)
@click.option("--kube-version", default="", help="Cluster version, e.g. 1.31.2.")
@click.option(
    "--api-versions", default="", help="Comma-separated API versions, as KUBE_API_VERSIONS."
)
@click.option(
    "--digests",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Render offline: take every digest from this lock file; never ask ECR.",
)
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
    app_dir: Path,
    repo_root: Path | None,
    app_name: str,
    namespace: str,
    project: str,
    revision: str,
    repo_url: str,
    target_revision: str,
    env_pairs: tuple[str, ...],
    values_files: tuple[str, ...],
    set_pairs: tuple[str, ...],
    updater_pairs: tuple[str, ...],
    parameters_json: str | None,
    kube_version: str,
    api_versions: str,
    digests: Path | None,
    output_format: str,
    refresh: bool,
) -> int:
    """Render APP_DIR exactly as the sidecar would, for people and CI."""
    from cmp.commands.run import limit_memory
    from cmp.pipeline import run
    from cmp.services import services_from

    # A malformed KEY=VALUE is a usage error before anything runs.
    pairs(env_pairs, "--env")
    pairs(set_pairs, "--set")
    updater = pairs(updater_pairs, "--image-updater")
    options = {
        "repo_root": repo_root,
        "app_name": app_name,
        "namespace": namespace,
        "project": project,
        "revision": revision,
        "repo_url": repo_url,
        "target_revision": target_revision,
        "env_pairs": env_pairs,
        "values_files": values_files,
        "set_pairs": set_pairs,
        "parameters_json": parameters_json,
        "kube_version": kube_version,
        "api_versions": api_versions,
    }
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
