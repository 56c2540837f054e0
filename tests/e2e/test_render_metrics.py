"""The render server's /metrics (TAGPIN_METRICS_PORT): what an operator's Prometheus scrapes
moves by exactly what the renders did.

Real parts: the cmp-server emulator running `tagpin generate` into a `tagpin render-server`
process, moto's ECR server (whose own call counter is the truth the ECR metric must match), the
Kubernetes API stand-in holding the Applications and their push record, and /metrics scraped
over HTTP on 127.0.0.1 and read with prometheus_client's own parser.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from cmp.metrictable import METRICS, PROCESS_PREFIX, family_name
from cmp.registry.pushes import PUSHES_ANNOTATION, PushRecord, format_record, record_pushes
from tests.support import push_fleet
from tests.support.cmpserver import AppSpec, CmpServer
from tests.support.fake_kube import FakeKube
from tests.support.moto_ecr import MotoEcr
from tests.support.push_fleet import HOST, manifest, render_server
from tests.support.redis_server import free_port

WEB = f"{HOST}/shop/web"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(port: int) -> tuple[str, Samples]:
    """/metrics as Prometheus reads it: its content type, and every sample by name and labels."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        content_type = response.headers["Content-Type"]
        text = response.read().decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return content_type, samples


def settled(port: int) -> Samples:
    """A scrape once every worker started has been reaped: a client has its answer before its
    worker exits, and the server counts a worker (and adds its report) when it reaps it."""
    deadline = time.monotonic() + 30
    while True:
        _, samples = scrape(port)
        rendered = sum(v for (name, _), v in samples.items() if name == "tagpin_renders_total")
        if rendered == value(samples, "tagpin_render_workers_started_total"):
            return samples
        assert time.monotonic() < deadline, "the render server never reaped its workers"
        time.sleep(0.02)


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def moved(before: Samples, after: Samples) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Counter and histogram-count samples that changed, and by how much."""
    return {
        key: after[key] - before.get(key, 0.0)
        for key in after
        if key[0].endswith(("_total", "_count")) and after[key] != before.get(key, 0.0)
    }


def answers(delta: dict[tuple[str, frozenset[tuple[str, str]]], float]) -> dict[str, float]:
    """tagpin_registry_answers_total's moves as `layer/question/outcome`."""
    found = {}
    for (name, labels), amount in delta.items():
        if name == "tagpin_registry_answers_total":
            shown = dict(labels)
            found[f"{shown['layer']}/{shown['question']}/{shown['outcome']}"] = amount
    return found


def ecr_calls(delta: dict[tuple[str, frozenset[tuple[str, str]]], float]) -> dict[str, float]:
    return {
        dict(labels)["operation"]: amount
        for (name, labels), amount in delta.items()
        if name == "tagpin_ecr_calls_total" and dict(labels)["error"] == "none"
    }


