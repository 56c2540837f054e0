"""`tagpin render-server`: serve `tagpin generate` from warm forked workers."""

from __future__ import annotations

import os
import sys

import click

from cmp.errors import ConfigError


@click.command("render-server")
@click.option(
    "--socket",
    "socket_path",
    default=None,
    metavar="PATH",
    help="Unix socket to serve (default: TAGPIN_RENDER_SERVER_SOCKET, else "
    "render-server-<version>.sock in the cache directory).",
)
@click.option(
    "--log-renders",
    is_flag=True,
    help="Log every render (exit status, time, peak memory), not only failures.",
)
@click.option(
    "--profile-dir",
    default=None,
    metavar="DIR",
    help="Render under cProfile: each worker writes worker-<pid>.prof to DIR "
    "(a directory only this user can write; docs/performance.md).",
)
def render_server_command(
    socket_path: str | None, log_renders: bool, profile_dir: str | None
) -> int:
    """Serve `tagpin generate` from warm forked workers (TAGPIN_RENDER_SERVER; docs/server.md)."""
    from cmp.server.client import socket_path as default_socket
    from cmp.server.listener import serve

    path = socket_path or default_socket(os.environ)
    if path is None:
        raise click.UsageError(
            "no socket path: pass --socket, or set "
            "TAGPIN_RENDER_SERVER_SOCKET or TAGPIN_CACHE_DIR "
            "(a path of at most 100 bytes)"
        )
    try:
        return serve(path, sys.stderr, log_renders=log_renders, profile_dir=profile_dir)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
