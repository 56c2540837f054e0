"""`tagpin webhook`: turn registry push events into immediate hard refreshes of exactly the
Argo CD Applications that use the pushed repository, instead of waiting for the next poll.

Its settings are TAGPIN_WEBHOOK_* rows of the settings table, read through `Settings` like
every other; each also has a flag, which wins over the variable. Only click is imported here;
the server loads when the command runs, so `tagpin generate` (one process per render) never
pays for it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from cmp.errors import ConfigError, TagpinError
from cmp.settings import SETTINGS_BY_FIELD, Number, Settings, env_name

if TYPE_CHECKING:
    from cmp.webhook.server import WebhookConfig

SECRET_ENV = env_name("webhook_secret")
F = TypeVar("F", bound=Callable[..., Any])


def parse_listen(text: str) -> tuple[str, int]:
    """`host:port` (IPv4 or a name) → (host, port); ConfigError says what is wrong."""
    host, colon, port_text = text.rpartition(":")
    if not colon or not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ConfigError(
            f"--listen {text!r} ({env_name('webhook_listen')}) is not HOST:PORT, e.g. 0.0.0.0:8080"
        )
    return host, int(port_text)


def read_secret(settings: Settings) -> str:
    """The shared secret from --secret-file (TAGPIN_WEBHOOK_SECRET_FILE) or
    TAGPIN_WEBHOOK_SECRET; refuses to run without."""
    from cmp.webhook.events import check_secret

    secret_file = settings.webhook_secret_file
    if secret_file and settings.webhook_secret:
        raise ConfigError(f"both --secret-file and {SECRET_ENV} are set: keep one")
    if secret_file:
        try:
            secret = Path(secret_file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as error:
            raise ConfigError(f"cannot read --secret-file {secret_file}: {error}") from None
    else:
        secret = settings.webhook_secret.strip()
    if not secret:
        raise ConfigError(
            f"no webhook secret: set {SECRET_ENV} or pass --secret-file; the webhook never "
            "runs unauthenticated"
        )
    try:
        check_secret(secret)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    return secret


def default_namespaces(environ: Mapping[str, str]) -> tuple[str, ...]:
    """Argo CD's namespace by the rules app lookup uses: ARGOCD_NAMESPACE, the pod's, `argocd`."""
    from cmp.argocd.kube import lookup_settings
    from cmp.settings import DEFAULT_SETTINGS

    # Only the namespace rules apply here, not TAGPIN_APP_LOOKUP or ARGOCD_APP_NAME.
    known = {k: v for k, v in environ.items() if k == "ARGOCD_NAMESPACE"}
    return (lookup_settings(DEFAULT_SETTINGS, known).namespace,)


def webhook_config(settings: Settings, environ: Mapping[str, str]) -> WebhookConfig:
    """The server's configuration from the settings (flags already applied)."""
    from cmp.registry.shared import redis_settings
    from cmp.settings import LogFormat
    from cmp.webhook.server import WebhookConfig

    host, port = parse_listen(settings.webhook_listen)
    namespaces = tuple(dict.fromkeys(settings.webhook_namespaces.split()))
    return WebhookConfig(
        secret=read_secret(settings),
        namespaces=namespaces or default_namespaces(environ),
        host=host,
        port=port,
        coalesce_seconds=settings.webhook_coalesce_seconds,
        max_body_bytes=settings.webhook_max_body_bytes,
        max_event_age_seconds=settings.webhook_max_event_age,
        app_cache_seconds=settings.webhook_app_cache_seconds,
        # TAGPIN_REDIS_URL and its password: the Redis whose generations a push bumps.
        shared_cache=redis_settings(settings, signing_key_required=False),
        request_timeout_seconds=settings.webhook_request_timeout,
        max_connections=settings.webhook_max_connections,
        shutdown_seconds=settings.webhook_shutdown_seconds,
        log_json=settings.log_format is not LogFormat.TEXT,
    )


