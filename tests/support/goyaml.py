"""A real go-yaml reader for differential tests: tests/goyaml/main.go built against the library
sources Debian ships (golang-go, golang-gopkg-yaml.v2-dev, golang-gopkg-yaml.v3-dev,
golang-k8s-sigs-yaml-dev; `.ci/run` installs them), without the Go module proxy.

`GoReader.read(text)` gives what Argo CD reads from a YAML stream (its document splitter, then
sigs.k8s.io/yaml's YAMLToJSON on go-yaml v2, empty and null documents dropped) and what yaml.v3
reads, with values JSON cannot say written as {"!timestamp": …}, {"!float": "+Inf"} markers.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

GOCODE = Path("/usr/share/gocode")
SOURCE = Path(__file__).resolve().parent.parent / "goyaml" / "main.go"
LIBRARIES = ("gopkg.in/yaml.v2", "gopkg.in/yaml.v3", "sigs.k8s.io/yaml")
INSTALL = (
    "apt-get install golang-go golang-gopkg-yaml.v2-dev golang-gopkg-yaml.v3-dev "
    "golang-k8s-sigs-yaml-dev"
)


def build(directory: Path) -> Path:
    """Compile the reader into `directory` (a GOPATH of its own; nothing in the repository)."""
    go = shutil.which("go") or "/usr/lib/go/bin/go"
    missing = [lib for lib in LIBRARIES if not (GOCODE / "src" / lib).is_dir()]
    if not Path(go).is_file() or missing:
        raise AssertionError(
            f"the go-yaml differential tests need Go and the go-yaml sources ({INSTALL}); "
            f"missing: {', '.join(missing) or 'go'}"
        )
    package = directory / "src" / "goyaml"
    package.mkdir(parents=True, exist_ok=True)
    shutil.copy(SOURCE, package / "main.go")
    binary = directory / "goyaml"
    env = {
        **os.environ,
        "GO111MODULE": "off",
        "GOPROXY": "off",
        "GOFLAGS": "",
        "CGO_ENABLED": "0",
        "GOPATH": f"{directory}{os.pathsep}{GOCODE}",
        "GOCACHE": str(directory / "cache"),
    }
    done = subprocess.run(
        [go, "build", "-o", str(binary), "."],
        cwd=package,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, f"go build failed:\n{done.stderr}"
    return binary


@dataclass(frozen=True)
class GoRead:
    argo: list[Any] | None  # None: Argo CD would fail to read the stream
    argo_error: str
    v3: list[Any] | None
    v3_error: str


class GoReader:
    """One long-lived `goyaml read` process: a line of JSON in, a line of JSON out."""

    def __init__(self, binary: Path) -> None:
        self._process = subprocess.Popen(
            [str(binary), "read"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            errors="surrogatepass",
        )

    def read(self, text: str) -> GoRead:
        stdin: IO[str] = self._process.stdin  # type: ignore[assignment]
        stdout: IO[str] = self._process.stdout  # type: ignore[assignment]
        stdin.write(json.dumps(text) + "\n")
        stdin.flush()
        line = stdout.readline()
        assert line, "the go-yaml reader stopped"
        answer = json.loads(line)
        return GoRead(
            argo=None if answer.get("argo_error") else answer["argo"],
            argo_error=answer.get("argo_error", ""),
            v3=None if answer.get("v3_error") else answer["v3"],
            v3_error=answer.get("v3_error", ""),
        )

    def close(self) -> None:
        if self._process.stdin:
            self._process.stdin.close()
        self._process.wait(timeout=30)


def decode_test_cases(binary: Path, library: str = "gopkg.in/yaml.v2") -> list[str]:
    """The YAML texts of go-yaml's own unmarshalTests table (`library`'s decode_test.go)."""
    table = GOCODE / "src" / library / "decode_test.go"
    assert table.is_file(), f"{table} missing: {INSTALL}"
    done = subprocess.run(
        [str(binary), "cases", str(table)], capture_output=True, text=True, timeout=60, check=True
    )
    cases: list[str] = json.loads(done.stdout)
    return cases
