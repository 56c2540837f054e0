"""`tagpin plugin-yaml`: plugin.yaml for Argo CD's cmp-server, from the parameter table."""

from __future__ import annotations

from pathlib import Path

import click

from cmp.settings import plugin_yaml


@click.command("plugin-yaml")
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
