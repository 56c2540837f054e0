"""Memory: one tenant's render cannot get the whole sidecar OOM-killed. Each render is capped at
its share of the container's cgroup memory limit (TAGPIN_MAX_MEMORY_MB=auto), at most
TAGPIN_MAX_PARALLEL_RENDERS run at once, and YAML input is bounded by node count. The shipped
manifests, the image and the defaults must agree (docs/reliability.md, "Memory")."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from cmp.errors import ConfigError, ExitStatus
from cmp.limits import memory
from cmp.settings import SETTINGS_BY_ENV, Number, Settings
from tests.support.apptree import build_tree, clean_env, cm
from tests.support.hostile import LOCKED_APP, Sidecar, committed_repo, worker_peaks_mib

REPO = Path(__file__).resolve().parents[2]
MiB = 1024 * 1024
SIDECAR_PATCH = REPO / "deploy/tagpin/repo-server-sidecar.yaml"
HELM_VALUES = REPO / "deploy/helm/values-argo-cd.yaml"
# The largest render measured (tests/support/large_app.py: 2,000 Deployments, 40 repositories,
# cold cache against moto) completes under a 128 MiB cap; a share must be at least that.
LARGEST_MEASURED_RENDER_MB = 128


def quantity_bytes(quantity: str) -> int:
    number, unit = re.fullmatch(r"(\d+)(Ki|Mi|Gi)?", quantity).groups()  # type: ignore[union-attr]
    return int(number) * {None: 1, "Ki": 1024, "Mi": MiB, "Gi": 1024 * MiB}[unit]


def shipped_sidecars() -> list[dict[str, Any]]:
    """The tagpin container of deploy/tagpin/ (kustomize) and of deploy/helm/ (Helm)."""
    patch = yaml.safe_load(SIDECAR_PATCH.read_text())
    helm = yaml.safe_load(HELM_VALUES.read_text())
    return [
        *(c for c in patch["spec"]["template"]["spec"]["containers"] if c["name"] == "tagpin"),
        *(c for c in helm["repoServer"]["extraContainers"] if c["name"] == "tagpin"),
    ]


def shipped_limit_bytes() -> int:
    (limit,) = {quantity_bytes(c["resources"]["limits"]["memory"]) for c in shipped_sidecars()}
    return limit


def shipped_share_mb() -> int:
    return memory.per_render_megabytes(Settings.from_environ({}), shipped_limit_bytes())


# --- the default follows the container ------------------------------------------------------


def fake_cgroup(root: Path, proc: str, files: dict[str, str]) -> tuple[Path, Path]:
    build_tree(root / "sys", files)
    (root / "proc-cgroup").write_text(proc)
    return root / "sys", root / "proc-cgroup"


@pytest.mark.parametrize(
    ("proc", "files", "limit"),
    [
        # cgroup v2 with a cgroup namespace (the usual container): the root file is the container's
        ("0::/\n", {"memory.max": "536870912\n"}, 512 * MiB),
        # v2 without a namespace: the process's own cgroup, the smallest along its path
        (
            "0::/kubepods/pod1/c1\n",
            {
                "memory.max": "max\n",
                "kubepods/pod1/memory.max": "1073741824\n",
                "kubepods/pod1/c1/memory.max": "536870912\n",
            },
            512 * MiB,
        ),
        (
            "0::/kubepods/pod1/c1\n",
            {"kubepods/pod1/memory.max": "268435456\n", "kubepods/pod1/c1/memory.max": "max\n"},
            256 * MiB,
        ),
        # cgroup v1: memory.limit_in_bytes, "no limit" being a huge page-aligned number
        (
            "4:memory:/docker/abc\n2:cpu,cpuacct:/docker/abc\n",
            {
                "memory/memory.limit_in_bytes": "9223372036854771712\n",
                "memory/docker/abc/memory.limit_in_bytes": "536870912\n",
            },
            512 * MiB,
        ),
        ("4:cpuacct,memory:/\n", {"memory/memory.limit_in_bytes": "9223372036854771712\n"}, None),
        ("0::/\n", {"memory.max": "max\n"}, None),
        ("", {}, None),
    ],
)
def test_the_default_memory_cap_follows_the_cgroup_limit(
    tmp_path: Path, proc: str, files: dict[str, str], limit: int | None
) -> None:
    root, proc_cgroup = fake_cgroup(tmp_path, proc, files)
    assert memory.container_limit_bytes(root, proc_cgroup) == limit


@pytest.mark.parametrize(
    ("environ", "limit", "share"),
    [
        ({}, 512 * MiB, (512 - 128) // 2),
        ({"TAGPIN_MAX_MEMORY_MB": "auto"}, 1024 * MiB, (1024 - 128) // 2),
        ({"TAGPIN_MAX_PARALLEL_RENDERS": "4"}, 1024 * MiB, (1024 - 128) // 4),
        ({}, None, 4096),  # a laptop or CI runner without a limit
        ({"TAGPIN_MAX_MEMORY_MB": "300"}, 512 * MiB, 300),  # set by hand: taken as is
        ({"TAGPIN_MAX_MEMORY_MB": "0"}, 512 * MiB, 0),
    ],
)
def test_each_render_gets_an_equal_share_of_what_the_container_has_left(
    environ: dict[str, str], limit: int | None, share: int
) -> None:
    assert memory.per_render_megabytes(Settings.from_environ(environ), limit) == share


def test_a_container_too_small_for_its_parallel_renders_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="leaves 0 MiB per render"):
        memory.per_render_megabytes(
            Settings.from_environ({"TAGPIN_MAX_PARALLEL_RENDERS": "8"}), 128 * MiB
        )


def test_shipped_manifests_image_and_default_agree_on_memory() -> None:
    """Both manifests limit the sidecar alike and leave the cap to `auto`; the image sets
    neither setting; the defaults give every render at least what the largest measured render
    needs, and all parallel renders plus the reserve fit the limit."""
    sidecars = shipped_sidecars()
    assert len(sidecars) == 2
    for container in sidecars:
        names = {entry["name"] for entry in container.get("env", [])}
        assert not names & {"TAGPIN_MAX_MEMORY_MB", "TAGPIN_MAX_PARALLEL_RENDERS"}
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "TAGPIN_MAX_MEMORY_MB" not in dockerfile
    assert "TAGPIN_MAX_PARALLEL_RENDERS" not in dockerfile
    assert SETTINGS_BY_ENV["TAGPIN_MAX_MEMORY_MB"].default == "auto"
    parallel = int(SETTINGS_BY_ENV["TAGPIN_MAX_PARALLEL_RENDERS"].default)
    share = shipped_share_mb()
    assert share >= LARGEST_MEASURED_RENDER_MB
    assert parallel * share + memory.RESERVED_MB <= shipped_limit_bytes() // MiB


# --- the attacks from the issue, capped at the shipped share --------------------------------

EIGHT_MIB_LIST = "items:\n" + "- a\n" * (2 * MiB)  # one flat list: 2M nodes

TOO_MUCH = "templates/a.yaml.j2:6: the template needs more memory"
ATTACKS = {
    "center": (
        {"apps/web/templates/a.yaml.j2": cm("a", v="\"{{ 'a'|center(1500000000)|length }}\"")},
        ExitStatus.TEMPLATE,
        TOO_MUCH,
    ),
    "percent-format": (
        {"apps/web/templates/a.yaml.j2": cm("a", v="\"{{ ('%0900000000d' % 1)|length }}\"")},
        ExitStatus.TEMPLATE,
        TOO_MUCH,
    ),
    "8-MiB-values-list": (
        {"apps/web/values.yaml": EIGHT_MIB_LIST},
        ExitStatus.SOURCE,
        "values.yaml:1: YAML document has more than 200000 nodes",
    ),
}


@pytest.mark.parametrize("attack", ATTACKS)
def test_memory_bombs_fail_within_one_renders_share_of_the_shipped_container(
    tmp_path: Path, cmp_sidecar: Sidecar, render_mode: dict[str, str], attack: str
) -> None:
    """Each attack renders in the sidecar with the cap `auto` gives the shipped manifests
    (512 MiB, 2 renders at once): it fails with its own clear error, never exit 70 or an
    OOM kill, and the render's peak RSS stays within its share."""
    files, status, message = ATTACKS[attack]
    repo = committed_repo(tmp_path / "repo", {**LOCKED_APP, **files})
    share = shipped_share_mb()
    peak_file = tmp_path / "peak"
    settings = {
        **render_mode,
        "TAGPIN_MAX_MEMORY_MB": str(share),
        "PATH": f"{peak_probe(tmp_path, peak_file)}{os.pathsep}{os.environ['PATH']}",
    }
    result = cmp_sidecar(repo, settings)
    assert result.exit_code == status and result.stdout == "", result.error
    assert message in str(result.error)
    assert "exit 70" not in str(result.error)
    # The probe saw `tagpin generate`; with a render server, that is its client and the
    # server's log has the worker's peak.
    peaks = [int(peak_file.read_text()) / 1024, *worker_peaks_mib(render_mode)]
    assert max(peaks) < share


