"""click commands. Each fills a RenderRequest (or similar value) and hands it to cmp.app."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click

from . import __version__
from .cli import execute, generate
from .errors import ConfigError
from .request import AppInfo, KubeInfo, RenderRequest, parse_api_versions
from .settings import PARAMETERS_BY_NAME, parse_parameters, plugin_yaml


def _pairs(items: tuple[str, ...], flag: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint=flag)
        pairs[key] = value
    return pairs


def find_repo_root(app_dir: Path) -> Path:
    """The nearest ancestor holding `.git`, else the app directory itself."""
    current = app_dir.resolve()
    for candidate in (current, *current.parents):
        if (candidate / ".git").exists():
            return candidate
    return current


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tagpin")
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Render Argo CD apps into canonical YAML with every ECR image pinned to its digest."""
    ctx.obj = {"debug": debug}


@cli.command("generate")
@click.pass_context
def generate_command(ctx: click.Context) -> int:
    """Render the app in the current directory from Argo CD's environment (the CMP command)."""
    return generate(os.environ, Path.cwd(), debug=ctx.obj["debug"])


@cli.command("render")
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
) -> int:
    """Render APP_DIR exactly as the sidecar would, for people and CI."""
    from .app import run, services_from

    env = _pairs(env_pairs, "--env")
    sets = _pairs(set_pairs, "--set")
    updater = _pairs(updater_pairs, "--image-updater")
    debug = ctx.obj["debug"]

    def job() -> Any:
        app_path = Path(os.path.abspath(app_dir))
        if not app_path.is_dir():
            raise ConfigError(f"{app_dir}: not a directory")
        root = Path(os.path.abspath(repo_root)) if repo_root else find_repo_root(app_path)
        try:
            source_path = app_path.resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            raise ConfigError(f"{app_dir} is not inside the repository root {root}") from None
        parameters = parse_parameters(
            parameters_json or _parameters_from_flags(values_files, sets, updater)
        )
        request = RenderRequest(
            app_dir=app_path,
            repo_root=root,
            app=AppInfo(
                instance=app_name,
                namespace=namespace,
                project=project,
                revision=revision,
                repo_url=repo_url,
                source_path="" if source_path == "." else source_path,
                target_revision=target_revision,
            ),
            kube=KubeInfo(version=kube_version, api_versions=parse_api_versions(api_versions)),
            env=dict(sorted(env.items())),
            parameters=parameters,
            settings_env=dict(os.environ),
        )
        services = services_from(request.settings_env)
        if digests is not None:
            services.digests_file = Path(os.path.abspath(digests))
        return run(request, services)

    return execute(job, debug=debug)


def _parameters_from_flags(
    values_files: tuple[str, ...], sets: dict[str, str], updater: dict[str, str]
) -> str:
    items: list[dict[str, Any]] = []
    if values_files:
        items.append({"name": "values-files", "array": list(values_files)})
    if sets:
        items.append({"name": "values", "map": sets})
    if updater:
        items.append({"name": "image-updater", "map": updater})
    assert set(i["name"] for i in items) <= set(PARAMETERS_BY_NAME)
    return json.dumps(items)


@cli.command("plugin-yaml")
@click.option(
    "--check",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Exit 1 if this file differs from what would be generated.",
)
def plugin_yaml_command(check: Path | None) -> int:
    """Print plugin.yaml for Argo CD's cmp-server, generated from the parameter table."""
    text = plugin_yaml()
    if check is not None:
        current = check.read_text(encoding="utf-8") if check.exists() else ""
        if current != text:
            click.echo(f"{check} is out of date: run `tagpin plugin-yaml > {check}`", err=True)
            return 1
        return 0
    click.echo(text, nl=False)
    return 0
