"""Measuring one process: wall time and peak memory, the environment Argo CD gives it,
the workspace and the primed digest cache."""

from __future__ import annotations

import compileall
import os
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from bench.apps import (
    ACCOUNT,
    BenchApp,
    Image,
)
from bench.model import CLOSED_ENDPOINT, ROOT, Sample, Workspace
from cmp.cli import write_launcher

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
    .pth path entry (so their own .pth hooks do not run), plus the `tagpin` launcher the
    image installs in place of pip's console script."""
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
    write_launcher(str(script), str(python))  # what the image's Dockerfile installs
    return python, script


def precompile() -> None:
    """Compile cmp/ and site-packages once, so no measured import compiles from source."""
    for directory in (ROOT / "cmp", Path(sysconfig.get_paths()["purelib"])):
        compileall.compile_dir(str(directory), quiet=1, workers=0)


def prime_cache(cache_dir: Path, images: Sequence[Image]) -> None:
    """Write every digest an app needs straight into tagpin's disk cache."""
    from cmp.registry.base import TagInfo
    from cmp.registry.cache import DiskCache
    from cmp.registry.names import EcrRegistry, EcrRepository

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
