"""The command line: parse flags, build a RenderRequest, run the pipeline, map errors to exit codes.

Output discipline: stdout receives the rendered YAML exactly once, at the very end, and only
on success. Argo CD reads empty output as "no resources", which with auto-prune deletes the
app, so every failure writes to stderr only and exits non-zero.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (mypy knows the name)
# The TAGPIN_RENDER_SERVER values that ask a server (settings.RENDER_SERVER_MODES has them all).
SERVED_MODES = ("on", "auto")

if TYPE_CHECKING:  # imported where used: a served render imports next to nothing
    from collections.abc import Callable, Mapping, Sequence
    from pathlib import Path
    from typing import Any

    from .errors import TagpinError


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if args == ["generate"]:
        # The sidecar runs `tagpin generate` once per render: a render server's warm worker
        # answers if one is configured; otherwise skip importing click (~30 ms).
        # Read here, not through cmp.settings, to import nothing: any other value renders
        # in-process, which reports a typo.
        server_mode = os.environ.get("TAGPIN_RENDER_SERVER", "").strip().lower()
        if server_mode in SERVED_MODES:
            from .renderclient import generate as served

            try:
                status = served(os.environ, os.getcwd(), start=server_mode == "auto")
            except KeyboardInterrupt:  # the worker sees the connection close and ends too
                status = 130  # ExitStatus.INTERRUPTED, as an in-process render reports it
            if status is not None:
                exit_now(status)
        from pathlib import Path

        exit_now(generate(os.environ, Path.cwd()))
    sys.exit(_click_main(args))


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


def generate(environ: Mapping[str, str], cwd: Path, *, debug: bool = False) -> int:
    """What Argo CD's cmp-server runs: everything comes from the environment."""

    def job() -> Any:
        from .app import default_cache_dir, run
        from .cpulimit import limit_cpu
        from .memory import render_slot
        from .request import from_argocd_environment
        from .settings import RENDER_SERVER_MODES, setting_choice

        limit_memory(environ)
        limit_cpu(environ)
        setting_choice(environ, "TAGPIN_RENDER_SERVER", RENDER_SERVER_MODES)  # typos: an error
        request = from_argocd_environment(environ, cwd)
        with render_slot(environ, default_cache_dir(environ)):
            return run(request)

    return execute(job, debug=debug)


def limit_memory(environ: Mapping[str, str]) -> None:
    """Cap this process at one render's share of the container's memory (TAGPIN_MAX_MEMORY_MB,
    cmp/memory.py): the Jinja2 sandbox cannot stop every way a template can build a huge
    string, and a clear error naming the template is far better than the sidecar being
    OOM-killed with every tenant's renders."""
    from .memory import container_limit_bytes, per_render_megabytes
    from .memory import limit_memory as cap

    cap(per_render_megabytes(environ, container_limit_bytes()))


def execute(job: Callable[[], Any], *, debug: bool = False) -> int:
    """Run a render job; print its YAML once on success, or its problems on stderr."""
    from .errors import ExitStatus, TagpinError

    try:
        result = job()
    except TagpinError as exc:
        _report(exc)
        if debug:
            import traceback

            traceback.print_exc(file=sys.stderr)
        return int(exc.exit_status)
    except KeyboardInterrupt:
        return int(ExitStatus.INTERRUPTED)
    except MemoryError:  # the cap (TAGPIN_MAX_MEMORY_MB) at work: the input is too large
        from .errors import SourceError

        _report(SourceError(
            "the render needs more memory than tagpin allows one render (TAGPIN_MAX_MEMORY_MB, "
            "docs/reliability.md); is a values file, a YAML document or a template's output "
            "very large?"))
        return int(ExitStatus.SOURCE)
    except Exception:  # noqa: BLE001 - anything else is a bug; never print partial output
        sys.stderr.write("tagpin: internal error (a bug in tagpin; please report it)\n")
        if debug:
            import traceback

            traceback.print_exc(file=sys.stderr)
        else:
            sys.stderr.write(f"  {sys.exc_info()[1]!r}\n  rerun with --debug for a traceback\n")
        return int(ExitStatus.INTERNAL)
    for warning in result.warnings:
        sys.stderr.write(f"tagpin: warning: {warning}\n")
    for note in result.notes:
        sys.stderr.write(f"tagpin: {note}\n")
    sys.stdout.write(result.text)
    sys.stdout.flush()
    return int(ExitStatus.OK)


def _report(exc: TagpinError) -> None:
    lines = [f"tagpin: warning: {warning}" for warning in exc.warnings]
    lines.append(f"tagpin: {exc.title} (exit {int(exc.exit_status)}):")
    lines += [f"  {problem}" for problem in exc.problems]
    sys.stderr.write("\n".join(lines) + "\n")


def _click_main(args: list[str]) -> int:
    import click

    from .commands import cli
    from .errors import ExitStatus

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
