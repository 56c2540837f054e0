"""Time `tagpin generate` the way Argo CD runs it against a floor measured in the same run.

The floor is a fresh process of the same interpreter that loads tagpin's own output with
PyYAML's C loader and dumps it with the C dumper: the least any Python YAML renderer can cost
here. Absolute times on shared machines are noise, so every figure is also a ratio to it.
"""

from __future__ import annotations

import argparse
import contextlib
import pstats
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from bench.apps import (
    BenchApp,
    example_app,
    kustomize_app,
    large_app,
    many_images_app,
)
from bench.cases import cold_cases, import_check, kustomize_case, pin_case, warm_case
from bench.lookup import kube_api
from bench.measure import argocd_env, make_workspace, precompile, prime_cache
from bench.model import REDIS_CONFIGURED, ImportCheck, Row, Workspace
from bench.report import import_report, machine, slope, table
from bench.server import render_server


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
