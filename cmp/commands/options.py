"""What the commands share: the flags that say what to render, and the one builder that
turns them into a RenderRequest (and the parameters Argo CD would send)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from cmp.request import (
    AppInfo,
    KubeInfo,
    RenderRequest,
    for_directory,
    parameters_json,
    parse_api_versions,
)
from cmp.settings import Settings, parse_parameters


def pairs(items: tuple[str, ...], flag: str) -> dict[str, str]:
    """Repeated `--flag KEY=VALUE` options as a mapping; a malformed item is a usage error."""
    found: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint=flag)
        found[key] = value
    return found


def app_options(command: Any) -> Any:
    """The flags `lock` and `diff` share with `render`: what to render, as the sidecar would."""
    options = [
        click.argument("app_dir", default=".", type=click.Path(file_okay=False, path_type=Path)),
        click.option(
            "--repo-root",
            type=click.Path(file_okay=False, path_type=Path),
            help="Repository root (default: the nearest directory holding .git).",
        ),
        click.option("--app-name", default="", help="Application name (ARGOCD_APP_NAME)."),
        click.option("--namespace", "-n", default="", help="Destination namespace."),
        click.option("--project", default="", help="Argo CD project."),
        click.option("--revision", default="", help="Revision templates see as app.revision."),
        click.option(
            "--env",
            "env_pairs",
            multiple=True,
            metavar="KEY=VALUE",
            help="Plugin env entry, as ARGOCD_ENV_KEY (repeatable).",
        ),
        click.option(
            "--values-file",
            "-f",
            "values_files",
            multiple=True,
            metavar="FILE",
            help="Values file relative to APP_DIR: the values-files parameter (repeatable).",
        ),
        click.option(
            "--set",
            "set_pairs",
            multiple=True,
            metavar="KEY=VALUE",
            help="The values parameter, e.g. --set image.tag=v2 (repeatable).",
        ),
        click.option(
            "--parameters-json",
            default=None,
            metavar="JSON",
            help="Parameters exactly as Argo CD sends them in ARGOCD_APP_PARAMETERS.",
        ),
        click.option("--kube-version", default="", help="Cluster version, e.g. 1.31.2."),
        click.option(
            "--api-versions", default="", help="Comma-separated API versions, as KUBE_API_VERSIONS."
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def image_updater_option(note: str = "repeatable") -> Callable[[Any], Any]:
    """`--image-updater KEY=VALUE`: the image-updater parameter, as `render`, `diff` and `pin`
    take it (read with `pairs`)."""
    return click.option(
        "--image-updater",
        "updater_pairs",
        multiple=True,
        metavar="KEY=VALUE",
        help=f"The image-updater parameter, e.g. web.allow-tags=regexp:^pr-42- ({note}).",
    )


def digests_option(help: str) -> Callable[[Any], Any]:
    """`--digests FILE`: render offline, every digest from this lock file (`help` says for
    what)."""
    return click.option(
        "--digests", type=click.Path(dir_okay=False, path_type=Path), default=None, help=help
    )


def app_request(
    app_dir: Path,
    options: dict[str, Any],
    *,
    must_exist: bool = True,
    updater: dict[str, str] | None = None,
    settings_env: dict[str, str] | None = None,
) -> RenderRequest:
    """The RenderRequest the flags of `render`, `lock` and `diff` describe (`app_options`).
    Locks show what git says, never what a branch deploy would pick; a preview takes the
    `image-updater` parameter only if given."""
    parameters = parse_parameters(
        options["parameters_json"]
        or parameters_json(
            options["values_files"], pairs(options["set_pairs"], "--set"), updater or {}
        )
    )
    return for_directory(
        app_dir,
        repo_root=options["repo_root"],
        must_exist=must_exist,
        app=AppInfo(
            instance=options["app_name"],
            namespace=options["namespace"],
            project=options["project"],
            revision=options["revision"],
            repo_url=options.get("repo_url", ""),
            target_revision=options.get("target_revision", ""),
        ),
        kube=KubeInfo(
            version=options["kube_version"],
            api_versions=parse_api_versions(options["api_versions"]),
        ),
        env=pairs(options["env_pairs"], "--env"),
        parameters=parameters,
        settings_env=dict(os.environ) if settings_env is None else settings_env,
    )


def stream_request(
    *,
    app_name: str,
    namespace: str,
    updater: dict[str, str],
    settings_env: dict[str, str],
    settings: Settings,
) -> RenderRequest:
    """The RenderRequest the flags of `pin` describe: a manifest stream read in the current
    directory, no app directory, no values; only the image-updater parameter."""
    return RenderRequest(
        app_dir=Path.cwd(),
        repo_root=Path.cwd(),
        app=AppInfo(instance=app_name, namespace=namespace),
        kube=KubeInfo(),
        env={},
        parameters=parse_parameters(parameters_json(image_updater=updater)),
        settings_env=settings_env,
        settings=settings,
    )
