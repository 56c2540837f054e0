"""The `tagpin` click group and its commands, one module each in cmp/commands/.

Each command fills a RenderRequest through cmp/commands/options.py and hands it to
cmp/pipeline.py; the job runner (cmp/output.py) prints and picks the exit code.
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from cmp import __version__
from cmp.generate import generate


def _debug_after_subcommand(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:  # the group's callback has already run and made ctx.obj (shared with the parent)
        ctx.ensure_object(dict)["debug"] = True


class _Group(click.Group):
    """Every subcommand also takes `--debug`, so `tagpin render --debug` works like
    `tagpin --debug render` (commands registered later, e.g. the webhook, included)."""

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        if not any("--debug" in getattr(p, "opts", ()) for p in cmd.params):
            cmd.params.append(
                click.Option(
                    ["--debug"],
                    is_flag=True,
                    expose_value=False,
                    callback=_debug_after_subcommand,
                    help="Show tracebacks for errors.",
                )
            )
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
    # Defined here, not in cmp/generate.py: the sidecar's `tagpin generate` imports
    # that module without click (cmp/cli.py's fast path).
    return generate(os.environ, Path.cwd(), debug=ctx.obj["debug"])


def _register() -> None:
    from cmp.commands.branch import branch_command
    from cmp.commands.diff import diff_command
    from cmp.commands.lock import lock_command
    from cmp.commands.pin import pin_command
    from cmp.commands.plugin_yaml import plugin_yaml_command
    from cmp.commands.render import render_command
    from cmp.commands.render_server import render_server_command
    from cmp.commands.webhook import webhook_command

    for command in (
        render_command,
        render_server_command,
        plugin_yaml_command,
        lock_command,
        diff_command,
    ):
        cli.add_command(command)
    for factory in (webhook_command, pin_command, branch_command):
        cli.add_command(factory())


_register()
