"""The benchmark suite still runs: tiny apps, one run each, and no assertion on time.

What it does assert is behaviour the benchmarks report: a cold render asks ECR once per
repository, and the warm path imports neither boto3 nor a Kubernetes client (nor Jinja2 for an
app without templates).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    workdir = tmp_path_factory.mktemp("bench")
    completed = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--no-compile", "--workdir", str(workdir)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    return completed.stdout, workdir


def _table_rows(output: str) -> dict[str, list[str]]:
    rows = {}
    for line in output.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("| ") and not line.startswith("| case") and len(cells) > 2:
            rows[cells[0]] = cells
    return rows


def test_every_case_has_a_row(smoke_run: tuple[str, Path]) -> None:
    rows = _table_rows(smoke_run[0])
    assert set(rows) == {
        "example",
        "example-lock",
        "large-40",
        "large-200",
        "images-8",
        "images-8 cold",
        "example served",
        "example served metrics",
        "images-8 cold served",
        "example lookup",
        "example lookup served",
        "kustomize-20",
        "kustomize-20 served",
        "pin-40",
    }


@pytest.mark.parametrize(
    ("case", "objects"),
    [
        ("example", 4),
        ("large-40", 40),
        ("large-200", 200),
        ("images-8", 8),
        ("images-8 cold", 8),
        ("example served", 4),
        ("example served metrics", 4),
        ("images-8 cold served", 8),
        ("example lookup", 4),
        ("example lookup served", 4),
        ("kustomize-20", 21),
        ("pin-40", 40),
    ],
)
def test_tagpin_output_holds_every_object(
    smoke_run: tuple[str, Path], case: str, objects: int
) -> None:
    text = (smoke_run[1] / f"{case}.out.yaml").read_text()
    documents = [d for d in yaml.load_all(text, Loader=yaml.CSafeLoader) if d is not None]
    assert len(documents) == objects


def test_large_app_images_are_pinned_from_the_primed_cache(smoke_run: tuple[str, Path]) -> None:
    text = (smoke_run[1] / "large-40.out.yaml").read_text()
    images = [
        container["image"]
        for document in yaml.load_all(text, Loader=yaml.CSafeLoader)
        if document["kind"] == "Deployment"
        for container in document["spec"]["template"]["spec"]["containers"]
    ]
    assert len(images) == 10
    assert all("@sha256:" in image for image in images)


@pytest.mark.parametrize("case", ["kustomize-20", "kustomize-20 served", "pin-40"])
def test_kustomize_and_pin_rows_pin_every_image(smoke_run: tuple[str, Path], case: str) -> None:
    text = (smoke_run[1] / f"{case}.out.yaml").read_text()
    images = [
        container["image"]
        for document in yaml.load_all(text, Loader=yaml.CSafeLoader)
        if document["kind"] == "Deployment"
        for container in document["spec"]["template"]["spec"]["containers"]
    ]
    assert images and all("@sha256:" in image for image in images)
    if case.startswith("kustomize"):  # the overlay's images: newTag won over the base's tag
        assert any(":v2.0.0@sha256:" in image for image in images)


@pytest.mark.parametrize("case", ["images-8 cold", "images-8 cold served"])
def test_cold_render_asks_ecr_once_per_repository(smoke_run: tuple[str, Path], case: str) -> None:
    note = _table_rows(smoke_run[0])[case][-1]
    assert note.startswith("4 repos in 2 regions")
    assert "ECR calls/run 4 (DescribeImages 4)" in note


def test_the_served_rows_were_answered_by_the_render_server(smoke_run: tuple[str, Path]) -> None:
    """bench.server.served fails the run unless every render reached the server; the row says so."""
    rows = _table_rows(smoke_run[0])
    for case in ("example served", "images-8 cold served"):
        assert "render server: MiB = a worker's peak RSS" in rows[case][-1]
    assert (smoke_run[1] / "example served.out.yaml").read_text() == (
        smoke_run[1] / "example.out.yaml"
    ).read_text()


def test_warm_path_imports_no_aws_or_kubernetes_client(smoke_run: tuple[str, Path]) -> None:
    """...and a render the server answers imports neither PyYAML nor Jinja2 in the client."""
    lines = [line for line in smoke_run[0].splitlines() if line.startswith("- ")]
    assert [line.split(";")[0] for line in lines] == [
        "- example: OK",
        "- large-40: OK",
        "- example served: OK",
    ]


def test_the_redis_answered_cases_run_answered_by_redis(tmp_path: Path) -> None:
    """`--cases redis-hit` (not in the default set): its renders start with an empty disk
    cache and ECR closed, so the run fails unless a real redis-server answers them."""
    completed = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--no-compile", "--workdir", str(tmp_path)]
        + ["--cases", "served", "redis-hit"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    rows = _table_rows(completed.stdout)
    assert set(rows) == {"example served", "example redis-hit", "example redis-hit served"}
    assert "the workers: " in rows["example redis-hit served"][-1]
