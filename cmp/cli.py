"""The console script `tagpin`: the fast path of `tagpin generate`, else the click commands.

Output discipline: stdout receives the rendered YAML exactly once, at the very end, and only
on success. Argo CD reads empty output as "no resources", which with auto-prune deletes the
app, so every failure writes to stderr only and exits non-zero.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (mypy knows the name)

if TYPE_CHECKING:  # imported where used: a served render imports next to nothing
    from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if args == ["generate"]:
        # The sidecar runs `tagpin generate` once per render: a render server's warm worker
        # answers if one is configured; otherwise skip importing click (~30 ms). The worker
        # builds the settings from the environment sent with the request, and reports a bad
        # one as an in-process render does.
        from cmp.server.client import ask_server, served_mode

        mode = served_mode(os.environ)
        if mode is not None:
            try:
                status = ask_server(os.environ, os.getcwd(), start=mode == "auto")
            except KeyboardInterrupt:  # the worker sees the connection close and ends too
                status = 130  # ExitStatus.INTERRUPTED, as an in-process render reports it
            if status is not None:
                exit_now(status)
        from pathlib import Path

        from cmp.generate import generate

        exit_now(generate(os.environ, Path.cwd()))
    sys.exit(_click_main(args))


# The image's `tagpin` (Dockerfile): pip's console script imports `re` (~6 ms, a sixth of a
# served render) only to tidy argv[0] for Windows; this one runs the same main() without it.
LAUNCHER = "#!{python}\nimport sys\n\nfrom cmp.cli import main\n\nsys.exit(main())\n"


def write_launcher(path: str, python: str | None = None) -> None:
    """Replace pip's console script at `path` with LAUNCHER for `python` (this interpreter)."""
    with open(path, "w") as script:
        script.write(LAUNCHER.format(python=python or sys.executable))
    os.chmod(path, 0o755)


def exit_now(status: int) -> None:
    """End `tagpin generate` without the interpreter's teardown: freeing Jinja2's, PyYAML's and
    tagpin's modules object by object takes ~20 ms, a fifth of a small render, and nothing
    needs it. Every file is written and closed and every thread joined by now (the pipeline
    uses `with` for both); only the standard streams may hold buffered output."""
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except OSError:
        sys.exit(status)  # let Python report a closed pipe as it always does
    os._exit(status)


def _click_main(args: list[str]) -> int:
    import click

    from cmp.commands.main import cli
    from cmp.errors import ExitStatus

    try:
        code = cli.main(args=args, prog_name="tagpin", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        return int(ExitStatus.USAGE)
    except click.exceptions.Abort:
        return int(ExitStatus.INTERRUPTED)
    return int(code or 0)
