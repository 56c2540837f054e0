"""Fair render slots under attack: how long other tenants' renders wait, and take, while one
Application spins in two renders at once (issue #22; docs/reliability.md "Fair render slots").

    .venv/bin/python -m bench.slot_fairness                    # the shipped budgets, both modes
    .venv/bin/python -m bench.slot_fairness --lease 4 --cpu 60 # the e2e test's budgets

The scenario is tests/e2e/test_render_slots.py's (tests/support/slot_attack.py): through the
cmp-server emulator, with two slots, the attacker keeps two spinning renders running (each
re-submitted as it fails) and two more queued; then 20 renders of 20 other Applications from
20 other repositories arrive at once. For each victim: its wait (arrival to its slot, from the
slots' own records, sampled every 5 ms) and its total time (arrival to the end of `tagpin
generate`, as Argo CD waits for it). The same 20 renders without the attack are the baseline.
Renders run in `tagpin generate` itself and in a render server's workers.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from tests.support import slot_attack
from tests.support.apptree import clean_env
from tests.support.listener import start_listener


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(1, round(fraction * len(ordered) + 0.5 - 1e-9))
    return ordered[min(rank, len(ordered)) - 1]


@contextmanager
def mode_settings(mode: str) -> Iterator[dict[str, str]]:
    if mode == "in-process":
        yield {"TAGPIN_RENDER_SERVER": "off"}
        return
    directory = Path(tempfile.mkdtemp(prefix="tp-bench-", dir="/tmp"))  # a short socket path
    socket, log = directory / "render.sock", directory / "server.log"
    server = start_listener(socket, log, clean_env())
    try:
        deadline = time.monotonic() + 60
        while "serving" not in (log.read_text() if log.exists() else ""):
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the render server did not start")
            time.sleep(0.05)
        yield {"TAGPIN_RENDER_SERVER": "on", "TAGPIN_RENDER_SERVER_SOCKET": str(socket)}
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(directory, ignore_errors=True)


def measure(mode: str, budgets: dict[str, str], victims: int, attack: bool) -> list[str]:
    """One markdown row per measure: wait and total time of the victims."""
    with tempfile.TemporaryDirectory(prefix="tagpin-slots-") as root, mode_settings(mode) as env:
        cache = Path(root, "cache")
        cmp = slot_attack.sidecar(Path(root, "cmp-tmp"), cache, {**budgets, **env})
        repo = slot_attack.shared_repo(Path(root, "repo"))
        outcome = slot_attack.run(cmp, repo, cache, victims=victims, attack=attack)
    failed = sum(not v.result.ok for v in outcome.victims)
    waits = [v.wait for v in outcome.victims if v.wait is not None]
    totals = [v.ended - v.submitted for v in outcome.victims]
    label = f"{mode}, {'under attack' if attack else 'no attack'}"
    rows = []
    for name, values in (("wait for a slot", waits), ("total", totals)):
        if not values:
            continue
        rows.append(
            f"| {label} | {name} (s) | {percentile(values, 0.5):.2f} | "
            f"{percentile(values, 0.99):.2f} | {max(values):.2f} | {len(values)} |"
        )
    rows.append(
        f"| {label} | victims failed / attacker given a 2nd slot while one waited | "
        f"{failed} | {len(outcome.doubled)} | | |"
    )
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--victims", type=int, default=20)
    parser.add_argument("--lease", help="TAGPIN_MAX_RENDER_SECONDS (default: the shipped one)")
    parser.add_argument("--cpu", help="TAGPIN_MAX_CPU_SECONDS (default: the shipped one)")
    parser.add_argument("--modes", nargs="+", default=["in-process", "served"])
    args = parser.parse_args(argv)
    budgets = {"TAGPIN_MAX_PARALLEL_RENDERS": "2"}
    if args.lease:
        budgets["TAGPIN_MAX_RENDER_SECONDS"] = args.lease
    if args.cpu:
        budgets["TAGPIN_MAX_CPU_SECONDS"] = args.cpu
    print(
        f"{args.victims} victims, 2 slots, {budgets}; {platform.python_implementation()} "
        f"{platform.python_version()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}\n"
    )
    print("| renders | measure | p50 | p99 | max | n |")
    print("|---|---|---:|---:|---:|---:|")
    for mode in args.modes:
        for attack in (False, True):
            for row in measure(mode, budgets, args.victims, attack):
                print(row, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
