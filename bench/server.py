"""The render server (TAGPIN_RENDER_SERVER): a real server for the served cases."""

from __future__ import annotations

import contextlib
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.model import Row, Stats, Workspace


@dataclass(frozen=True)
class RenderServer:
    socket: Path
    log: Path
    pid: int
    metrics_port: int | None = None  # serving /metrics (TAGPIN_METRICS_PORT)

    @property
    def label(self) -> str:
        """How its rows are named: `served`, or `served metrics`."""
        return "served metrics" if self.metrics_port else "served"

    def env(self) -> dict[str, str]:
        return {"TAGPIN_RENDER_SERVER": "on", "TAGPIN_RENDER_SERVER_SOCKET": str(self.socket)}

    def worker_peaks_kb(self) -> list[int]:
        """Peak RSS of every worker so far, from the server's --log-renders lines."""
        peaks = []
        for line in self.log.read_text().splitlines():
            if " worker " in line and "peak RSS " in line:
                peaks.append(int(float(line.split("peak RSS ")[1].split()[0]) * 1024))
        return peaks

    def worker_times_ms(self) -> list[tuple[float, float]]:
        """Wall and CPU time of every worker so far, in the order the server reaped them."""
        times = []
        for line in self.log.read_text().splitlines():
            if " worker " in line and " after " in line and "(CPU " in line:
                wall = float(line.split(" after ")[1].split()[0])
                cpu = float(line.split("(CPU ")[1].split()[0])
                times.append((wall, cpu))
        return times

    def worker_private_kb(self) -> list[int]:
        """What each worker added to the server's shared pages, from its own log line."""
        return [
            int(float(line.split("private memory ")[1].split()[0]) * 1024)
            for line in self.log.read_text().splitlines()
            if "private memory " in line
        ]

    def profiles(self) -> list[Path]:
        """The profiles workers have written so far (a server started with `profile`)."""
        marker = " wrote its profile to "
        return [
            Path(line.split(marker, 1)[1])
            for line in self.log.read_text().splitlines()
            if marker in line
        ]

    def rss_kb(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0


@contextlib.contextmanager
def render_server(
    workspace: Workspace, *, profile: bool = False, metrics: bool = False
) -> Iterator[RenderServer]:
    """`python -m cmp.server.listener`, as TAGPIN_RENDER_SERVER=auto starts it in the sidecar;
    with `profile`, each worker renders under cProfile (`profiles()` says where it wrote); with
    `metrics`, it serves Prometheus metrics, as deploy/ sets it up (and is scraped once it has
    served the renders, so what it counted is checked to be there)."""
    from tests.support.listener import start_listener
    from tests.support.redis_server import free_port

    directory = Path(tempfile.mkdtemp(prefix="tagpin-bench-", dir="/tmp"))  # short socket path
    socket, log = directory / "render.sock", directory / "server.log"
    port = free_port() if metrics else None
    env = dict(workspace.env_base) | ({"TAGPIN_METRICS_PORT": str(port)} if port else {})
    process = start_listener(
        socket,
        log,
        env,
        python=str(workspace.python),
        profile_dir=directory / "profiles" if profile else None,
    )
    try:
        deadline = time.monotonic() + 60
        while not (log.exists() and "serving" in log.read_text()):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    "the render server did not start: "
                    + (log.read_text() if log.exists() else "no log")
                )
            time.sleep(0.05)
        server = RenderServer(socket, log, process.pid, port)
        yield server
        if port is not None:
            _check_counted(server)
    finally:
        process.terminate()
        process.wait(timeout=30)
        shutil.rmtree(directory, ignore_errors=True)


def _check_counted(server: RenderServer) -> None:
    """The metrics server counted every render its workers answered: metrics were on."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    url = f"http://127.0.0.1:{server.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    rendered = sum(
        sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "tagpin_renders"
        for sample in family.samples
        if sample.name == "tagpin_renders_total"
    )
    if rendered != len(server.worker_peaks_kb()):
        raise RuntimeError(
            f"/metrics counted {rendered} renders, the server's log {len(server.worker_peaks_kb())}"
        )


def measured_through(server: RenderServer | None, measure: Callable[[], Row]) -> Row:
    """The row `measure` takes; through `server`, with its workers' memory (`served`)."""
    before = len(server.worker_peaks_kb()) if server else 0
    row = measure()
    return served(row, server, before) if server else row


def served(row: Row, server: RenderServer, before: int) -> Row:
    """A row measured through the server: its memory is the workers' peak RSS (pages shared
    with the server included, so an overstatement), not the thin client's."""
    deadline = time.monotonic() + 10  # the server logs a worker once it has reaped it
    while len(server.worker_peaks_kb()) - before < row.runs + 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    peaks = server.worker_peaks_kb()[before:]
    if len(peaks) != row.runs + 1:  # + the warm-up run
        raise RuntimeError(
            f"{row.case}: {len(peaks)} renders reached the server, expected "
            f"{row.runs + 1}; the rest ran in-process"
        )
    private = server.worker_private_kb()[before:] or [0]
    client_kb = row.tagpin.peak_rss_kb
    tagpin = Stats(row.tagpin.median_ms, int(statistics.median(peaks)), row.tagpin.cpu_ms)
    note = (
        f"{row.note}; render server: MiB = a worker's peak RSS, of which "
        f"{statistics.median(private) / 1024:.1f} MiB its own (the rest shared with the "
        f"server, {server.rss_kb() / 1024:.1f} MiB); client {client_kb / 1024:.1f} MiB; "
        "CPU is the client's"
    )
    return Row(row.case, row.objects, tagpin, row.floor, row.runs, note.lstrip("; "))
