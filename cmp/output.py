"""Run one command's job: print its YAML once on success, or its problems on stderr, and
return the exit code its error class carries.

Output discipline: stdout receives the rendered YAML exactly once, at the very end, and only
on success. Argo CD reads empty output as "no resources", which with auto-prune deletes the
app, so every failure writes to stderr only and exits non-zero.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from typing import Any

from cmp.errors import ExitStatus, SourceError, TagpinError


def execute(
    job: Callable[[], Any], *, debug: bool = False, environ: Mapping[str, str] | None = None
) -> int:
    """Run a render job; print its YAML once on success, or its problems on stderr. Unknown
    TAGPIN_* variables in `environ` (default: this process's) are warned about either way."""
    from cmp.settings import unknown_settings

    unknown = unknown_settings(os.environ if environ is None else environ)
    try:
        result = job()
    except TagpinError as exc:
        exc.warnings = [*unknown, *exc.warnings]
        _report(exc)
        if debug:
            import traceback

            traceback.print_exc(file=sys.stderr)
        return int(exc.exit_status)
    except KeyboardInterrupt:
        return int(ExitStatus.INTERRUPTED)
    except MemoryError:  # the cap (TAGPIN_MAX_MEMORY_MB) at work: the input is too large
        _warn(unknown)
        _report(
            SourceError(
                "the render needs more memory than tagpin allows one render (TAGPIN_MAX_MEMORY_MB, "
                "docs/reliability.md); is a values file, a YAML document or a template's output "
                "very large?"
            )
        )
        return int(ExitStatus.SOURCE)
    except Exception:  # noqa: BLE001 - anything else is a bug; never print partial output
        _warn(unknown)
        sys.stderr.write("tagpin: internal error (a bug in tagpin; please report it)\n")
        if debug:
            import traceback

            traceback.print_exc(file=sys.stderr)
        else:
            sys.stderr.write(f"  {sys.exc_info()[1]!r}\n  rerun with --debug for a traceback\n")
        return int(ExitStatus.INTERNAL)
    _warn([*unknown, *result.warnings])
    for note in result.notes:
        sys.stderr.write(f"tagpin: {note}\n")
    sys.stdout.write(result.text)
    sys.stdout.flush()
    return int(ExitStatus.OK)


def _warn(warnings: list[str]) -> None:
    for warning in warnings:
        sys.stderr.write(f"tagpin: warning: {warning}\n")


def _report(exc: TagpinError) -> None:
    lines = [f"tagpin: warning: {warning}" for warning in exc.warnings]
    lines.append(f"tagpin: {exc.title} (exit {int(exc.exit_status)}):")
    lines += [f"  {problem}" for problem in exc.problems]
    sys.stderr.write("\n".join(lines) + "\n")
