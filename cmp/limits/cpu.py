"""TAGPIN_MAX_CPU_SECONDS: a render's CPU budget (RLIMIT_CPU), with a clear error at its end.

Argo CD ends a render at its deadline by signalling the render's process group, but a render
server's worker is not in that group, and a stuck render on a busy sidecar slows every other
tenant's. The kernel enforces the budget whatever the render is doing, even inside C code:
SIGXCPU at the soft limit (raised here as an error naming the setting), SIGKILL a few seconds
later (the hard limit) should that error never get to run.
"""

from __future__ import annotations

import contextlib
import resource
import signal
from collections.abc import Iterator
from types import FrameType

from cmp.errors import TemplateError
from cmp.settings import Settings

KILL_AFTER_SECONDS = 5  # hard limit past the soft one: time to report the error


class CpuLimitExceeded(TemplateError):
    """The render used up TAGPIN_MAX_CPU_SECONDS."""


class _CpuSpent(BaseException):
    """What SIGXCPU raises: a BaseException, which nothing meant for a template's own errors
    catches (Jinja wraps any Exception from template code, and one failing template does not
    stop the next from rendering); cpu_budget() turns it into CpuLimitExceeded."""


@contextlib.contextmanager
def cpu_budget(settings: Settings) -> Iterator[None]:
    """Run the render under its CPU budget (limit_cpu); its end is CpuLimitExceeded."""
    limit_cpu(settings)
    try:
        yield
    except _CpuSpent:
        raise CpuLimitExceeded(
            f"the render used more than {settings.max_cpu_seconds} s of CPU "
            "(TAGPIN_MAX_CPU_SECONDS); is a template looping?"
        ) from None


def limit_cpu(settings: Settings) -> None:
    """Cap this process's CPU time; 0 means no cap. Used seconds count from the process's
    start (a render server's worker: from its fork)."""
    seconds = settings.max_cpu_seconds
    if seconds <= 0:
        return
    used = resource.getrusage(resource.RUSAGE_SELF)
    soft = int(used.ru_utime + used.ru_stime) + seconds
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    wanted_hard = soft + KILL_AFTER_SECONDS
    if hard != resource.RLIM_INFINITY:
        soft, wanted_hard = min(soft, hard), min(wanted_hard, hard)
    signal.signal(signal.SIGXCPU, _raise_once)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, wanted_hard))


def _raise_once(_signum: int, _frame: FrameType | None) -> None:
    signal.signal(signal.SIGXCPU, signal.SIG_IGN)  # the kernel repeats it every second
    raise _CpuSpent
