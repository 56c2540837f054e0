"""What a command says, and when: its result once on stdout on success; warnings, notes and
problems on stderr; the exit code its error class carries.

Output discipline: stdout receives the rendered YAML exactly once, at the very end, and only
on success. Argo CD reads empty output as "no resources", which with auto-prune deletes the
app, so every failure writes to stderr only and exits non-zero. Warnings are said whether the
command succeeds or fails, since they often explain the failure; notes only on success.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping

from cmp.errors import ExitStatus, SourceError, TagpinError


class Output:
    """The sink every stage says its warnings and notes into, for one command; `execute`
    prints them."""

    __slots__ = ("notes", "warnings")

    def __init__(self, warnings: list[str] | None = None) -> None:
        self.warnings: list[str] = warnings if warnings is not None else []
        self.notes: list[str] = []  # a human summary on success (overrides applied, say)

    def warn(self, *lines: str) -> None:
        self.warnings.extend(lines)

    def note(self, *lines: str) -> None:
        self.notes.extend(lines)


def execute(
    job: Callable[[Output], str], *, debug: bool = False, environ: Mapping[str, str] | None = None
) -> int:
    """Run a command's job, which returns what stdout gets; print it once on success, or the
    problems on stderr. Unknown TAGPIN_* variables in `environ` (default: this process's) are
    warned about either way."""
    from cmp.settings import unknown_settings

    output = Output(unknown_settings(os.environ if environ is None else environ))
    try:
        text = job(output)
    except TagpinError as exc:
        _report(output.warnings, exc)
        if debug:
            import traceback

            traceback.print_exc(file=sys.stderr)
        return int(exc.exit_status)
    except KeyboardInterrupt:
        return int(ExitStatus.INTERRUPTED)
    except MemoryError:  # the cap (TAGPIN_MAX_MEMORY_MB) at work: the input is too large
        _report(
            output.warnings,
            SourceError(
                "the render needs more memory than tagpin allows one render (TAGPIN_MAX_MEMORY_MB, "
                "docs/reliability.md); is a values file, a YAML document or a template's output "
                "very large?"
            ),
        )
        return int(ExitStatus.SOURCE)
    except Exception:  # noqa: BLE001 - anything else is a bug; never print partial output
        _warn(output.warnings)
        sys.stderr.write("tagpin: internal error (a bug in tagpin; please report it)\n")
        if debug:
            import traceback

            traceback.print_exc(file=sys.stderr)
        else:
            sys.stderr.write(f"  {sys.exc_info()[1]!r}\n  rerun with --debug for a traceback\n")
        return int(ExitStatus.INTERNAL)
    _warn(output.warnings)
    for note in output.notes:
        sys.stderr.write(f"tagpin: {note}\n")
    sys.stdout.write(text)
    sys.stdout.flush()
    return int(ExitStatus.OK)


def _warn(warnings: list[str]) -> None:
    for warning in warnings:
        sys.stderr.write(f"tagpin: warning: {warning}\n")


def _report(warnings: list[str], exc: TagpinError) -> None:
    lines = [f"tagpin: warning: {warning}" for warning in warnings]
    lines.append(f"tagpin: {exc.title} (exit {int(exc.exit_status)}):")
    lines += [f"  {problem}" for problem in exc.problems]
    sys.stderr.write("\n".join(lines) + "\n")
