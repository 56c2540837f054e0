"""`tagpin webhook`: turn registry push events into immediate hard refreshes of exactly the
Argo CD Applications that use the pushed repository, instead of waiting for the next poll.

Only click is imported here; the server loads when the command runs, so `tagpin generate`
(one process per render) never pays for it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from cmp.errors import ConfigError, TagpinError
from cmp.settings import SETTINGS_BY_ENV, env_name, parse_number

if TYPE_CHECKING:
    from cmp.registry.shared import RedisSettings
    from cmp.webhook.server import WebhookConfig

SECRET_ENV = env_name("webhook_secret")


def parse_listen(text: str) -> tuple[str, int]:
    """`host:port` (IPv4 or a name) → (host, port); ConfigError says what is wrong."""
    host, colon, port_text = text.rpartition(":")
    if not colon or not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ConfigError(f"--listen {text!r} is not HOST:PORT, e.g. 0.0.0.0:8080")
    return host, int(port_text)


def read_secret(environ: Mapping[str, str], secret_file: Path | None) -> str:
    """The shared secret from --secret-file or TAGPIN_WEBHOOK_SECRET; refuses to run without."""
    from cmp.webhook.events import check_secret

    from_env = environ.get(SECRET_ENV, "")
    if secret_file is not None and from_env:
        raise ConfigError(f"both --secret-file and {SECRET_ENV} are set: keep one")
    if secret_file is not None:
        try:
            secret = secret_file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as error:
            raise ConfigError(f"cannot read --secret-file {secret_file}: {error}") from None
    else:
        secret = from_env.strip()
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


def shared_cache_settings(environ: Mapping[str, str]) -> RedisSettings | None:
    """TAGPIN_REDIS_URL and its password: the Redis whose generations a push bumps."""
    from cmp.registry.shared import redis_settings
    from cmp.settings import Settings

    return redis_settings(Settings.from_environ(environ), signing_key_required=False)


class _TableNumber(click.ParamType[float, Any]):
    """A numeric flag parsed by the settings table's one parser (cmp.settings.parse_number),
    so `nan`, `1e400` or a value past the row's maximum is refused as from the environment."""

    name = "number"

    def __init__(self, env: str, *, whole: bool) -> None:
        self.env, self.whole = env, whole

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        if isinstance(value, int | float):  # the default, from the table
            return value
        try:
            return parse_number(self.env, str(value), whole=self.whole, flag=True)
        except ConfigError as error:
            self.fail(str(error), param, ctx)


def _number_flag(field: str, *, whole: bool = False) -> dict[str, Any]:
    """A numeric flag's type, default and variable, from its row in the settings table."""
    env = env_name(field)
    setting = SETTINGS_BY_ENV[env]
    default = int(setting.default) if whole else float(setting.default)
    return {
        "type": _TableNumber(env, whole=whole),
        "default": default,
        "show_default": True,
        "envvar": env,
    }


def webhook_command() -> click.Command:
    """The `tagpin webhook` command; cmp.commands.main registers it with `cli.add_command`."""

    @click.command("webhook")
    @click.option(
        "--listen",
        default=SETTINGS_BY_ENV[env_name("webhook_listen")].default,
        show_default=True,
        envvar=env_name("webhook_listen"),
        help="HOST:PORT to serve on; 0.0.0.0:8080 in a pod.",
    )
    @click.option(
        "--namespace",
        "-n",
        "namespaces",
        multiple=True,
        envvar=env_name("webhook_namespaces"),
        help="Namespace whose Applications to refresh; repeat for several "
        "(default: ARGOCD_NAMESPACE, else the pod's namespace, else argocd).",
    )
    @click.option(
        "--secret-file",
        type=click.Path(dir_okay=False, path_type=Path),
        envvar=env_name("webhook_secret_file"),
        help=f"File holding the shared secret (instead of {SECRET_ENV}).",
    )
    @click.option(
        "--coalesce-seconds",
        **_number_flag("webhook_coalesce_seconds"),
        help="Pushes for one Application within this window give one refresh.",
    )
    @click.option(
        "--max-body-bytes",
        **_number_flag("webhook_max_body_bytes", whole=True),
        help="Larger request bodies get 413.",
    )
    @click.option(
        "--max-event-age",
        **_number_flag("webhook_max_event_age"),
        help="Seconds; older (or this far future) events are refused as replays.",
    )
    @click.option(
        "--app-cache-seconds",
        **_number_flag("webhook_app_cache_seconds"),
        help="Events within this many seconds share one list of Applications.",
    )
    @click.option(
        "--request-timeout",
        **_number_flag("webhook_request_timeout"),
        help="Seconds a connection may take in all (sending and being answered).",
    )
    @click.option(
        "--max-connections",
        **_number_flag("webhook_max_connections", whole=True),
        help="Authenticated requests served at once; more get 503 with Retry-After "
        "(4x as many connections may be sending theirs; past that the oldest is dropped).",
    )
    @click.option(
        "--shutdown-seconds",
        **_number_flag("webhook_shutdown_seconds"),
        help="SIGTERM to exit at most; keep it under the pod's grace period.",
    )
    def webhook(
        listen: str,
        namespaces: tuple[str, ...],
        secret_file: Path | None,
        coalesce_seconds: float,
        max_body_bytes: int,
        max_event_age: float,
        app_cache_seconds: float,
        request_timeout: float,
        max_connections: int,
        shutdown_seconds: float,
    ) -> int:
        """Hard-refresh the Applications a registry push affects (ECR via EventBridge, or a
        signed generic payload). Needs a shared secret; see docs/webhook.md."""
        from cmp.settings import unknown_settings
        from cmp.webhook.server import WebhookConfig

        for warning in unknown_settings(os.environ):
            sys.stderr.write(f"tagpin webhook: warning: {warning}\n")
        try:
            host, port = parse_listen(listen)
            config = WebhookConfig(
                secret=read_secret(os.environ, secret_file),
                namespaces=tuple(dict.fromkeys(namespaces)) or default_namespaces(os.environ),
                host=host,
                port=port,
                coalesce_seconds=coalesce_seconds,
                max_body_bytes=max_body_bytes,
                max_event_age_seconds=max_event_age,
                app_cache_seconds=app_cache_seconds,
                shared_cache=shared_cache_settings(os.environ),
                request_timeout_seconds=request_timeout,
                max_connections=max_connections,
                shutdown_seconds=shutdown_seconds,
            )
            return run(config, os.environ)
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
