"""`python -m bench --profile CASE [served]`: one render under cProfile, where it really runs.

In-process, the profile covers the whole `tagpin generate` (or `tagpin pin FILE`) process after
the interpreter starts, imports included. Served, it comes from the render server's worker that
answered the render (`python -m cmp.server.listener --profile-dir`), which is where a served
render spends its time: the thin client only forwards the request.
"""

from __future__ import annotations

import io
import pstats
import shutil
import subprocess
import time
from pathlib import Path

from bench.apps import BenchApp
from bench.cases import kustomize_binary, pin_input
from bench.measure import argocd_env, prime_cache
from bench.model import Workspace
from bench.server import RenderServer, render_server

# The cases --profile takes: the apps of bench/run.py, `pin` on large-2000's objects, and
# `cold`: images-200 with an empty cache against moto's ECR, one repository at a time
# (TAGPIN_ECR_CONCURRENCY=1: cProfile sees only the thread that started it).
PROFILE_CASES = (
    *("example", "example-lock", "large-2000", "large-10000", "images-200", "kustomize"),
    *("pin", "cold"),
)

# Runs a console script under cProfile: `python -c PROFILED OUT SCRIPT ARGS...`. `tagpin
# generate` ends with os._exit (cmp/cli.py: no interpreter teardown), after which neither
# `python -m cProfile -o` nor an atexit hook writes anything: the profile is written on the
# way out instead, whichever way the command ends.
PROFILED = (
    "import cProfile, os, runpy, sys\n"
    "out, sys.argv = sys.argv[1], sys.argv[2:]\n"
    "profiler, exit_now = cProfile.Profile(), os._exit\n"
    "def write_then_exit(status):\n"
    "    profiler.disable()\n"
    "    profiler.dump_stats(out)\n"
    "    sys.stdout.flush()\n"
    "    sys.stderr.flush()\n"
    "    exit_now(status)\n"
    "os._exit = write_then_exit\n"
    "profiler.enable()\n"
    "try:\n"
    "    runpy.run_path(sys.argv[0], run_name='__main__')\n"
    "except SystemExit as end:\n"
    "    write_then_exit(end.code if isinstance(end.code, int) else int(end.code is not None))\n"
    "write_then_exit(0)\n"
)


def profile(
    workspace: Workspace,
    app: BenchApp,
    out: Path,
    *,
    pin: bool,
    served: bool,
    ecr: str | None = None,
) -> str:
    """Render `app` once under cProfile (`tagpin pin` on its objects with `pin`; with `ecr`, an
    ECR endpoint, from an empty cache, one repository at a time), write the profile to `out`
    and return its top functions; the .prof opens in pstats or snakeviz."""
    cache_dir = workspace.root / f"cache-{app.name}"
    extra = {"TAGPIN_KUSTOMIZE": kustomize_binary()} if app.name.startswith("kustomize-") else {}
    if ecr is None:
        prime_cache(cache_dir, app.images)
    else:
        cache_dir = workspace.root / f"cache-{app.name}-cold-profile"
        shutil.rmtree(cache_dir, ignore_errors=True)
        extra |= {"AWS_ENDPOINT_URL_ECR": ecr, "TAGPIN_ECR_CONCURRENCY": "1"}
    out.parent.mkdir(parents=True, exist_ok=True)
    if served:
        with render_server(workspace, profile=True) as server:
            env = argocd_env(workspace, app, cache_dir, extra={**extra, **server.env()})
            subprocess.run(
                workspace.generate,
                cwd=app.app_dir,
                env=env,
                check=True,
                stdout=subprocess.DEVNULL,
            )
            shutil.move(_worker_profile(server), out)
    else:
        env = argocd_env(workspace, app, cache_dir, extra=extra)
        arguments = ["pin", str(pin_input(workspace, app))] if pin else ["generate"]
        subprocess.run(
            [str(workspace.python), "-c", PROFILED, str(out), str(workspace.script), *arguments],
            cwd=app.app_dir,
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
    return summary(out)


def _worker_profile(server: RenderServer) -> Path:
    """The profile the worker that answered writes once it has answered (its log says where)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        written = server.profiles()
        if written:
            return written[-1]
        time.sleep(0.05)
    raise RuntimeError(
        "no worker wrote a profile: the render did not reach the render server\n"
        + server.log.read_text()
    )


def summary(path: Path) -> str:
    """The 30 functions with the most cumulative time, then the 20 with the most of their own."""
    text = io.StringIO()
    stats = pstats.Stats(str(path), stream=text)
    stats.sort_stats("cumulative").print_stats(30)
    stats.sort_stats("tottime").print_stats(20)
    return text.getvalue()
