"""Time `tagpin generate` the way Argo CD runs it against a floor measured in the same run.

The floor is a fresh process of the same interpreter that loads tagpin's own output with
PyYAML's C loader and dumps it with the C dumper: the least any Python YAML renderer can cost
here. Absolute times on shared machines are noise, so every figure is also a ratio to it.
"""

from __future__ import annotations

import argparse
import contextlib
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
from bench.cases import (
    cold_cases,
    import_check,
    kustomize_case,
    moto_ecr,
    pin_case,
    redis_hit_cases,
    warm_case,
)
from bench.lookup import kube_api
from bench.measure import argocd_env, make_workspace, precompile, prime_cache
from bench.model import REDIS_CONFIGURED, ImportCheck, Row
from bench.profiling import PROFILE_CASES, profile
from bench.report import import_report, machine, slope, table
from bench.server import render_server

# What `--cases` takes. The README and docs/performance.md name these in their commands
# (tests/unit/test_performance_docs.py checks that every one they name is here).
CASES = {
    "example": "examples/web, digests in the disk cache",
    "example-lock": "examples/web, digests from its tagpin.lock",
    "large": "large-2000 and large-10000",
    "large-2000": "2,000 plain-YAML objects, a quarter Deployments (40 with --smoke)",
    "large-10000": "10,000 of them (200 with --smoke)",
    "images-200": "200 images in 40 repositories, digests cached (8 in 4 with --smoke)",
    "cold": "those images against moto's ECR, empty cache every run",
    "served": "example (with kustomize, lookup, cold, redis: those too) through a render server",
    "metrics": "example through a second render server serving metrics (TAGPIN_METRICS_PORT), "
    "beside `served` (needs it)",
    "lookup": "example reading its Application from a Kubernetes API stand-in",
    "kustomize": "a Kustomize app against `kustomize build` plus the floor",
    "pin": "`tagpin pin FILE` on large-2000's objects",
    "imports": "python -X importtime: what a warm render imports",
    "redis": "example with the fleet cache configured (not run by default)",
    "redis-hit": "example answered by a real redis-server against the same render answered by "
    "the disk cache (not run by default)",
}
DEFAULT_CASES = tuple(
    case for case in CASES if case not in ("large-2000", "large-10000", "redis", "redis-hit")
)
SERVED = "served"


def build_apps(root: Path, smoke: bool) -> dict[str, BenchApp]:
    """The apps by the case that measures them (the large and images apps are smaller with
    --smoke, under the same case names)."""
    small, big = (40, 200) if smoke else (2000, 10000)
    images = dict(images=8, repositories=4) if smoke else dict(images=200, repositories=40)
    return {
        "example": example_app(root),
        "example-lock": example_app(root, keep_lock=True),
        "large-2000": large_app(root, small),
        "large-10000": large_app(root, big),
        "images-200": many_images_app(root, **images),
        "kustomize": kustomize_app(root, 20 if smoke else 100),
    }


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line, checked: an unknown case is an error, not an empty table."""
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
        metavar="CASE",
        help="subset of: "
        + "; ".join(f"{name}: {what}" for name, what in CASES.items())
        + f" (default: {' '.join(DEFAULT_CASES)})",
    )
    parser.add_argument(
        "--profile",
        nargs="+",
        metavar="CASE",
        help=f"render CASE once under cProfile ({', '.join(PROFILE_CASES)}; add `{SERVED}` to "
        "profile the render server's worker that answers it), print the top functions and the "
        "path of the .prof file",
    )
    parser.add_argument(
        "--profile-out",
        type=Path,
        help="where --profile writes its .prof (default: $TMPDIR/tagpin-CASE[-served].prof)",
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
    unknown = [case for case in args.cases or () if case not in CASES]
    if unknown:
        parser.error(f"--cases: no case {', '.join(unknown)}; pick from {', '.join(CASES)}")
    if args.profile:
        case, *rest = args.profile
        if case not in PROFILE_CASES or rest not in ([], [SERVED]) or (rest and case == "pin"):
            parser.error(
                f"--profile takes CASE or CASE {SERVED}, CASE one of {', '.join(PROFILE_CASES)} "
                "(`pin` is never served)"
            )
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
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
            case, *served = args.profile
            name = f"{case}-{SERVED}" if served else case
            out = args.profile_out or Path(tempfile.gettempdir()) / f"tagpin-{name}.prof"
            app = apps[{"pin": "large-2000", "cold": "images-200"}.get(case, case)]
            if case == "cold":
                moto = stack.enter_context(moto_ecr(app, args.ecr_latency_ms))
            summary = profile(
                workspace,
                app,
                out,
                pin=case == "pin",
                served=bool(served),
                ecr=moto.url if case == "cold" else None,
            )
            print(summary)
            print(f"wrote {out} (python -m pstats {out}, or snakeviz {out})")
            return 0

        wanted = set(args.cases or DEFAULT_CASES)
        if "large" in wanted:
            wanted |= {"large-2000", "large-10000"}
        rows: list[Row] = []
        checks: list[ImportCheck] = []
        for case in ("example", "example-lock", "large-2000", "large-10000", "images-200"):
            if case in wanted:
                app = apps[case]
                print(f"measuring {app.name} ...", file=sys.stderr, flush=True)
                # The 10,000-object app takes seconds per run: fewer runs, still a median.
                rows.append(warm_case(workspace, app, min(runs, 5) if app.objects > 5000 else runs))
        if "kustomize" in wanted:
            print(f"measuring {apps['kustomize'].name} ...", file=sys.stderr, flush=True)
            rows.append(kustomize_case(workspace, apps["kustomize"], runs))
        if "pin" in wanted:
            app = apps["large-2000"]
            print(f"measuring tagpin pin on {app.name} ...", file=sys.stderr, flush=True)
            rows.append(pin_case(workspace, app, runs))
        images_app = apps["images-200"]
        server = stack.enter_context(render_server(workspace)) if SERVED in wanted else None
        if server is not None:
            print("measuring example through the render server ...", file=sys.stderr, flush=True)
            rows.append(warm_case(workspace, apps["example"], runs, server=server))
        if server is not None and "metrics" in wanted:
            print(
                "measuring example through a render server with metrics ...",
                file=sys.stderr,
                flush=True,
            )
            with render_server(workspace, metrics=True) as counting:
                rows.append(warm_case(workspace, apps["example"], runs, server=counting))
        if server is not None and "kustomize" in wanted:
            app = apps["kustomize"]
            print(
                f"measuring {app.name} through the render server ...", file=sys.stderr, flush=True
            )
            rows.append(kustomize_case(workspace, app, runs, server=server))
        if "redis" in wanted:  # not in the default set: the fleet cache configured, warm
            print("measuring example with TAGPIN_REDIS_URL set ...", file=sys.stderr, flush=True)
            for via in (None, server) if server else (None,):
                rows.append(warm_case(workspace, apps["example"], runs, server=via, redis=True))
        if "redis-hit" in wanted:  # not in the default set: needs redis-server
            print("measuring example answered by Redis ...", file=sys.stderr, flush=True)
            rows.extend(redis_hit_cases(workspace, apps["example"], runs, server))
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
            for app in (apps["example"], apps["large-2000"]):
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