@pytest.fixture
def workdir() -> Iterator[Path]:
    # Short: the render server's socket path must fit in 100 bytes, unlike pytest's tmp paths.
    directory = Path(tempfile.mkdtemp(prefix="tpm-", dir="/tmp"))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def test_metrics_move_by_exactly_what_the_renders_did(
    moto_ecr: MotoEcr, fake_kube: FakeKube, kubeconfig: Path, workdir: Path
) -> None:
    first = moto_ecr.push("shop/web", "main", manifest("web-1"))
    gitops = push_fleet.write_gitops(workdir / "gitops", {"web": f"{WEB}:main"})
    broken = gitops / "apps" / "broken"
    (broken / "templates").mkdir(parents=True)
    (broken / "tagpin.yaml").write_text("{}\n")
    (broken / "templates" / "oops.yaml.j2").write_text("{{ nothing.here }}\n")
    fake_kube.add("argocd", "web")
    fake_kube.add("argocd", "broken")
    aws_env = {k: os.environ[k] for k in os.environ if k.startswith("AWS_")}
    port = free_port()
    server_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("TAGPIN_", "ARGOCD_"))},
        "TAGPIN_METRICS_PORT": str(port),
        "TAGPIN_CACHE_DIR": str(workdir / "sidecar" / "cache"),  # the replica's: its slots
    }
    (workdir / "server").mkdir()
    with render_server(workdir / "server", server_env) as socket_path:
        sidecar: CmpServer = push_fleet.replica(
            workdir, "sidecar", kubeconfig, aws_env, socket_path
        )

        def render(app: str) -> tuple[int, str]:
            spec = AppSpec(name=app, source_path=f"apps/{app}", plugin={"name": "tagpin"})
            result = sidecar.generate(gitops, spec)
            if not result.ok:
                return -1 if result.exit_code is None else result.exit_code, result.stderr
            return 0, result.objects[0]["spec"]["template"]["spec"]["containers"][0]["image"]

        def step(app: str) -> tuple[int, str, dict[tuple[str, frozenset[tuple[str, str]]], float]]:
            before = settled(port)
            moto_ecr.reset_calls()
            code, said = render(app)
            after = settled(port)
            delta = moved(before, after)
            # Every ECR call that reached moto is counted, by operation, and no other.
            assert ecr_calls(delta) == {k: float(v) for k, v in moto_ecr.counts().items() if v}
            return code, said, delta

        content_type, start = scrape(port)
        assert content_type.startswith("text/plain; version=0.0.4")
        assert value(start, "tagpin_renders_total", result="ok", exit_code="0") == 0

        # A miss: nothing cached, so ECR answers.
        code, image, delta = step("web")
        assert (code, image) == (0, f"{WEB}:main@{first}")
        assert answers(delta) == {"ecr/tags/fresh": 1}
        assert (
            delta[("tagpin_renders_total", frozenset({"result": "ok", "exit_code": "0"}.items()))]
            == 1
        )
        assert delta[("tagpin_render_workers_started_total", frozenset())] == 1
        assert delta[("tagpin_render_duration_seconds_count", frozenset())] == 1
        assert delta[("tagpin_render_slot_wait_seconds_count", frozenset())] == 1

        # A warm hit: the disk cache answers (each worker is a fresh fork: memory is empty).
        code, image, delta = step("web")
        assert (code, image) == (0, f"{WEB}:main@{first}")
        assert answers(delta) == {"disk/tags/fresh": 1}
        assert ecr_calls(delta) == {}

        # A push the webhook recorded on the Application: the cached answer predates it, so the
        # push floor refuses it and ECR is asked; the render pins the pushed digest.
        second = moto_ecr.push("shop/web", "main", manifest("web-2"))
        pushed_at = time.time()
        record = record_pushes(PushRecord({}), [(WEB, "main", second)], pushed_at)
        fake_kube.applications[("argocd", "web")]["metadata"]["annotations"] = {
            PUSHES_ANNOTATION: format_record(record)
        }
        code, image, delta = step("web")
        assert (code, image) == (0, f"{WEB}:main@{second}")
        assert answers(delta) == {"disk/tags/refused_by_push_floor": 1, "ecr/tags/fresh": 1}
        decisions = frozenset({"decision": "refused"}.items())
        assert delta[("tagpin_push_floor_decisions_total", decisions)] == 1
        assert delta[("tagpin_push_to_render_seconds_count", frozenset())] == 1

        # The next render trusts what was fetched after the push; the push is timed once only.
        code, image, delta = step("web")
        assert (code, image) == (0, f"{WEB}:main@{second}")
        assert answers(delta) == {"disk/tags/fresh": 1}
        admitted = frozenset({"decision": "admitted"}.items())
        assert delta[("tagpin_push_floor_decisions_total", admitted)] == 1
        assert ("tagpin_push_to_render_seconds_count", frozenset()) not in delta

        # A failure: counted with the exit code the client got.
        code, said, delta = step("broken")
        assert code == 5, said
        assert (
            delta[
                ("tagpin_renders_total", frozenset({"result": "error", "exit_code": "5"}.items()))
            ]
            == 1
        )
        assert answers(delta) == {}

        end = settled(port)
        assert value(end, "tagpin_renders_total", result="ok", exit_code="0") == 4
        assert value(end, "tagpin_render_workers_started_total") == 5
        assert value(end, "tagpin_render_workers_running") == 0
        assert value(end, "tagpin_render_slots_busy") == 0
        assert value(end, "tagpin_render_reports_unreadable_total") == 0


def test_render_server_metrics_are_the_table(
    moto_ecr: MotoEcr, fake_kube: FakeKube, kubeconfig: Path, workdir: Path
) -> None:
    """What /metrics serves is what cmp/metrictable.py (and so docs/reference.md) lists."""
    port = free_port()
    server_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("TAGPIN_", "ARGOCD_"))},
        "TAGPIN_METRICS_PORT": str(port),
    }
    (workdir / "server").mkdir()
    gitops = push_fleet.write_gitops(workdir / "gitops", {"web": f"{WEB}:main"})
    moto_ecr.push("shop/web", "main", manifest("web-1"))
    fake_kube.add("argocd", "web")
    aws_env = {k: os.environ[k] for k in os.environ if k.startswith("AWS_")}
    with render_server(workdir / "server", server_env) as socket_path:
        sidecar = push_fleet.replica(workdir, "sidecar", kubeconfig, aws_env, socket_path)
        spec = AppSpec(name="web", source_path="apps/web", plugin={"name": "tagpin"})
        assert sidecar.generate(gitops, spec).ok
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            text = response.read().decode()
    served = {
        (family.name, family.type)
        for family in text_string_to_metric_families(text)
        if not family.name.startswith(PROCESS_PREFIX)
    }
    listed = {(family_name(m), m.kind) for m in METRICS if m.source == "render server"}
    assert served == listed


def test_an_in_process_render_counts_nothing_and_imports_no_metrics_client(
    tmp_path: Path,
) -> None:
    """Without a render server there is no one to report to: TAGPIN_METRICS_PORT set or not,
    a render in its own process loads no part of the metrics code and serves no port."""
    app = push_fleet.write_gitops(tmp_path / "gitops", {"web": "nginx:1.27"}) / "apps" / "web"
    port = free_port()
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from cmp.generate import generate\n"
        "import os\n"
        "status = generate(os.environ, Path.cwd())\n"
        "loaded = sorted(m for m in sys.modules if m.startswith(('prometheus_client', "
        "'cmp.server.metrics', 'cmp.server.tally')))\n"
        "sys.stderr.write(f'status {status} loaded {loaded}\\n')\n"
    )
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "TAGPIN_CACHE_DIR": str(tmp_path / "cache"),
        "TAGPIN_METRICS_PORT": str(port),
        "ARGOCD_APP_NAME": "web",
    }
    import subprocess
    import sys

    run = subprocess.run(
        [sys.executable, "-c", script], cwd=app, env=env, capture_output=True, text=True, timeout=60
    )
    assert run.stderr.splitlines()[-1] == "status 0 loaded []", run.stderr
    assert "image: nginx:1.27" in run.stdout
    with pytest.raises(OSError):
        scrape(port)
