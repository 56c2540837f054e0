"""The `yaml` npm package as a YAML 1.1 reader for differential tests: tests/support/actionlint's
Node.js package (`npm ci --prefix tests/support/actionlint`, as the README installs it) holds
it, and yaml11.cjs reads each stream there. It takes plain `0:30` and `+07:00` for sexagesimal
numbers and `.` for NaN, where go-yaml and PyYAML read strings."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import IO, Any

PACKAGE = Path(__file__).resolve().parent / "actionlint"
SCRIPT = PACKAGE / "yaml11.cjs"
INSTALL = "npm ci --prefix tests/support/actionlint --no-audit --no-fund --loglevel=error"


def _exact(value: Any) -> Any:
    """The reader's values with integers exact again ({"!int": "…"} → int)."""
    if isinstance(value, dict):
        if list(value) == ["!int"]:
            return int(value["!int"])
        return {key: _exact(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_exact(item) for item in value]
    return value


class Yaml11Reader:
    """One long-lived `node yaml11.cjs`: a line of JSON in, a line of JSON out."""

    def __init__(self) -> None:
        node = shutil.which("node")
        assert node, "Node.js is needed for the YAML 1.1 reader (see README)"
        assert (PACKAGE / "node_modules" / "yaml").is_dir(), (
            f"the yaml package is missing: {INSTALL}"
        )
        self._process = subprocess.Popen(
            [node, str(SCRIPT)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            errors="surrogatepass",
        )

    def read(self, text: str) -> list[Any] | None:
        """The documents it reads (null ones dropped, as the other readers' are compared), or
        None when it refuses the stream."""
        stdin: IO[str] = self._process.stdin  # type: ignore[assignment]
        stdout: IO[str] = self._process.stdout  # type: ignore[assignment]
        stdin.write(json.dumps(text) + "\n")
        stdin.flush()
        line = stdout.readline()
        assert line, "the YAML 1.1 reader stopped"
        answer = json.loads(line)
        if "error" in answer:
            return None
        return [_exact(doc) for doc in answer["docs"] if doc is not None]

    def close(self) -> None:
        if self._process.stdin:
            self._process.stdin.close()
        self._process.wait(timeout=30)