def flags_over(settings: Settings, namespaces: tuple[str, ...], **flags: Any) -> Settings:
    """The settings with the flags given (not None) in place of their variables."""
    given = {field: value for field, value in flags.items() if value is not None}
    if namespaces:
        given["webhook_namespaces"] = " ".join(namespaces)
    return settings._replace(**given)


class _RowValue(click.ParamType[Any, Any]):
    """A flag read by its settings row, so `nan`, `1e400` or a value past the row's maximum
    is refused as it is from the environment."""

    def __init__(self, field: str) -> None:
        self.row = SETTINGS_BY_FIELD[field]
        self.name = "number" if isinstance(self.row, Number) else "text"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        try:
            return self.row.read(str(value), flag=True)
        except ConfigError as error:
            self.fail(str(error), param, ctx)


def _setting_flag(*names: str, field: str, **extra: Any) -> Callable[[F], F]:
    """A flag for the settings row `field`: its help and default come from the row; not given,
    the variable (or the default) applies."""
    row = SETTINGS_BY_FIELD[field]
    return click.option(
        *names,
        field,
        type=_RowValue(field),
        default=None,
        show_default=row.default,
        help=f"{row.help} ({row.env})",
        **extra,
    )


def webhook_command() -> click.Command:
    """The `tagpin webhook` command; cmp.commands.main registers it with `cli.add_command`."""

    @click.command("webhook")
    @_setting_flag("--listen", field="webhook_listen")
    @click.option(
        "--namespace",
        "-n",
        "namespaces",
        multiple=True,
        help="Namespace whose Applications to refresh; repeat for several "
        f"({env_name('webhook_namespaces')}; default: ARGOCD_NAMESPACE, else the pod's "
        "namespace, else argocd).",
    )
    @_setting_flag(
        "--secret-file",
        field="webhook_secret_file",
        metavar="FILE",
    )
    @_setting_flag("--coalesce-seconds", field="webhook_coalesce_seconds")
    @_setting_flag("--max-body-bytes", field="webhook_max_body_bytes")
    @_setting_flag("--max-event-age", field="webhook_max_event_age")
    @_setting_flag("--app-cache-seconds", field="webhook_app_cache_seconds")
    @_setting_flag("--request-timeout", field="webhook_request_timeout")
    @_setting_flag("--max-connections", field="webhook_max_connections")
    @_setting_flag("--shutdown-seconds", field="webhook_shutdown_seconds")
    def webhook(namespaces: tuple[str, ...], **flags: Any) -> int:
        """Hard-refresh the Applications a registry push affects (ECR via EventBridge, or a
        signed generic payload). Needs a shared secret; see docs/webhook.md."""
        from cmp.settings import unknown_settings

        for warning in unknown_settings(os.environ):
            sys.stderr.write(f"tagpin webhook: warning: {warning}\n")
        try:
            settings = flags_over(Settings.from_environ(os.environ), namespaces, **flags)
            return run(webhook_config(settings, os.environ), os.environ)
        except TagpinError as error:
            lines = [f"tagpin webhook: {error.title} (exit {int(error.exit_status)}):"]
            lines += [f"  {problem}" for problem in error.problems]
            sys.stderr.write("\n".join(lines) + "\n")
            return int(error.exit_status)

    return webhook


def run(config: WebhookConfig, environ: Mapping[str, str]) -> int:
    """Serve until SIGTERM or SIGINT, then shut down gracefully; the exit code."""
    import signal
    import threading

    from cmp.argocd.kube import KubeApi
    from cmp.webhook.server import WebhookServer

    kube = KubeApi.from_environment(environ)
    if kube is None:
        raise ConfigError(
            "no Kubernetes credentials found (no service-account token, KUBECONFIG or "
            "~/.kube/config): the webhook must list and patch Applications"
        )
    try:
        server = WebhookServer(config, kube, sys.stderr)
    except OSError as error:
        where = f"{config.host}:{config.port}"
        raise ConfigError(f"cannot listen on {where}: {error.strerror or error}") from None
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    with kube:
        try:
            server.start()
            while not stop.wait(1.0):
                pass
        finally:  # whatever happened, SIGTERM-to-exit stays within --shutdown-seconds
            server.stop()
    return 0
