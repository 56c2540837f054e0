"""The image we ship, run as the sidecar runs (tests/support/image.py): read-only root, UID 999,
only /tmp writable, no network, the pod's memory limit and environment, requests copied in
read-only by the cmp-server emulator. What a platform team relies on after `docker build`:
the same bytes as a render on a laptop, warm renders from the render server, the plugin.yaml
Argo CD reads, Kustomize apps, the memory cap, nothing written outside /tmp, no pip to
install anything, and a bill of materials of what it carries."""

from __future__ import annotations

import json
import re
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from cmp import __version__
from cmp.errors import ExitStatus
from cmp.limits.memory import RESERVED_MB
from tests.support.apptree import build_tree
from tests.support.cmpserver import AppSpec, CmpServer, GenerateResult
from tests.support.image import (
    PLUGIN_YAML,
    REPO,
    Sidecar,
    deployed_environment,
    deployed_limit_bytes,
    podman,
    runtime_problems,
    venv_cmp_server,
)

HOST = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
DIGEST = "sha256:" + "4" * 64
LOCK = (
    "apiVersion: tagpin.dev/v1\nkind: ImageLock\nimages:\n"
    f"- {{image: '{HOST}/shop/web:v2', digest: '{DIGEST}'}}\n"
)
WEB = AppSpec(name="web", source_path="examples/web", destination_namespace="shop")
# A template that renders for hours (10^10 empty iterations): only a signal ends it.
SPIN = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}\n"
WAIT = 60.0  # seconds for something in the container to happen on a loaded machine


@pytest.fixture
def examples(tmp_path: Path) -> Path:
    """A GitOps repository holding the repository's examples (examples/web takes its digests
    from its tagpin.lock and includes templates from examples/lib)."""
    root = tmp_path / "repo"
    shutil.copytree(REPO / "examples", root / "examples")
    (root / ".git").mkdir()
    return root


def ok(result: GenerateResult) -> str:
    assert result.ok, (result.error, result.stderr)
    return result.stdout


