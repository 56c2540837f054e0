"""What the commands share: the render flags, defined once (`render_options` for `render`,
`diff` and `lock`; `pinning_options`, their part that applies to a stream, for `pin`), what
they mean (`--refresh`, `--digests`, `-o`), and the one builder that turns them into a
RenderRequest (and the parameters Argo CD would send)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from cmp.request import (
    ARGOCD_WORDS,
    CLI_WORDS,
    AppInfo,
    KubeInfo,
    RenderRequest,
    for_directory,
    parameters_json,
    parse_api_versions,
)
from cmp.settings import Settings, parse_parameters

if TYPE_CHECKING:
    from cmp.pipeline import RenderResult


def pairs(items: tuple[str, ...], flag: str) -> dict[str, str]:
    """Repeated `--flag KEY=VALUE` options as a mapping; a malformed item is a usage error."""
    found: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint=flag)
        found[key] = value
    return found


OUTPUT_FORMATS = ("yaml", "json")


class OutputFormat(click.Choice):  # type: ignore[type-arg]
    """`-o/--output yaml|json`: a file name given the old `tagpin lock -o FILE` way gets told
    where the lock's path went."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str) and value.lower() not in OUTPUT_FORMATS:
            self.fail(
                f"{value!r} is not an output format ({', '.join(OUTPUT_FORMATS)}); -o/--output "
                "is the output format in every command (tagpin lock writes to another file "
                "with --lock-file FILE)",
                param,
                ctx,
            )
        return super().convert(value, param, ctx)


# What to render, as Argo CD would describe it: the app directory and the ARGOCD_APP_*,
# ARGOCD_ENV_*, KUBE_* and parameter inputs.
_REQUEST_OPTIONS = (
    click.argument("app_dir", default=".", type=click.Path(file_okay=False, path_type=Path)),
    click.option(
        "--repo-root",
        type=click.Path(file_okay=False, path_type=Path),
        help="Repository root (default: the nearest directory holding .git).",
    ),
    click.option(
        "--app-name",
        default="",
        help="Application name (ARGOCD_APP_NAME); default: APP_DIR's name for app.name in "
        "templates, and no live Application is read.",
    ),
    click.option("--namespace", "-n", default="", help="Destination namespace."),
    click.option("--project", default="", help="Argo CD project."),
    click.option("--revision", default="", help="Revision templates see as app.revision."),
    click.option("--repo-url", default="", help="Source repository URL (app.source.repo_url)."),
    click.option(
        "--target-revision",
        default="",
        help="Source target revision, e.g. HEAD (app.source.target_revision).",
    ),
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
)

# How images are pinned and what is printed: shared with `tagpin pin`, which pins a stream.
_PINNING_OPTIONS = (
    click.option(
        "--image-updater",
        "updater_pairs",
        multiple=True,
        metavar="KEY=VALUE",
        help="The image-updater parameter, e.g. web.allow-tags=regexp:^pr-42- (repeatable).",
    ),
    click.option(
        "--digests",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="Offline: take every digest from this lock file; never ask ECR.",
    ),
    click.option(
        "--refresh",
        is_flag=True,
        help="Ask ECR for every image now instead of trusting the cache (TAGPIN_CACHE=refresh): "
        "shows a push made a moment ago.",
    ),
    click.option(
        "--output",
        "-o",
        "output_format",
        type=OutputFormat(OUTPUT_FORMATS, case_sensitive=False),
        default="yaml",
        show_default=True,
        help="Format of the objects printed: yaml (what Argo CD reads) or json (one JSON list "
        "of the same objects, keys sorted, for tools); tagpin lock prints none (its lock is "
        "YAML).",
    ),
)


def _apply(options: Sequence[Callable[[Any], Any]], command: Any) -> Any:
    for option in reversed(options):
        command = option(command)
    return command


def render_options(command: Any) -> Any:
    """The render flags: one definition for every command that renders an app directory
    (`render`, `diff`, `lock`), so each takes the same flags with the same meaning."""
    return _apply((*_REQUEST_OPTIONS, *_PINNING_OPTIONS), command)


def pinning_options(command: Any) -> Any:
    """The render flags that apply to a manifest stream (`tagpin pin`): it has no app
    directory, values or template context, but pins and prints as a render does."""
    return _apply(_PINNING_OPTIONS, command)


def check_pairs(options: Mapping[str, Any]) -> dict[str, str]:
    """A malformed KEY=VALUE is a usage error before anything runs; the `--image-updater`
    pairs."""
    pairs(options.get("env_pairs", ()), "--env")
    pairs(options.get("set_pairs", ()), "--set")
    return pairs(options["updater_pairs"], "--image-updater")


def digests_file(options: Mapping[str, Any]) -> Path | None:
    """`--digests FILE`, absolute (the commands may change directory before reading it)."""
    given: Path | None = options["digests"]
    return Path(os.path.abspath(given)) if given is not None else None


def refreshed(settings: Settings, options: Mapping[str, Any]) -> Settings:
    """`--refresh`: what ECR says now (Settings.fresh)."""
    return settings.fresh() if options["refresh"] else settings


def formatted(result: RenderResult, options: Mapping[str, Any]) -> str:
    """The text to print: the YAML, or with `-o json` the objects as one JSON list, keys
    sorted (deterministic too)."""
    if options["output_format"] == "json":
        return as_json([m.body for m in result.manifests])
    return result.text


def as_json(objects: list[Any]) -> str:
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


def app_request(
    app_dir: Path,
    options: Mapping[str, Any],
    *,
    must_exist: bool = True,
    settings_env: Mapping[str, str] | None = None,
) -> RenderRequest:
    """The RenderRequest the render flags (`render_options`) describe; its messages name the
    flags, or Argo CD's names for parameters given as Argo CD sends them."""
    words = ARGOCD_WORDS if options["parameters_json"] else CLI_WORDS
    parameters = parse_parameters(
        options["parameters_json"]
        or parameters_json(
            options["values_files"],
            pairs(options["set_pairs"], "--set"),
            pairs(options["updater_pairs"], "--image-updater"),
        ),
        CLI_WORDS.parameters,
    )
    environ = dict(os.environ) if settings_env is None else dict(settings_env)
    request = for_directory(
        app_dir,
        repo_root=options["repo_root"],
        must_exist=must_exist,
        app=AppInfo(
            instance=options["app_name"],
            namespace=options["namespace"],
            project=options["project"],
            revision=options["revision"],
            repo_url=options["repo_url"],
            target_revision=options["target_revision"],
        ),
        kube=KubeInfo(
            version=options["kube_version"],
            api_versions=parse_api_versions(options["api_versions"]),
        ),
        env=pairs(options["env_pairs"], "--env"),
        parameters=parameters,
        settings_env=environ,
        settings=refreshed(Settings.from_environ(environ), options),
        words=words,
    )
    return request._replace(digests=digests_file(options))


def stream_request(
    *, app_name: str, namespace: str, updater: dict[str, str], options: Mapping[str, Any]
) -> RenderRequest:
    """The RenderRequest the flags of `pin` describe, before its stream is read: no app
    directory (the working directory stands in), no values; only the image-updater
    parameter."""
    environ = dict(os.environ)
    return RenderRequest(
        app_dir=Path.cwd(),
        repo_root=Path.cwd(),
        app=AppInfo(instance=app_name, namespace=namespace),
        kube=KubeInfo(),
        env={},
        parameters=parse_parameters(parameters_json(image_updater=updater)),
        settings_env=environ,
        settings=refreshed(Settings.from_environ(environ), options),
        words=CLI_WORDS,
        digests=digests_file(options),
    )
