"""`python -m bench.fleet` still runs (tiny storm, no assertion on time), and reports what the
fleet cache promises: with Redis one ECR call per repository whatever the number of replicas,
without it one per replica and repository."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_a_tiny_storm_reports_one_call_per_repository_with_redis(tmp_path: Path) -> None:
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.fleet",
            "--replicas",
            "1",
            "2",
            "--apps",
            "4",
            "--repositories",
            "2",
            "--runs",
            "1",
            "--ecr-latency-ms",
            "0",
            "--workdir",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    rows = {
        (cells[0], cells[1]): cells[3].split()[0]
        for line in completed.stdout.splitlines()
        if line.startswith("| ")
        for cells in [[c.strip() for c in line.strip("|").split("|")]]
        if cells[0].isdigit()
    }
    assert rows == {("1", "no"): "2", ("1", "yes"): "2", ("2", "no"): "4", ("2", "yes"): "2"}
