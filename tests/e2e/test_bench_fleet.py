"""`python -m bench.fleet` still runs (tiny storms, no assertion on time), and reports what the
fleet cache promises: with Redis one ECR call per repository whatever the number of replicas
(none once Redis holds the answers), without it one per replica and repository; through each
replica's render server (the default, as in the image) and in-process alike."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("how", [[], ["--in-process"]], ids=["served", "in-process"])
def test_a_tiny_storm_reports_one_call_per_repository_with_redis(
    tmp_path: Path, how: list[str]
) -> None:
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
            *how,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    rows = {
        (cells[0], cells[1], cells[2]): cells[4].split()[0]
        for line in completed.stdout.splitlines()
        if line.startswith("| ")
        for cells in [[c.strip() for c in line.strip("|").split("|")]]
        if cells[1].isdigit()
    }
    # Each storm checks every render's output too: tags pinned, or v2 chosen for a branch.
    assert rows == {
        ("cold", "1", "no"): "2",
        ("cold", "1", "yes"): "2",
        ("cold", "2", "no"): "4",
        ("cold", "2", "yes"): "2",
        ("redis", "1", "yes"): "0",
        ("redis", "2", "yes"): "0",
        ("branch", "1", "no"): "2",
        ("branch", "1", "yes"): "2",
        ("branch", "2", "no"): "4",
        ("branch", "2", "yes"): "2",
    }
