"""`python -m bench.fleet`: a hard-refresh storm on a fleet of repo-server replicas.

N replicas (each its own cache directory, as each repo-server pod has) share M apps, dealt out
round robin as Argo CD spreads renders; every app uses the same R repositories of moto's ECR on
127.0.0.1, slowed by a fixed delay per call. All M renders start at once with empty local
caches. Each replica renders through a render server of its own, started (and warm) before the
storms, as the image's TAGPIN_RENDER_SERVER=auto has it (`--in-process`: every render in its
own process, as outside the image). Measured per N, with and without a Redis shared by the
fleet (a real redis-server): the DescribeImages calls that reached moto and the storm's wall
time (first start to last exit), for three storms:

- `cold`: Redis empty too; every app pins its images' tags;
- `redis`: Redis holds every answer (a cold storm just filled it): Redis answers every render;
- `branch`: every app is a branch deploy (Image Updater's image-list, alphabetical, given as
  the plugin's parameters), so each render lists every repository's tags; Redis empty.

Goals (issues #14, #27): with Redis, ECR calls = R for every N (none for `redis`), and every
storm at N = 8 within 1.1x of N = 1.
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


SCENARIOS = ("cold", "redis", "branch")


class Storm(NamedTuple):
    scenario: str  # one of SCENARIOS
    replicas: int
    redis: bool
    renders: int
    calls: int  # DescribeImages that reached ECR
    seconds: float  # median wall time of the storm


@contextlib.contextmanager
def moto_with_images(repositories: int, latency_ms: float) -> Iterator[Any]:
    """moto's ECR on 127.0.0.1 holding `<repo>:v1` and `:v2` for each repository, then slowed
    down."""
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
            for tag in ("v1", "v2"):  # a branch deploy picks v2 (alphabetical)
                ecr.push(f"fleet/repo-{index:02d}", tag)
        ecr.reset_calls()
        server.counter.delay = latency_ms / 1000
        yield ecr
    finally:
        server.stop()


def write_apps(root: Path, apps: int, repositories: int) -> list[Path]:
    from tests.support.renders import HOST, write_app

    images = {f"svc-{i:02d}": f"{HOST}/fleet/repo-{i:02d}:v1" for i in range(repositories)}
    return [write_app(root / f"app-{index:02d}", images) for index in range(apps)]


def branch_parameters(repositories: int) -> str:
    """ARGOCD_APP_PARAMETERS making every image of an app a branch deploy (a tag list)."""
    import json

    from tests.support.renders import HOST

    aliases = [f"svc-{i:02d}" for i in range(repositories)]
    updater = {
        "image-list": ",".join(f"{a}={HOST}/fleet/repo-{i:02d}" for i, a in enumerate(aliases))
    }
    for alias in aliases:
        updater[f"{alias}.update-strategy"] = "alphabetical"
        updater[f"{alias}.allow-tags"] = "regexp:^v[0-9]+$"
    return json.dumps([{"name": "image-updater", "map": updater}])


@contextlib.contextmanager
def render_servers(count: int, directory: Path) -> Iterator[list[Path]]:
    """One render server per replica, started as `auto` starts one (a scrubbed environment)
    and warm before any storm; yields their sockets (in `directory`: keep its path short)."""
    from tests.support.listener import start_listener

    scrubbed = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    sockets = [directory / f"replica-{index}.sock" for index in range(count)]
    logs = [directory / f"replica-{index}.log" for index in range(count)]
    processes = [
        start_listener(sock, log, scrubbed) for sock, log in zip(sockets, logs, strict=True)
    ]
    try:
        deadline = time.monotonic() + 120
        for log, process in zip(logs, processes, strict=True):
            while not (log.exists() and "serving" in log.read_text()):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"a render server did not start: {log}")
                time.sleep(0.05)
        yield sockets
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=30)


def served_renders(directory: Path) -> int:
    """Renders the replicas' render servers answered (each logs one line per worker)."""
    return sum(log.read_text().count(" exit 0 after ") for log in directory.glob("*.log"))


