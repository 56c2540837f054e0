"""The `tagpin branch set|clear|status` commands: flags in, cmp.argocd.branch operations, lines out.

Credentials are the render's Application lookup's (KUBECONFIG, the pod's service account,
~/.kube/config, exec plugins such as `aws eks get-token`); ECR is asked fresh, never a cache.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any

import click

from cmp.output import Output, execute

DEFAULT_TIMEOUT_SECONDS = 600
DEFAULT_INTERVAL_SECONDS = 5.0


def _api(environ: Mapping[str, str]) -> Any:
    from cmp.argocd.kube import KubeApi
    from cmp.errors import AppLookupError

    api = KubeApi.from_environment(environ)
    if api is None:
        raise AppLookupError(
            "no Kubernetes credentials found (no KUBECONFIG, service-account token or "
            "~/.kube/config)"
        )
    return api


def _registry(environ: Mapping[str, str], output: Output) -> Any:
    """ECR as it is now: the tag list is always asked afresh (the cache is refreshed)."""
    from cmp.services import services_for
    from cmp.settings import Settings

    settings = Settings.from_environ(environ).fresh()
    return services_for(settings, environ).ecr(settings, None, output.warnings)


def _default_user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _now() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _will_deploy(where: str, change: Any) -> str:
    if change.deploy is None:
        return f"{where}: {change.instead}\n"
    return f"{where}: {change.deploy.reference}\n"


namespace_option = click.option(
    "--namespace",
    "-n",
    default=None,
    metavar="NAMESPACE",
    help="Namespace of the Application (default: ARGOCD_NAMESPACE, else argocd).",
)


def _seconds_option(
    flag: str, default: float, minimum: float, help: str
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return click.option(
        flag, default=default, show_default=True, type=click.FloatRange(min=minimum), help=help
    )


def _namespace(value: str | None) -> str:
    from cmp.argocd.lookup import DEFAULT_NAMESPACE

    return value or os.environ.get("ARGOCD_NAMESPACE", "").strip() or DEFAULT_NAMESPACE


def _run(ctx: click.Context, job: Callable[[Output], str]) -> int:
    return execute(job, debug=ctx.obj["debug"])


def branch_command() -> click.Group:
    @click.group("branch")
    def branch() -> None:
        """Branch deploys: point an Application's Image Updater rule at a branch's tags."""

    @branch.command("set")
    @click.argument("app")
    @click.option(
        "--allow-tags",
        required=True,
        metavar="REGEXP",
        help="Tags to deploy, e.g. '^pr-42-' (RE2, unanchored; 'regexp:…' or 'any' also accepted).",
    )
    @click.option("--alias", default=None, help="image-list alias (default: the only one).")
    @click.option(
        "--image",
        default=None,
        metavar="REPOSITORY",
        help="ECR repository to add to image-list when the alias is not there yet.",
    )
    @click.option(
        "--strategy",
        type=click.Choice(["alphabetical", "newest-build", "semver", "digest"]),
        default=None,
        help="Update strategy (default: alphabetical; `clear` puts back the old one).",
    )
    @namespace_option
    @click.option("--by", default=None, help="Who deploys, for the record (default: $USER).")
    @click.option(
        "--wait",
        is_flag=True,
        help="Wait until the digest runs, Synced and Healthy (progress on stderr).",
    )
    @_seconds_option("--timeout", DEFAULT_TIMEOUT_SECONDS, 0, "Seconds --wait waits.")
    @_seconds_option(
        "--interval", DEFAULT_INTERVAL_SECONDS, 0.01, "Seconds between polls of --wait."
    )
    @click.pass_context
    def set_command(
        ctx: click.Context,
        app: str,
        allow_tags: str,
        alias: str | None,
        image: str | None,
        strategy: str | None,
        namespace: str | None,
        by: str | None,
        wait: bool,
        timeout: float,
        interval: float,
    ) -> int:
        """Deploy the newest tag matching --allow-tags to APP (refused if none matches).

        Writes the rule, a record of the values it replaces (annotation tagpin.dev/branch-deploy)
        and a hard refresh in one patch, then prints the image that will deploy."""
        from cmp.argocd import branch as ops

        def job(output: Output) -> str:
            with _api(os.environ) as api:
                live = ops.read(api, _namespace(namespace), app)
                change = ops.plan_set(
                    live,
                    _registry(os.environ, output),
                    allow_tags=allow_tags,
                    alias=alias,
                    image=image,
                    strategy=strategy,
                    by=by or _default_user(),
                    now=_now(),
                )
                written = ops.apply(api, change)
                sys.stdout.write(_will_deploy(f"{written.where} alias {change.alias}", change))
                sys.stdout.flush()
                if wait and change.deploy is not None:
                    from cmp.argocd.branch_wait import wait_for

                    wait_for(
                        api,
                        written,
                        change.deploy.digest,
                        timeout=timeout,
                        interval=interval,
                        progress=sys.stderr,
                    )
            output.warn(*change.warnings)
            return ""

        return _run(ctx, job)

    @branch.command("clear")
    @click.argument("app")
    @click.option("--alias", default=None, help="Alias to clear (default: the only one set).")
    @click.option(
        "--if-allow-tags",
        "only_if",
        default=None,
        metavar="REGEXP",
        help="Clear only while this rule is in force (a closed PR clears its own "
        "deploy, not a newer one).",
    )
    @namespace_option
    @click.pass_context
    def clear_command(
        ctx: click.Context, app: str, alias: str | None, only_if: str | None, namespace: str | None
    ) -> int:
        """Put back the rule `set` replaced (or remove it if there was none), hard refresh."""
        from cmp.argocd import branch as ops

        def job(output: Output) -> str:
            with _api(os.environ) as api:
                live = ops.read(api, _namespace(namespace), app)
                change = ops.plan_clear(
                    live, _registry(os.environ, output), alias=alias, only_if=only_if
                )
                if isinstance(change, str):
                    output.note(change)
                    return ""
                written = ops.apply(api, change)
            return _will_deploy(f"{written.where} alias {change.alias}", change)

        return _run(ctx, job)

    @branch.command("status")
    @click.argument("apps", nargs=-1)
    @namespace_option
    @click.option(
        "--output",
        "-o",
        "output_format",
        type=click.Choice(["text", "json"]),
        default="text",
        show_default=True,
    )
    @click.pass_context
    def status_command(
        ctx: click.Context, apps: tuple[str, ...], namespace: str | None, output_format: str
    ) -> int:
        """Per app and alias: the rule, where it comes from, what it selects, what runs.

        Without APP, every Application in the namespace that has an image-list."""
        from cmp.argocd import branch as ops

        def job(output: Output) -> str:
            where = _namespace(namespace)
            with _api(os.environ) as api:
                if apps:
                    live = [ops.read(api, where, name) for name in apps]
                else:
                    live, unreadable = ops.branch_apps(api, where)
                    output.warn(*unreadable)
            registry = _registry(os.environ, output)
            rows = [row for app in live for row in ops.status_rows(app, lambda: registry)]
            if output_format == "json":
                return json.dumps(rows, indent=2, sort_keys=True) + "\n"
            return "".join(_status_text(row) for row in rows)

        return _run(ctx, job)

    return branch


def _status_text(row: Mapping[str, Any]) -> str:
    from cmp.argocd.branch import REFUSED

    name = row["alias"] if row["alias"] is not None else row["image"]
    if (row["error"] or "").startswith(REFUSED):  # its rule would not be the one applied
        shown = f"{row['app']} {name}" if name is not None else row["app"]
        return f"{shown}: {row['error']}\n"
    if row["image"] is None:  # the Application's branch deploys cannot be read at all
        return f"{row['app']}: cannot show its branch deploys: {row['error']}\n"
    lines = [
        f"{row['app']} {name}: allow-tags {row['allowTags'] or 'any'}, strategy "
        f"{row['strategy']} (from {row['source']})",
        f"  selects: {row['image']}:{row['tag']}@{row['digest']}"
        if row["tag"]
        else f"  selects: nothing ({row['error']})",
        f"  running: {', '.join(row['running']) or 'nothing'} ({row['sync']}, {row['health']})",
    ]
    if row["setBy"]:
        lines.append(f"  set by {row['setBy']} at {row['setAt']}")
    return "\n".join(lines) + "\n"
