"""The `tagpin pin` command: flags in, cmp.commands.stream does the work;
cmp.commands.main registers it."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from cmp.commands.options import digests_option, image_updater_option


def pin_command() -> click.Command:
    @click.command("pin")
    @click.argument("files", nargs=-1, metavar="[FILE...]")
    @click.option(
        "--app-name",
        default="",
        help="Application name (ARGOCD_APP_NAME): whose live Image Updater "
        "annotations to read (TAGPIN_APP_LOOKUP).",
    )
    @click.option(
        "--namespace",
        "-n",
        default="",
        help="Destination namespace (objects without one are checked as in it).",
    )
    @image_updater_option()
    @click.option(
        "--lock",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="A tagpin.lock to take digests from first, under TAGPIN_LOCK as for an "
        "app's own lock.",
    )
    @digests_option("Pin offline: take every digest from this lock file; never ask ECR.")
    @click.option(
        "--config",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="A tagpin.yaml whose images settings (paths, requireDigests, allowUnpinned) apply.",
    )
    @click.pass_context
    def command(
        ctx: click.Context,
        files: tuple[str, ...],
        app_name: str,
        namespace: str,
        updater_pairs: tuple[str, ...],
        lock: Path | None,
        digests: Path | None,
        config: Path | None,
    ) -> int:
        """Pin every ECR image in a YAML or JSON manifest stream (FILEs, or standard input
        for none or `-`) and print it as the sidecar would: canonical YAML, same bytes for the
        same objects. For `helm template ... | tagpin pin -` and Helm's post-renderer."""
        from cmp.commands.options import pairs, stream_request
        from cmp.commands.run import execute, limit_memory
        from cmp.commands.stream import StreamConfig, pin_stream, read_config, read_inputs
        from cmp.services import limits_from, services_from
        from cmp.settings import Settings

        updater = pairs(updater_pairs, "--image-updater")

        def job() -> Any:
            environ = dict(os.environ)
            settings = Settings.from_environ(environ)
            limit_memory(settings)
            inputs = read_inputs(files, sys.stdin.buffer, limits_from(settings))
            request = stream_request(
                app_name=app_name,
                namespace=namespace,
                updater=updater,
                settings_env=environ,
                settings=settings,
            )
            services = services_from(request)
            if digests is not None:
                services.digests_file = Path(os.path.abspath(digests))
            stream_config = read_config(config) if config is not None else StreamConfig()
            return pin_stream(inputs, request, services, config=stream_config, lock=lock)

        return execute(job, debug=ctx.obj["debug"])

    return command
