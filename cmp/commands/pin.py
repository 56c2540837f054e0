"""The `tagpin pin` command: flags in, a manifest stream through the render pipeline (the
stream is its first stage, cmp/source/stream.py); cmp.commands.main registers it."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from cmp.commands.options import pinning_options


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
    @pinning_options
    @click.option(
        "--lock",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="A tagpin.lock to take digests from first, under TAGPIN_LOCK as for an "
        "app's own lock.",
    )
    @click.option(
        "--config",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="A tagpin.yaml whose images settings (paths, requireDigests, allowUnpinned) apply.",
    )
    @click.pass_context
    def command(
        ctx: click.Context,
        /,
        files: tuple[str, ...],
        app_name: str,
        namespace: str,
        lock: Path | None,
        config: Path | None,
        **options: Any,
    ) -> int:
        """Pin every ECR image in a YAML or JSON manifest stream (FILEs, or standard input
        for none or `-`) and print it as the sidecar would: canonical YAML, same bytes for the
        same objects. For `helm template ... | tagpin pin -` and Helm's post-renderer.

        Of the render flags it takes those that apply to a stream (--image-updater,
        --digests, --refresh, -o); the others describe an app directory."""
        from cmp.commands.options import check_pairs, formatted, stream_request
        from cmp.limits.memory import limit_render
        from cmp.output import Output, execute
        from cmp.pipeline import run
        from cmp.request import ManifestStream
        from cmp.source.stream import read_inputs

        updater = check_pairs(options)

        def job(output: Output) -> str:
            request = stream_request(
                app_name=app_name, namespace=namespace, updater=updater, options=options
            )
            limit_render(request.settings)
            inputs = read_inputs(files, sys.stdin.buffer, request.settings.max_file_bytes)
            stream = ManifestStream(inputs, config=config, lock=lock)
            return formatted(run(request._replace(stream=stream), output=output), options)

        return execute(job, debug=ctx.obj["debug"])

    return command
