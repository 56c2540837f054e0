"""click commands. Each fills a RenderRequest (or similar value) and hands it to cmp.app."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from . import __version__
from .cli import execute, generate
from .errors import ConfigError, ResolveError
from .request import AppInfo, KubeInfo, RenderRequest, for_directory, parse_api_versions
from .settings import PARAMETERS_BY_NAME, parse_parameters, plugin_yaml, setting_choice


def _pairs(items: tuple[str, ...], flag: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint=flag)
        pairs[key] = value
    return pairs


def _debug_after_subcommand(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:  # the group's callback has already run and made ctx.obj (shared with the parent)
        ctx.ensure_object(dict)["debug"] = True


class _Group(click.Group):
    """Every subcommand also takes `--debug`, so `tagpin render --debug` works like
    `tagpin --debug render` (commands registered later, e.g. the webhook, included)."""

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        if not any("--debug" in getattr(p, "opts", ()) for p in cmd.params):
            cmd.params.append(click.Option(
                ["--debug"], is_flag=True, expose_value=False,
                callback=_debug_after_subcommand, help="Show tracebacks for errors."))
        super().add_command(cmd, name)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
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
    from .app import run, services_from
    from .cli import limit_memory

    env = _pairs(env_pairs, "--env")
    sets = _pairs(set_pairs, "--set")
    updater = _pairs(updater_pairs, "--image-updater")
    debug = ctx.obj["debug"]

    def job() -> Any:
        settings_env = dict(os.environ)
        if refresh and settings_env.get("TAGPIN_CACHE", "").strip().lower() != "off":
            settings_env["TAGPIN_CACHE"] = "refresh"  # what ECR says now; still updates the cache
        request = for_directory(
            app_dir,
            repo_root=repo_root,
            app=AppInfo(instance=app_name, namespace=namespace, project=project,
                        revision=revision, repo_url=repo_url, target_revision=target_revision),
            kube=KubeInfo(version=kube_version, api_versions=parse_api_versions(api_versions)),
            env=env,
            parameters=parse_parameters(
                parameters_json or _parameters_from_flags(values_files, sets, updater)),
            settings_env=settings_env,
        )
        limit_memory(request.settings_env)
        services = services_from(request.settings_env)
        if digests is not None:
            services.digests_file = Path(os.path.abspath(digests))
        result = run(request, services)
        if output_format == "json":
            result.text = _as_json([m.body for m in result.manifests])
        return result

    return execute(job, debug=debug)


def _as_json(objects: list[Any]) -> str:
    """`render --output json`: the objects as one JSON list, keys sorted (deterministic too)."""
    from .errors import ManifestError

    try:
        return json.dumps(objects, sort_keys=True, indent=2, ensure_ascii=False,
                          allow_nan=False) + "\n"
    except ValueError as exc:  # .nan/.inf: YAML has them, JSON does not
        raise ManifestError(f"the rendered objects cannot be written as JSON: {exc}; "
                            "use --output yaml") from None


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


@cli.command("render-server")
@click.option("--socket", "socket_path", default=None, metavar="PATH",
              help="Unix socket to serve (default: TAGPIN_RENDER_SERVER_SOCKET, else "
                   "render-server-<version>.sock in the cache directory).")
@click.option("--log-renders", is_flag=True,
              help="Log every render (exit status, time, peak memory), not only failures.")
def render_server_command(socket_path: str | None, log_renders: bool) -> int:
    """Serve `tagpin generate` from warm forked workers (TAGPIN_RENDER_SERVER; docs/server.md)."""
    from .renderclient import socket_path as default_socket
    from .renderserver import serve

    path = socket_path or default_socket(os.environ)
    if path is None:
        raise click.UsageError("no socket path: pass --socket, or set "
                               "TAGPIN_RENDER_SERVER_SOCKET or TAGPIN_CACHE_DIR "
                               "(a path of at most 100 bytes)")
    try:
        return serve(path, sys.stderr, log_renders=log_renders)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


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


def _app_options(command: Any) -> Any:
    """The flags `lock` and `diff` share with `render`: what to render, as the sidecar would."""
    options = [
        click.argument("app_dir", default=".", type=click.Path(file_okay=False, path_type=Path)),
        click.option("--repo-root", type=click.Path(file_okay=False, path_type=Path),
                     help="Repository root (default: the nearest directory holding .git)."),
        click.option("--app-name", default="", help="Application name (ARGOCD_APP_NAME)."),
        click.option("--namespace", "-n", default="", help="Destination namespace."),
        click.option("--project", default="", help="Argo CD project."),
        click.option("--revision", default="", help="Revision templates see as app.revision."),
        click.option("--env", "env_pairs", multiple=True, metavar="KEY=VALUE",
                     help="Plugin env entry, as ARGOCD_ENV_KEY (repeatable)."),
        click.option("--values-file", "-f", "values_files", multiple=True, metavar="FILE",
                     help="Values file relative to APP_DIR: the values-files parameter "
                     "(repeatable)."),
        click.option("--set", "set_pairs", multiple=True, metavar="KEY=VALUE",
                     help="The values parameter, e.g. --set image.tag=v2 (repeatable)."),
        click.option("--parameters-json", default=None, metavar="JSON",
                     help="Parameters exactly as Argo CD sends them in ARGOCD_APP_PARAMETERS."),
        click.option("--kube-version", default="", help="Cluster version, e.g. 1.31.2."),
        click.option("--api-versions", default="",
                     help="Comma-separated API versions, as KUBE_API_VERSIONS."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _app_request(app_dir: Path, options: dict[str, Any], *, must_exist: bool = True,
                 updater: dict[str, str] | None = None) -> RenderRequest:
    """A RenderRequest from `_app_options` flags. Locks show what git says, never what a
    branch deploy would pick; a preview takes the `image-updater` parameter only if given."""
    parameters = parse_parameters(options["parameters_json"] or _parameters_from_flags(
        options["values_files"], _pairs(options["set_pairs"], "--set"), updater or {}))
    return for_directory(
        app_dir,
        repo_root=options["repo_root"],
        must_exist=must_exist,
        app=AppInfo(instance=options["app_name"], namespace=options["namespace"],
                    project=options["project"], revision=options["revision"]),
        kube=KubeInfo(version=options["kube_version"],
                      api_versions=parse_api_versions(options["api_versions"])),
        env=_pairs(options["env_pairs"], "--env"),
        parameters=parameters,
        settings_env=dict(os.environ),
    )


@cli.command("lock")
@_app_options
@click.option("--update", is_flag=True,
              help="Ask ECR for every tag, also those already locked (default: only new tags).")
@click.option("--keep", is_flag=True,
              help="Keep entries this render does not use (lock one app's values files in turn).")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to write the lock (default: APP_DIR/tagpin.lock).")
@click.option("--check", is_flag=True,
              help="For CI: write nothing; exit 11 if the lock lacks a tag a render uses or "
              "locks a digest ECR no longer has for it.")
@click.pass_context
def lock_command(ctx: click.Context, app_dir: Path, update: bool, keep: bool,
                 output: Path | None, check: bool, **options: Any) -> int:
    """Write APP_DIR/tagpin.lock: the digest of every ECR image tag a render with these flags
    uses. Commit it; renders then take digests from git instead of ECR."""
    from .app import CACHE_MODES, limits_from, services_from
    from .lock import LOCK_FILE, LockOutcome, lock_app, read_lock, write_lock

    def job() -> LockOutcome:
        request = _app_request(app_dir, options)
        try:
            return locked(request)
        except ResolveError as error:  # `tag: 1.10` read as 1.1: say so, as a render does
            from .app import values_of
            from .hints import with_number_hints

            hinted = with_number_hints(error, values_of(request))
            if hinted is error:
                raise
            raise hinted from error

    def locked(request: RenderRequest) -> LockOutcome:
        target = Path(os.path.abspath(output)) if output else request.app_dir / LOCK_FILE
        limit = limits_from(os.environ).max_file_bytes
        # The app's own lock obeys the repository's rules; a path given with --output is the
        # user's choice.
        root = None if output else request.repo_root
        existing = (read_lock(target, str(target), repo_root=root, max_bytes=limit)
                    if target.is_file() else [])
        environ = dict(os.environ)
        if setting_choice(environ, "TAGPIN_CACHE", CACHE_MODES) != "off":
            environ["TAGPIN_CACHE"] = "refresh"  # what ECR says now, not what a cache remembers
        services = services_from(environ)
        if check:
            from .lockcheck import check_lock

            shown = os.path.relpath(target) if output is None else str(output)
            notes = check_lock(request, services.registry_factory, existing, shown=shown,
                               concurrency=services.concurrency)
            return LockOutcome(warnings=services.warnings, notes=notes)
        result = lock_app(request, services.registry_factory, existing=existing, update=update,
                          keep=keep, concurrency=services.concurrency)
        write_lock(target, result.entries)
        shown = os.path.relpath(target) if output is None else str(output)
        return LockOutcome(warnings=services.warnings, notes=result.summary(shown))

    return execute(job, debug=ctx.obj["debug"])


@cli.command("diff")
@_app_options
@click.option("--base", default="HEAD", show_default=True,
              help="Git revision to compare from (in CI: the merge base with the target branch).")
@click.option("--head", default=None,
              help="Git revision to compare to (default: the working tree, uncommitted changes "
              "included).")
@click.option("--context", "-U", "context_lines", default=3, show_default=True,
              type=click.IntRange(min=0), help="Lines of context around each change.")
@click.option("--image-updater", "updater_pairs", multiple=True, metavar="KEY=VALUE",
              help="The image-updater parameter, e.g. web.allow-tags=regexp:^pr-42- "
              "(repeatable; both sides).")
@click.option("--digests", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Render both sides offline: every digest from this lock file; never ask ECR.")
@click.pass_context
def diff_command(ctx: click.Context, app_dir: Path, base: str, head: str | None,
                 context_lines: int, updater_pairs: tuple[str, ...], digests: Path | None,
                 **options: Any) -> int:
    """Render APP_DIR at two git revisions and print a unified diff of the outputs.

    Exit 0 when they are equal, 1 when they differ, another code on an error (see README)."""
    from .app import Services, services_from
    from .diff import DiffResult, diff_app
    from .errors import ExitStatus

    outcome: list[DiffResult] = []

    def job() -> DiffResult:
        request = _app_request(app_dir, options, must_exist=False,
                               updater=_pairs(updater_pairs, "--image-updater"))
        digests_file = Path(os.path.abspath(digests)) if digests is not None else None

        def services() -> Services:
            built = services_from(request.settings_env)
            built.annotations = None  # a preview shows git's tags, not a live branch deploy's
            built.digests_file = digests_file
            return built

        result = diff_app(request, services, base=base, head=head, context_lines=context_lines)
        outcome.append(result)
        return result

    status = execute(job, debug=ctx.obj["debug"])
    if status == ExitStatus.OK and outcome and outcome[0].different:
        return int(ExitStatus.DIFFERENT)
    return status


def _register_webhook() -> None:
    from .webhook import webhook_command

    cli.add_command(webhook_command())


_register_webhook()


def _register_pin() -> None:
    from .pin_command import pin_command

    cli.add_command(pin_command())


_register_pin()


def _register_branch() -> None:
    from .branch_command import branch_command

    cli.add_command(branch_command())


_register_branch()
