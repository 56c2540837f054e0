"""How much memory one render may use, and how many renders run at once, so that together they
fit the container (docs/reliability.md, "Memory").

The sidecar's cgroup limit is shared by argocd-cmp-server, the render server and every render.
A render that outgrows it gets the whole container OOM-killed, every tenant's renders with it.
So at most TAGPIN_MAX_PARALLEL_RENDERS renders run at once (cmp/limits/slots.py: the others
wait for a slot; with one CPU they would not finish sooner anyway), and each is capped at its
share of what the container has left:

    per render = (container limit - RESERVED_MB) / TAGPIN_MAX_PARALLEL_RENDERS

The cap is RLIMIT_DATA (the heap and every private writable mapping), which follows what a
render really uses; RLIMIT_AS would also count thread stacks and malloc's reserved arenas, and
a render with eight ECR threads could not start them under a cap that fits 512 MiB.
"""

from __future__ import annotations

from pathlib import Path

from cmp.errors import ConfigError, TemplateError
from cmp.settings import Settings


class MemoryLimitExceeded(TemplateError):
    """A template needed more memory than TAGPIN_MAX_MEMORY_MB allows one render."""


# argocd-cmp-server (~25 MiB), the render server (~45 MiB), renders waiting for a slot
# (~10 MiB each) and the page cache the kernel charges to the container.
RESERVED_MB = 128
# No container limit (a laptop, CI): the cap only stops a runaway template.
UNLIMITED_DEFAULT_MB = 4096
_UNLIMITED = 1 << 60  # cgroup v1 reports "no limit" as a huge page-aligned number


def container_limit_bytes(
    cgroup_root: Path = Path("/sys/fs/cgroup"), proc_cgroup: Path = Path("/proc/self/cgroup")
) -> int | None:
    """This process's cgroup memory limit (v2 `memory.max`, v1 `memory.limit_in_bytes`), the
    smallest along its cgroup path; None when there is none."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        lines = []
    candidates = [cgroup_root / "memory.max", cgroup_root / "memory" / "memory.limit_in_bytes"]
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # v2
            candidates += [cgroup_root / p / "memory.max" for p in _ancestors(path)]
        elif "memory" in controllers.split(","):  # v1
            candidates += [
                cgroup_root / "memory" / p / "memory.limit_in_bytes" for p in _ancestors(path)
            ]
    limits = [limit for limit in map(_read_limit, candidates) if limit is not None]
    return min(limits) if limits else None


def _ancestors(path: str) -> list[str]:
    parts = [part for part in path.split("/") if part]
    return ["/".join(parts[:end]) for end in range(len(parts), 0, -1)]


def _read_limit(path: Path) -> int | None:
    try:
        raw = path.read_text().strip()
    except OSError:
        return None
    if not raw.isdigit() or int(raw) >= _UNLIMITED:
        return None  # "max" (v2) or v1's page-aligned LONG_MAX
    return int(raw)


def per_render_megabytes(settings: Settings, limit_bytes: int | None) -> int:
    """TAGPIN_MAX_MEMORY_MB: a number of MiB (0 = no cap), or `auto` (the default): the
    container's limit less RESERVED_MB, shared by TAGPIN_MAX_PARALLEL_RENDERS renders."""
    if settings.max_memory_mb is not None:
        return settings.max_memory_mb
    if limit_bytes is None:
        return UNLIMITED_DEFAULT_MB
    parallel = settings.max_parallel_renders
    share = (limit_bytes // (1024 * 1024) - RESERVED_MB) // parallel
    if share < 32:
        raise ConfigError(
            f"the container's memory limit ({limit_bytes // (1024 * 1024)} MiB) leaves "
            f"{max(share, 0)} MiB per render for TAGPIN_MAX_PARALLEL_RENDERS={parallel}; raise "
            "the limit, lower TAGPIN_MAX_PARALLEL_RENDERS or set TAGPIN_MAX_MEMORY_MB"
        )
    return share


def limit_render(settings: Settings) -> None:
    """Cap this process at one render's share of the container's memory: the Jinja2 sandbox
    cannot stop every way a template can build a huge string, and a clear error naming the
    template is far better than the sidecar being OOM-killed with every tenant's renders."""
    limit_data(per_render_megabytes(settings, container_limit_bytes()))


def limit_data(megabytes: int) -> None:
    """Cap this process's data size (RLIMIT_DATA) at `megabytes` (0: leave it); a lower limit
    already set (by the operator, or an enclosing render) stays."""
    import resource

    if megabytes <= 0:
        return
    wanted = megabytes * 1024 * 1024
    soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
    if hard != resource.RLIM_INFINITY:
        wanted = min(wanted, hard)
    if soft == resource.RLIM_INFINITY or wanted < soft:
        resource.setrlimit(resource.RLIMIT_DATA, (wanted, hard))
