"""What the commands share: turning their flags into the values the pipeline takes."""

from __future__ import annotations

import click


def pairs(items: tuple[str, ...], flag: str) -> dict[str, str]:
    """Repeated `--flag KEY=VALUE` options as a mapping; a malformed item is a usage error."""
    found: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint=flag)
        found[key] = value
    return found
