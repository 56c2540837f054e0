"""The tagpin image under test: built by tests/support/build-image.sh into podman's vfs storage
and run as deploy/ runs the sidecar (tests/e2e/image/, and the image half of the contract tests
in tests/e2e/test_contract.py).

A `Sidecar` is one running container started the way the repo-server pod starts its tagpin
container: UID 999, read-only root filesystem, a /tmp of its own (the cmp-tmp emptyDir), no
network, capabilities dropped, no privilege escalation, the memory limit and environment of
deploy/tagpin/repo-server-sidecar.yaml (a cgroup limit, as a pod gets it). argocd-cmp-server is
not in the image (the copyutil init container brings it): the emulator in
tests/support/cmpserver.py plays its part, copying each request on this machine into a
directory the container sees read-only at cmp-server's /tmp/_cmp_server and running the
plugin's commands with `podman exec`.

Podman cannot be skipped: where it is missing, build-image.sh installs it, and where it cannot
run, the fixtures fail with its reason.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.cmpserver import CmpServer, ContainerRunner, PluginConfig

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "tests" / "support" / "build-image.sh"
SIDECAR_PATCH = REPO / "deploy" / "tagpin" / "repo-server-sidecar.yaml"
PLUGIN_YAML = "/home/argocd/cmp-server/config/plugin.yaml"
# vfs: the storage driver that works on these machines; cgroupfs and runc: crun and systemd
# cgroups do not work here (docs/install.md, "Build the image").
PODMAN = ("podman", "--storage-driver", "vfs", "--cgroup-manager", "cgroupfs")
# Raising rlimits is refused here, so the container's are lowered to values any pod exceeds.
ULIMITS = ("--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024")
BUILD_TIMEOUT = 40 * 60  # a fresh machine: apt-get, mmdebstrap, pip, a loaded CPU
MiB = 1024 * 1024


def podman(
    *args: str, timeout: float = 300, check: bool = True
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [*PODMAN, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    if check and done.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} failed: {done.stderr.strip()}")
    return done


def build_image(tag: str, *options: str) -> subprocess.CompletedProcess[str]:
    """tests/support/build-image.sh TAG OPTIONS..., with this interpreter's pip."""
    return subprocess.run(
        ["bash", str(BUILD_SCRIPT), tag, *options],
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
        check=False,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "PYTHON": sys.executable},
    )


def remove_image(tag: str) -> None:
    podman("rmi", "--force", tag, check=False)


def new_tag(purpose: str) -> str:
    return f"localhost/tagpin-test-{purpose}:{uuid.uuid4().hex[:12]}"


def image_config(tag: str) -> dict[str, Any]:
    inspected = yaml.safe_load(podman("image", "inspect", tag).stdout)
    config: dict[str, Any] = inspected[0]["Config"]
    return config


def runtime_problems(tag: str) -> list[str]:
    """What in the image's configuration breaks the sidecar contract deploy/ relies on."""
    config = image_config(tag)
    problems = []
    if config.get("User") != "999:999":
        problems.append(f"runs as user {config.get('User') or 'root'!r}, not 999:999")
    if config.get("Entrypoint") != ["/var/run/argocd/argocd-cmp-server"]:
        problems.append(f"entrypoint {config.get('Entrypoint')!r} is not argocd-cmp-server")
    env = dict(entry.split("=", 1) for entry in config.get("Env") or [])
    if not env.get("PATH", "").startswith("/opt/tagpin/bin:"):
        problems.append("the venv's bin is not first on PATH")
    for name in ("HOME", "TAGPIN_CACHE_DIR", "XDG_CACHE_HOME"):
        if not env.get(name, "").startswith("/tmp"):
            problems.append(f"{name} is not under /tmp")
    if config.get("WorkingDir") != "/tmp":
        problems.append(f"working directory {config.get('WorkingDir')!r} is not /tmp")
    return problems


def _quantity_bytes(quantity: str) -> int:
    number, unit = re.fullmatch(r"(\d+)(Ki|Mi|Gi)?", quantity).groups()  # type: ignore[union-attr]
    return int(number) * {None: 1, "Ki": 1024, "Mi": MiB, "Gi": 1024 * MiB}[unit]


def deployed_sidecar() -> dict[str, Any]:
    """The tagpin container of deploy/tagpin/repo-server-sidecar.yaml."""
    patch = yaml.safe_load(SIDECAR_PATCH.read_text())
    containers = patch["spec"]["template"]["spec"]["containers"]
    (container,) = [c for c in containers if c["name"] == "tagpin"]
    return dict(container)


def deployed_limit_bytes() -> int:
    return _quantity_bytes(deployed_sidecar()["resources"]["limits"]["memory"])


def deployed_environment(namespace: str = "argocd") -> dict[str, str]:
    """The sidecar's env as kubelet sets it (the downward API's namespace resolved)."""
    env = {}
    for entry in deployed_sidecar().get("env", []):
        if "value" in entry:
            env[entry["name"]] = str(entry["value"])
        elif (
            entry.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.namespace"
        ):
            env[entry["name"]] = namespace
        else:
            raise AssertionError(f"cannot resolve {entry} for the test sidecar")
    return env


