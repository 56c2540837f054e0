"""`python -m bench.image`: the figures docs/install.md gives for the sidecar image.

Builds the image from this checkout with tests/support/build-image.sh (or takes `--tag`), then
prints: its size on disk and compressed (the gzip'd layers a registry stores), its layers; the
start of a fresh container as the sidecar runs (tests/support/image.py); the first render of
examples/web in it (in-process, and it starts the render server: TAGPIN_RENDER_SERVER=auto) and
the warm renders after it, each timed inside the container around `tagpin generate` (podman
exec's own ~0.3 s is not counted); with `--twice`, whether a second build from the same commit
gives the same image.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cmp import __version__
from tests.support.image import Sidecar, build_image, new_tag, podman, remove_image

ROOT = Path(__file__).resolve().parent.parent
WEB = {
    "ARGOCD_APP_NAME": "web",
    "ARGOCD_APP_NAMESPACE": "shop",
    "ARGOCD_APP_SOURCE_PATH": "examples/web",
    "ARGOCD_APP_REVISION": "0" * 40,
}
# Runs in the container: times one command, prints seconds and its exit status.
TIMER = (
    "import subprocess, sys, time\n"
    "started = time.perf_counter()\n"
    "done = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL)\n"
    "print(f'{time.perf_counter() - started:.4f} {done.returncode}')\n"
)


def build(tag: str) -> float:
    started = time.monotonic()
    built = build_image(tag)
    if built.returncode != 0:
        sys.exit(built.stderr[-4000:])
    return time.monotonic() - started


def sizes(tag: str) -> tuple[int, int, int]:
    """(bytes on disk, bytes of the gzip'd layers, layers)."""
    inspected = json.loads(podman("image", "inspect", tag).stdout)[0]
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "image"
        podman("save", "--format", "docker-dir", "--compress", "-o", str(out), tag, timeout=900)
        manifest = json.loads((out / "manifest.json").read_text())
        compressed = sum(layer["size"] for layer in manifest["layers"])
    return inspected["Size"], compressed, len(inspected["RootFS"]["Layers"])


def timed_render(sidecar: Sidecar) -> float:
    done = sidecar.exec(
        ["python3", "-I", "-c", TIMER, "tagpin", "generate"],
        env=WEB,
        cwd="/tmp/_cmp_server/repo/examples/web",
    )
    seconds, status = done.stdout.decode().split()
    if status != "0":
        sys.exit(f"tagpin generate failed in the container: {done.stderr.decode()}")
    return float(seconds)


def renders(tag: str, warm: int) -> tuple[float, float, list[float]]:
    """(container start, first render, warm renders), seconds."""
    with tempfile.TemporaryDirectory(dir="/tmp") as scratch:
        requests = Path(scratch) / "_cmp_server"
        shutil.copytree(ROOT / "examples", requests / "repo" / "examples")
        os.chmod(scratch, 0o755)
        started = time.monotonic()
        sidecar = Sidecar(tag, requests)
        try:
            start = time.monotonic() - started
            first = timed_render(sidecar)
            log = f"/tmp/tagpin-cache/render-server-{__version__}.sock.log"
            deadline = time.monotonic() + 60
            while b"serving" not in sidecar.exec(["cat", log]).stdout:
                if time.monotonic() > deadline:
                    sys.exit("no render server started in the container")
                time.sleep(0.2)
            return start, first, [timed_render(sidecar) for _ in range(warm)]
        finally:
            sidecar.remove()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.image", description=__doc__)
    parser.add_argument("--tag", help="measure this image instead of building one")
    parser.add_argument("--warm", type=int, default=11, help="warm renders (default 11)")
    parser.add_argument("--twice", action="store_true", help="build again, compare the images")
    args = parser.parse_args(argv)
    load = os.getloadavg()[0]
    tag = args.tag or new_tag("bench")
    try:
        if not args.tag:
            print(f"build: {build(tag):.0f} s (load average {load:.1f})")
        disk, compressed, layers = sizes(tag)
        print(f"size: {disk / 1e6:.0f} MB on disk, {compressed / 1e6:.0f} MB compressed", end="")
        print(f", {layers} layers")
        start, first, warm = renders(tag, args.warm)
        print(f"fresh container started in {start:.1f} s (podman, vfs)")
        print(f"first render (in-process, starts the render server): {first * 1000:.0f} ms")
        print(
            f"warm renders (served): median {statistics.median(warm) * 1000:.0f} ms,"
            f" min {min(warm) * 1000:.0f} ms, max {max(warm) * 1000:.0f} ms, n={len(warm)}"
        )
        if args.twice:
            again = new_tag("bench")
            try:
                print(f"second build: {build(again):.0f} s")
                ids = [
                    podman("image", "inspect", "--format", "{{.Id}}", t).stdout
                    for t in (tag, again)
                ]
                first_id, second_id = (i.strip()[:19] for i in ids)
                print(f"same image ID: {ids[0] == ids[1]} ({first_id}, {second_id})")
            finally:
                remove_image(again)
    finally:
        if not args.tag:
            remove_image(tag)
    print(
        f"load average at the end: {os.getloadavg()[0]:.1f}; {subprocess.getoutput('nproc')} cores"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
