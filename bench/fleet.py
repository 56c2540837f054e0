"""`python -m bench.fleet`: a hard-refresh storm on a fleet of repo-server replicas.

N replicas (each its own cache directory, as each repo-server pod has) share M apps, dealt out
round robin as Argo CD spreads renders; every app uses the same R repositories of moto's ECR on
127.0.0.1, slowed by a fixed delay per call. All M renders start at once with empty caches.
Measured per N, with and without a Redis shared by the fleet (a real redis-server): the ECR
calls that reached moto and the storm's wall time (first start to last exit).

Goal (issue #14): with Redis, ECR calls = R for every N, and the storm at N = 8 within 1.5x
of N = 1.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

ROOT = Path(__file__).resolve().parent.parent
SIGNING_KEY = "bench-fleet-signing-key-" + "0" * 16


class Storm(NamedTuple):
    replicas: int
    redis: bool
    renders: int
    calls: int  # DescribeImages that reached ECR
    seconds: float  # median wall time of the storm


@contextlib.contextmanager
def moto_with_images(repositories: int, latency_ms: float) -> Iterator[Any]:
    """moto's ECR on 127.0.0.1 holding `<repo>:v1` for each repository, then slowed down."""
    import logging

    from tests.support.moto_ecr import CountingMotoServer, MotoEcr

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    for name, value in (
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_DEFAULT_REGION", "eu-west-1"),
    ):
        os.environ[name] = value
    server = CountingMotoServer()
    server.start()
    try:
        ecr = MotoEcr(url=server.url, counter=server.counter)
        for index in range(repositories):
            ecr.push(f"fleet/repo-{index:02d}", "v1")
        ecr.reset_calls()
        server.counter.delay = latency_ms / 1000
        yield ecr
    finally:
        server.stop()


def write_apps(root: Path, apps: int, repositories: int) -> list[Path]:
    from tests.support.renders import HOST, write_app

    images = {f"svc-{i:02d}": f"{HOST}/fleet/repo-{i:02d}:v1" for i in range(repositories)}
    return [write_app(root / f"app-{index:02d}", images) for index in range(apps)]


def storm(
    apps: Sequence[Path], replicas: int, workdir: Path, ecr: Any, redis_url: str | None
) -> tuple[int, float]:
    """Every app rendered once, all at once, on `replicas` replicas with empty caches."""
    from tests.support.renders import TAGPIN, generate_env

    ecr.reset_calls()
    caches = [workdir / f"replica-{index}" for index in range(replicas)]
    extra = {"AWS_ENDPOINT_URL_ECR": ecr.url}
    if redis_url is not None:
        extra |= {"TAGPIN_REDIS_URL": redis_url, "TAGPIN_REDIS_SIGNING_KEY": SIGNING_KEY}
    started = time.perf_counter()
    renders = [
        subprocess.Popen(
            [str(TAGPIN), "generate"],
            cwd=app,
            env=generate_env(caches[index % replicas], **extra),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for index, app in enumerate(apps)
    ]
    failed = []
    for render in renders:
        _, err = render.communicate(timeout=300)
        if render.returncode != 0 or "warning" in err:
            failed.append(err)
    elapsed = time.perf_counter() - started
    if failed:
        raise RuntimeError(f"{len(failed)} render(s) failed or warned:\n{failed[0]}")
    return ecr.calls("DescribeImages"), elapsed


def measure(
    replica_counts: Sequence[int],
    apps: int,
    repositories: int,
    runs: int,
    latency_ms: float,
    workdir: Path,
) -> list[Storm]:
    from tests.support.redis_server import RedisServer

    app_dirs = write_apps(workdir / "apps", apps, repositories)
    rows: list[Storm] = []
    redis = RedisServer(workdir, password=None)
    redis.start()
    try:
        client: Any = redis.client()
        with moto_with_images(repositories, latency_ms) as ecr:
            for replicas in replica_counts:
                for shared in (False, True):
                    calls, times = set(), []
                    for run in range(runs):
                        client.flushall()
                        where = workdir / f"storm-{replicas}-{shared}-{run}"
                        count, seconds = storm(
                            app_dirs, replicas, where, ecr, redis.url if shared else None
                        )
                        calls.add(count)
                        times.append(seconds)
                    print(
                        f"  N={replicas} redis={shared}: calls {sorted(calls)}, "
                        f"{statistics.median(times):.2f} s",
                        file=sys.stderr,
                        flush=True,
                    )
                    rows.append(Storm(replicas, shared, apps, max(calls), statistics.median(times)))
    finally:
        redis.stop()
    return rows


def table(rows: Sequence[Storm], repositories: int) -> str:
    lines = [
        "| replicas (N) | Redis | renders | ECR DescribeImages | storm wall time |",
        "|---:|---|---:|---:|---:|",
    ]
    first = min(row.replicas for row in rows)
    base = {row.redis: row.seconds for row in rows if row.replicas == first}
    for row in rows:
        lines.append(
            f"| {row.replicas} | {'yes' if row.redis else 'no'} | {row.renders} | "
            f"{row.calls} (R = {repositories}) | {row.seconds:.2f} s "
            f"({row.seconds / base[row.redis]:.2f}x N={first}) |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.fleet",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--apps", type=int, default=16, help="M, apps in the storm")
    parser.add_argument("--repositories", type=int, default=8, help="R, repositories per app")
    parser.add_argument("--runs", type=int, default=3, help="storms per row (median time)")
    parser.add_argument("--ecr-latency-ms", type=float, default=30.0)
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))  # tests.support: moto, redis-server, app writer
    with contextlib.ExitStack() as stack:
        workdir = args.workdir or Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="tagpin-fleet-"))
        )
        rows = measure(
            args.replicas,
            args.apps,
            args.repositories,
            max(1, args.runs),
            args.ecr_latency_ms,
            workdir,
        )
    from bench.report import machine

    print(f"Machine: {machine()}")
    print(
        f"M = {args.apps} apps, each with the same R = {args.repositories} repositories, dealt "
        f"round robin to N replicas and rendered at once with empty caches; moto's ECR with "
        f"{args.ecr_latency_ms:g} ms per call; median of {args.runs} storms"
    )
    print()
    print(table(rows, args.repositories))
    ok = all(row.calls == args.repositories for row in rows if row.redis)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