class Sidecar:
    """One running container of the image, started as the repo-server pod starts the tagpin
    sidecar (see the module docstring). `read_only=False` leaves the root filesystem writable
    so `written_outside_tmp` can show what the image would have written there."""

    def __init__(
        self,
        image: str,
        requests: Path,
        *,
        read_only: bool = True,
        memory: int | None = None,
        arch: str | None = None,
    ) -> None:
        self.image = image
        self.name = f"tagpin-test-{uuid.uuid4().hex[:12]}"
        self.requests = requests
        requests.mkdir(mode=0o755, parents=True, exist_ok=True)
        requests.chmod(0o755)  # UID 999 must enter it; pytest's directories are 0700
        security = deployed_sidecar()["securityContext"]
        limit = deployed_limit_bytes() if memory is None else memory
        run = [
            "run",
            "--detach",
            "--name",
            self.name,
            "--runtime",
            "runc",
            "--network",
            "none",
            "--user",
            f"{security['runAsUser']}:{security['runAsGroup']}",
            "--passwd=false",  # kubelet adds no /etc/passwd entry for the user either
            "--cap-drop",
            "ALL",
            "--security-opt",
            "no-new-privileges",
            "--memory",
            str(limit),
            "--tmpfs",
            "/tmp:rw,exec,nosuid,nodev,mode=1777",
            "--volume",
            f"{requests}:/tmp/_cmp_server:ro",
            *ULIMITS,
        ]
        if read_only and security["readOnlyRootFilesystem"]:
            run.append("--read-only")
        if arch is not None:
            run += ["--arch", arch]  # another architecture runs under qemu (binfmt_misc)
        for name, value in deployed_environment().items():
            run += ["--env", f"{name}={value}"]
        # argocd-cmp-server's place: a process that waits while commands are exec'd beside it.
        run += ["--entrypoint", "sleep", image, "infinity"]
        podman(*run)

    def exec(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str = "/tmp",
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[bytes]:
        command = [*PODMAN, "exec", "--workdir", cwd]
        for name, value in (env or {}).items():
            command.append(f"--env={name}={value}")
        return subprocess.run(
            [*command, self.name, *argv],
            capture_output=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )

    def read(self, path: str) -> bytes:
        done = self.exec(["cat", path])
        assert done.returncode == 0, done.stderr.decode()
        return done.stdout

    @property
    def runner(self) -> ContainerRunner:
        return ContainerRunner(PODMAN, self.name, self.requests)

    def cmp_server(self, *, timeout: float = 60) -> CmpServer:
        """The emulated cmp-server of this sidecar: the plugin.yaml the image carries, the
        container's environment (no extra sidecar variables), commands run inside it."""
        config = PluginConfig.from_mapping(yaml.safe_load(self.read(PLUGIN_YAML)))
        return CmpServer(config, {}, self.requests.parent, timeout=timeout, runner=self.runner)

    def written_outside_tmp(self) -> list[str]:
        """Paths the container changed in its root filesystem (mounts such as /tmp are not in
        it), as `podman diff` lists them."""
        return podman("diff", self.name).stdout.split()

    def remove(self) -> None:
        podman("rm", "--force", "--time", "0", self.name, check=False)


def venv_cmp_server(directory: Path) -> CmpServer:
    """The same cmp-server emulator with this checkout's venv rendering in-process: what the
    image's renders are compared with."""
    bin_dir = Path(sys.executable).parent
    workdir = directory / "venv-cmp-tmp"
    workdir.mkdir()
    env = {
        "PATH": f"{bin_dir}{os.pathsep}/usr/bin:/bin",
        "HOME": str(directory / "home"),
        "TAGPIN_CACHE_DIR": str(directory / "venv-cache"),
        "TAGPIN_APP_LOOKUP": "off",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    return CmpServer.from_plugin_yaml(REPO / "plugin.yaml", sidecar_env=env, workdir=workdir)


# --------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="session")
def tagpin_image() -> Iterator[str]:
    """The image built from this checkout, once per session, removed afterwards."""
    tag = new_tag("image")
    built = build_image(tag)
    if built.returncode != 0:
        pytest.fail(f"the image did not build:\n{built.stderr[-6000:]}", pytrace=False)
    yield tag
    remove_image(tag)


@pytest.fixture(scope="session")
def image_sidecar(tagpin_image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sidecar]:
    """One sidecar for the session, as a pod runs it for its whole life; its render server and
    caches carry over from test to test as they do between renders in a pod."""
    sidecar = Sidecar(tagpin_image, tmp_path_factory.mktemp("sidecar") / "_cmp_server")
    yield sidecar
    sidecar.remove()


@pytest.fixture
def fresh_sidecar(tagpin_image: str, tmp_path: Path) -> Iterator[Sidecar]:
    """A sidecar that has rendered nothing yet (no render server, empty caches)."""
    sidecar = Sidecar(tagpin_image, tmp_path / "sidecar" / "_cmp_server")
    yield sidecar
    sidecar.remove()