def wait_for(condition: Any, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


# --- the image as built ---------------------------------------------------------------------


def test_the_image_keeps_the_sidecar_contract(tagpin_image: str) -> None:
    assert runtime_problems(tagpin_image) == []


def test_the_plugin_yaml_argo_cd_reads_is_the_repositorys(image_sidecar: Sidecar) -> None:
    assert image_sidecar.read(PLUGIN_YAML) == (REPO / "plugin.yaml").read_bytes()


def test_nothing_in_the_image_can_install_packages(image_sidecar: Sidecar) -> None:
    """No pip, setuptools or ensurepip for any python on PATH or in the venv, as a shell in
    the container would find them."""
    probe = image_sidecar.exec(
        [
            "sh",
            "-c",
            "for p in pip pip3 easy_install; do command -v $p; done;"
            " for py in python3 python /opt/tagpin/bin/python; do"
            "  for m in pip setuptools ensurepip; do"
            '   $py -c "import $m" 2>/dev/null && echo "$py imports $m";'
            "  done;"
            " done; true",
        ]
    )
    assert probe.returncode == 0, probe.stderr.decode()
    assert probe.stdout.decode() == ""


def test_the_sbom_lists_exactly_what_the_venv_ships(
    tagpin_image: str, image_sidecar: Sidecar
) -> None:
    """build-image.sh writes the image's CycloneDX SBOM next to it: a copy of the one the image
    carries, listing every distribution installed in /opt/tagpin at its pinned version."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", tagpin_image.rsplit("/", 1)[-1])
    written = (REPO / "build" / "image" / f"{name}.cdx.json").read_bytes()
    assert written == image_sidecar.read("/usr/share/doc/tagpin/sbom.cdx.json")
    sbom = json.loads(written)
    assert sbom["bomFormat"] == "CycloneDX"
    assert sbom["metadata"]["component"]["name"] == "tagpin"
    listed = {(c["name"].lower(), c["version"]) for c in sbom["components"]}
    installed = image_sidecar.exec(
        [
            "/opt/tagpin/bin/python",
            "-c",
            "import importlib.metadata as m\n"
            "for d in m.distributions(): print(d.metadata['Name'].lower(), d.version)",
        ]
    )
    shipped = {tuple(line.split()) for line in installed.stdout.decode().splitlines()}
    assert listed == shipped - {("tagpin", __version__)}
    pins = {
        tuple(line.lower().split("=="))
        for line in (REPO / "constraints.txt").read_text().splitlines()
        if "==" in line
    }
    canonical = {(n.replace("_", "-"), v) for n, v in listed}
    assert canonical <= {(n.replace("_", "-"), v) for n, v in pins}


# --- renders ----------------------------------------------------------------------------------


def test_generate_in_the_image_prints_the_bytes_of_an_in_process_render(
    image_sidecar: Sidecar, examples: Path, tmp_path: Path
) -> None:
    in_image = ok(image_sidecar.cmp_server().generate(examples, WEB, exclude=[".git"]))
    assert in_image == ok(venv_cmp_server(tmp_path).generate(examples, WEB, exclude=[".git"]))
    assert f"image: {HOST}/shop/web:v1.4.2@sha256:46d7abc2" in in_image


def test_later_renders_are_answered_by_the_render_server_the_first_started(
    fresh_sidecar: Sidecar, examples: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """TAGPIN_RENDER_SERVER=auto in a fresh sidecar: the first render runs in its own process
    and starts the server; the next ones are served. A served `tagpin generate` is a thin
    client that never imports Jinja2 (PYTHONPROFILEIMPORTTIME lists what it imports)."""
    cmp = fresh_sidecar.cmp_server()
    log = f"/tmp/tagpin-cache/render-server-{__version__}.sock.log"
    started = time.monotonic()
    first = ok(cmp.generate(examples, WEB, exclude=[".git"]))
    cold = time.monotonic() - started
    wait_for(
        lambda: b"serving" in fresh_sidecar.exec(["cat", log]).stdout,
        "the render server the first render started",
    )
    cmp.sidecar_env["PYTHONPROFILEIMPORTTIME"] = "1"
    warm = []
    for _ in range(2):
        started = time.monotonic()
        result = cmp.generate(examples, WEB, exclude=[".git"])
        warm.append(time.monotonic() - started)
        assert ok(result) == first
        imported = re.findall(r"^import time:.*\|\s*(\S+)$", result.stderr, re.MULTILINE)
        assert "cmp.cli" in imported, "the thin client's own imports are listed"
        assert not [name for name in imported if name.split(".")[0] == "jinja2"], imported
    # The deploy manifests' TAGPIN_METRICS_PORT reached the server the first render started:
    # its /metrics counts the two served renders (the first ran in its own process).
    port = deployed_environment()["TAGPIN_METRICS_PORT"]
    fetch = f"import urllib.request as u; print(u.urlopen('http://127.0.0.1:{port}/metrics').read().decode())"
    scraped = fresh_sidecar.exec(["python3", "-c", fetch])
    assert scraped.returncode == 0, scraped.stderr
    renders = {
        sample.labels["result"]: sample.value
        for family in text_string_to_metric_families(scraped.stdout.decode())
        for sample in family.samples
        if sample.name == "tagpin_renders_total"
    }
    assert renders == {"ok": 2.0}
    with capsys.disabled():
        print(
            f"\nimage renders of examples/web through podman exec (about 0.3 s of it podman's):"
            f" first {cold:.2f} s, served {warm[0]:.2f} s and {warm[1]:.2f} s"
        )


KUSTOMIZE_APP = {
    "bases/web/kustomization.yaml": "resources: [deployment.yaml]\n",
    "bases/web/deployment.yaml": (
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n"
        "  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n"
        f"    spec:\n      containers:\n      - {{name: web, image: '{HOST}/shop/web:v1'}}\n"
    ),
    "apps/shop/tagpin.yaml": "kustomize: {}\n",
    "apps/shop/tagpin.lock": LOCK,
    "apps/shop/kustomization.yaml": (
        "resources: [../../bases/web]\nnamePrefix: prod-\n"
        f"images:\n- {{name: {HOST}/shop/web, newTag: v2}}\n"
        "configMapGenerator:\n- {name: settings, literals: [MODE=prod]}\n"
    ),
}


def test_a_kustomize_app_renders_with_the_images_own_kustomize(
    image_sidecar: Sidecar, tmp_path: Path
) -> None:
    """The image's kustomize (no other is reachable from the container) builds the overlay
    exactly as the kustomize the tests run on this machine does."""
    repo = build_tree(tmp_path / "repo", KUSTOMIZE_APP)
    (repo / ".git").mkdir()
    shop = AppSpec(name="shop", source_path="apps/shop", destination_namespace="shop")
    in_image = ok(image_sidecar.cmp_server().generate(repo, shop, exclude=[".git"]))
    assert in_image == ok(venv_cmp_server(tmp_path).generate(repo, shop, exclude=[".git"]))
    assert f"image: {HOST}/shop/web:v2@{DIGEST}" in in_image
    assert "name: prod-settings-" in in_image  # kustomize's generator hash suffix
    # The released image has kustomize, CI's kubectl (docs/install.md): one of them, the image's.
    which = "for b in kustomize kubectl; do command -v $b; done; true"
    found = image_sidecar.exec(["sh", "-c", which]).stdout.split()
    assert found in ([b"/usr/local/bin/kustomize"], [b"/usr/local/bin/kubectl"])


# --- memory and render slots -------------------------------------------------------------------


def test_the_cap_follows_the_pods_memory_limit_in_the_container(
    image_sidecar: Sidecar, tmp_path: Path
) -> None:
    """TAGPIN_MAX_MEMORY_MB=auto reads the cgroup limit the pod's 512Mi sets: a template that
    asks for 1.5 GB fails alone with its own error (without the cap the kernel would OOM-kill
    the container), and the sidecar renders on."""
    app = {
        "apps/web/tagpin.yaml": "{}\n",
        "apps/web/templates/a.yaml.j2": (
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata:\n"
            "  v: \"{{ 'a'|center(1500000000)|length }}\"\n"
        ),
    }
    repo = build_tree(tmp_path / "repo", app)
    (repo / ".git").mkdir()
    cmp = image_sidecar.cmp_server()
    bomb = cmp.generate(repo, AppSpec(name="web", source_path="apps/web"), exclude=[".git"])
    assert (bomb.exit_code, bomb.stdout) == (ExitStatus.TEMPLATE, "")
    assert "templates/a.yaml.j2" in str(bomb.error) and "needs more memory" in str(bomb.error)
    state = json.loads(podman("inspect", "--format", "{{json .State}}", image_sidecar.name).stdout)
    assert (state["Running"], state["OOMKilled"]) == (True, False)
    # More parallel renders than the limit has room for: the error names the pod's limit.
    cmp.sidecar_env["TAGPIN_MAX_PARALLEL_RENDERS"] = "16"
    crowded = cmp.generate(repo, AppSpec(name="web", source_path="apps/web"), exclude=[".git"])
    limit_mib = deployed_limit_bytes() // (1024 * 1024)
    assert f"the container's memory limit ({limit_mib} MiB) leaves" in str(crowded.error)
    assert f"{(limit_mib - RESERVED_MB) // 16} MiB per render" in str(crowded.error)


def test_a_render_waits_for_a_free_slot_in_the_container(
    image_sidecar: Sidecar, tmp_path: Path
) -> None:
    """With TAGPIN_MAX_PARALLEL_RENDERS=1, a render that finds the slot held by a runaway render
    waits; Argo CD's deadline ends the runaway (its worker goes with its client) and the waiting
    render then completes."""
    repo = build_tree(
        tmp_path / "repo",
        {
            "apps/spin/tagpin.yaml": "{}\n",
            "apps/spin/templates/spin.yaml.j2": SPIN,
            "apps/web/tagpin.yaml": "{}\n",
            "apps/web/templates/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm}\n",
        },
    )
    (repo / ".git").mkdir()
    runaway = image_sidecar.cmp_server(timeout=15)
    waiting = image_sidecar.cmp_server(timeout=120)
    for cmp in (runaway, waiting):
        cmp.sidecar_env["TAGPIN_MAX_PARALLEL_RENDERS"] = "1"
        # Argo CD's deadline, not the render's own budgets, is what ends the runaway here.
        cmp.sidecar_env["TAGPIN_MAX_RENDER_SECONDS"] = "50"
        cmp.sidecar_env["TAGPIN_MAX_CPU_SECONDS"] = "45"
    done: dict[str, tuple[float, GenerateResult]] = {}

    def render(key: str, cmp: CmpServer, path: str) -> None:
        result = cmp.generate(repo, AppSpec(name=key, source_path=path), exclude=[".git"])
        done[key] = (time.monotonic(), result)

    spinning = threading.Thread(target=render, args=("spin", runaway, "apps/spin"))
    spin_started = time.monotonic()
    spinning.start()
    # The slots' own records, read inside the container (what an operator would look at).
    held = (
        "from pathlib import Path\n"
        "from cmp.limits.slots import occupancy\n"
        "holders, _ = occupancy(Path('/tmp/tagpin-cache'))\n"
        "print('held' if [c.app for c in holders] == ['spin'] else 'free')\n"
    )
    wait_for(
        lambda: image_sidecar.exec(["/opt/tagpin/bin/python", "-c", held]).stdout == b"held\n",
        "the runaway render to hold the only slot",
    )
    render("web", waiting, "apps/web")
    spinning.join(timeout=WAIT)
    _, spin = done["spin"]
    finished, web = done["web"]
    assert not spin.ok and "signal: killed" in str(spin.error)
    assert "name: cm" in ok(web)
    # Not a speed figure: the slot frees only once the runaway's deadline has ended it.
    assert finished > spin_started + runaway.timeout, "the waiting render ran only once it could"


# --- the root filesystem ----------------------------------------------------------------------


def test_renders_write_nothing_outside_tmp(
    tagpin_image: str, examples: Path, tmp_path: Path
) -> None:
    """With the root filesystem left writable, a sidecar's work (renders in-process and served,
    a Kustomize app, the render server's socket and caches) changes nothing outside /tmp:
    `podman diff` lists only what podman itself did to start the container (/etc's mount
    points for hosts and resolv.conf)."""
    sidecar = Sidecar(tagpin_image, tmp_path / "sidecar" / "_cmp_server", read_only=False)
    try:
        started = sidecar.written_outside_tmp()
        assert started in ([], ["C", "/etc"]), started
        cmp = sidecar.cmp_server()
        for _ in range(2):
            ok(cmp.generate(examples, WEB, exclude=[".git"]))
        repo = build_tree(tmp_path / "kustomize", KUSTOMIZE_APP)
        (repo / ".git").mkdir()
        ok(cmp.generate(repo, AppSpec(name="shop", source_path="apps/shop"), exclude=[".git"]))
        assert sidecar.exec(["ls", "/tmp/tagpin-cache"]).stdout  # it did write, under /tmp
        assert sidecar.written_outside_tmp() == started
    finally:
        sidecar.remove()