def peak_probe(tmp_path: Path, peak_file: Path) -> Path:
    """A `tagpin` first on PATH that runs the real one and records its peak RSS (KiB)."""
    directory = tmp_path / "probe"
    directory.mkdir()
    real = Path(sys.executable).with_name("tagpin")
    probe = directory / "tagpin"
    probe.write_text(
        textwrap.dedent(f"""\
        #!{sys.executable}
        import resource, subprocess, sys
        done = subprocess.run([{str(real)!r}, *sys.argv[1:]])
        with open({str(peak_file)!r}, "w") as out:
            out.write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))
        sys.exit(done.returncode)
        """)
    )
    probe.chmod(0o755)
    return directory


def test_a_yaml_document_with_too_many_plain_nodes_is_refused_before_it_is_composed(
    tmp_path: Path,
) -> None:
    """Composing costs ~300 bytes a node; the count is checked on parser events first."""
    from cmp.errors import SourceError
    from cmp.source.yamlread import load_all

    with pytest.raises(SourceError, match=r"big.yaml:3: YAML document has more than 1000 nodes"):
        load_all("a: 1\n---\n" + "- x\n" * 1001, "big.yaml", max_nodes=1000)
    flow = "[" + ",".join(["{a}"] * 600) + "]"  # two nodes in three characters
    with pytest.raises(SourceError, match="more than 1000 nodes"):
        load_all(flow, "flow.yaml", max_nodes=1000)
    assert len(load_all("- x\n" * 999, "ok.yaml", max_nodes=1000)[0][1]) == 999