def storm(
    apps: Sequence[Path],
    replicas: int,
    workdir: Path,
    ecr: Any,
    redis_url: str | None,
    servers: Sequence[Path] = (),
    parameters: str | None = None,
) -> tuple[int, float]:
    """Every app rendered once, all at once, on `replicas` replicas with empty local caches;
    replica i's renders through the render server at `servers[i]` if given; `parameters`: the
    plugin's parameters of every app."""
    from tests.support.renders import TAGPIN, generate_env

    ecr.reset_calls()
    caches = [workdir / f"replica-{index}" for index in range(replicas)]
    extra = {"AWS_ENDPOINT_URL_ECR": ecr.url}
    if redis_url is not None:
        extra |= {"TAGPIN_REDIS_URL": redis_url, "TAGPIN_REDIS_SIGNING_KEY": SIGNING_KEY}
    if parameters is not None:
        extra["ARGOCD_APP_PARAMETERS"] = parameters

    def env(index: int) -> dict[str, str]:
        replica = index % replicas
        served = {}
        if servers:
            served = {
                "TAGPIN_RENDER_SERVER": "on",
                "TAGPIN_RENDER_SERVER_SOCKET": str(servers[replica]),
            }
        return generate_env(caches[replica], **extra, **served)

    started = time.perf_counter()
    renders = [
        subprocess.Popen(
            [str(TAGPIN), "generate"],
            cwd=app,
            env=env(index),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for index, app in enumerate(apps)
    ]
    failed = []
    pinned = ":v2@sha256:" if parameters is not None else ":v1@sha256:"  # a branch deploy: v2
    for render in renders:
        out, err = render.communicate(timeout=300)
        if render.returncode != 0 or "warning" in err or pinned not in out:
            failed.append(err or out)
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
    scenarios: Sequence[str] = SCENARIOS,
    served: bool = True,
) -> list[Storm]:
    from tests.support.redis_server import RedisServer

    app_dirs = write_apps(workdir / "apps", apps, repositories)
    branch = branch_parameters(repositories)
    rows: list[Storm] = []
    redis = RedisServer(workdir, password=None)
    redis.start()
    sockets_dir = Path(tempfile.mkdtemp(prefix="tagpin-fleet-", dir="/tmp"))  # short paths
    try:
        client: Any = redis.client()
        with contextlib.ExitStack() as stack:
            servers: Sequence[Path] = ()
            if served:
                servers = stack.enter_context(render_servers(max(replica_counts), sockets_dir))
            ecr = stack.enter_context(moto_with_images(repositories, latency_ms))
            for scenario in scenarios:
                for replicas in replica_counts:
                    for shared in (False, True) if scenario != "redis" else (True,):
                        calls, times = set(), []
                        for run in range(runs):
                            client.flushall()
                            where = workdir / f"{scenario}-{replicas}-{shared}-{run}"
                            url = redis.url if shared else None
                            parameters = branch if scenario == "branch" else None
                            if scenario == "redis":  # Redis filled by a storm of its own
                                storm(app_dirs, 1, where / "fill", ecr, url, servers)
                            count, seconds = storm(
                                app_dirs, replicas, where, ecr, url, servers, parameters
                            )
                            calls.add(count)
                            times.append(seconds)
                        median = statistics.median(times)
                        print(
                            f"  {scenario} N={replicas} redis={shared}: calls {sorted(calls)}, "
                            f"{median:.2f} s",
                            file=sys.stderr,
                            flush=True,
                        )
                        rows.append(Storm(scenario, replicas, shared, apps, max(calls), median))
        if served and not served_renders(sockets_dir):
            raise RuntimeError("no render reached the replicas' render servers")
    finally:
        redis.stop()
        import shutil

        shutil.rmtree(sockets_dir, ignore_errors=True)
    return rows


def table(rows: Sequence[Storm], repositories: int) -> str:
    lines = [
        "| storm | replicas (N) | Redis | renders | ECR DescribeImages | storm wall time |",
        "|---|---:|---|---:|---:|---:|",
    ]
    first = min(row.replicas for row in rows)
    base = {(r.scenario, r.redis): r.seconds for r in rows if r.replicas == first}
    for row in rows:
        lines.append(
            f"| {row.scenario} | {row.replicas} | {'yes' if row.redis else 'no'} | "
            f"{row.renders} | {row.calls} (R = {repositories}) | {row.seconds:.2f} s "
            f"({row.seconds / base[(row.scenario, row.redis)]:.2f}x N={first}) |"
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
    parser.add_argument("--storms", nargs="+", choices=SCENARIOS, default=list(SCENARIOS))
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="every render in its own process (no render server), as outside the image",
    )
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
            args.storms,
            served=not args.in_process,
        )
    from bench.report import machine

    print(f"Machine: {machine()}")
    print(
        f"M = {args.apps} apps, each with the same R = {args.repositories} repositories, dealt "
        f"round robin to N replicas and rendered at once with empty local caches, "
        + ("each in its own process" if args.in_process else "through a render server per replica")
        + f"; moto's ECR with {args.ecr_latency_ms:g} ms per call; median of {args.runs} storms"
    )
    print()
    print(table(rows, args.repositories))
    wanted = {"cold": args.repositories, "redis": 0, "branch": args.repositories}
    ok = all(row.calls == wanted[row.scenario] for row in rows if row.redis)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