# --- values the code cannot use are refused at start -----------------------------------------


@pytest.mark.parametrize("absurd", ["1" + "0" * 30, "1e400", "nan", "0x10", "١٢"])
def test_an_absurd_max_memory_mb_is_a_config_error_at_start(tmp_path: Path, absurd: str) -> None:
    """Was exit 70: a number too large for setrlimit got as far as setting the cap."""
    app = build_tree(tmp_path / "app", {"tagpin.yaml": "{}\n", "templates/cm.yaml": cm("cm")})
    done = subprocess.run(
        [str(Path(sys.executable).with_name("tagpin")), "generate"],
        cwd=app,
        env=clean_env({"TAGPIN_MAX_MEMORY_MB": absurd, "ARGOCD_APP_NAME": "app"}),
        capture_output=True,
        check=False,
    )
    assert (done.returncode, done.stdout) == (ExitStatus.CONFIG, b"")
    assert b"TAGPIN_MAX_MEMORY_MB=" in done.stderr


def test_a_render_with_every_numeric_setting_at_its_maximum_works(tmp_path: Path) -> None:
    """The table's maximum of each number is one the code can use (setrlimit, setitimer,
    thread pools, slot files): none of them is an internal error."""
    app = build_tree(tmp_path / "app", {"tagpin.yaml": "{}\n", "templates/cm.yaml": cm("cm")})
    largest = {
        s.env: str(int(s.maximum))
        for s in SETTINGS_BY_ENV.values()
        if isinstance(s, Number) and not s.env.startswith("TAGPIN_WEBHOOK_")
    }
    done = subprocess.run(
        [str(Path(sys.executable).with_name("tagpin")), "generate"],
        cwd=app,
        env=clean_env(
            {**largest, "TAGPIN_CACHE_DIR": str(tmp_path / "cache"), "ARGOCD_APP_NAME": "app"}
        ),
        capture_output=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    assert b"name: cm" in done.stdout
