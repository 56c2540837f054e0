"""The Helm post-renderer: Helm 3 runs integrations/helm-postrender/tagpin-post-render as
`--post-renderer PATH`; Helm 4 runs it through the postrenderer/v1 plugin beside it. The
contract (helm/helm pkg/postrenderer, internal/plugin/runtime_subprocess.go): manifests on
stdin, manifests on stdout, a non-zero exit on failure, which must leave stdout empty."""

from __future__ import annotations

import os
import re
import string
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.support.moto_ecr import ACCOUNT, REGION

REPO = Path(__file__).resolve().parents[2]
PLUGIN_DIR = REPO / "integrations" / "helm-postrender"
SCRIPT = PLUGIN_DIR / "tagpin-post-render"
BIN = Path(sys.executable).parent
WEB = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/shop/web"
DIGEST = "sha256:" + "4" * 64

# What `helm template` prints: `# Source:` comments between `---` separators.
HELM_OUTPUT = f"""\
---
# Source: web/templates/service.yaml
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  ports:
    - port: 80
---
# Source: web/templates/deployment.yaml
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  template:
    spec:
      containers:
        - name: web
          image: "{WEB}:1.4.0"
"""

# helm/helm internal/plugin/metadata_v1.go (decoded with KnownFields: other keys are errors),
# runtime_subprocess.go (RuntimeConfigSubprocess, PlatformCommand) and plugin.go.
V1_FIELDS = {
    "apiVersion",
    "name",
    "type",
    "runtime",
    "version",
    "sourceURL",
    "config",
    "runtimeConfig",
}
SUBPROCESS_FIELDS = {"platformCommand", "platformHooks", "protocolCommands"}
PLATFORM_COMMAND_FIELDS = {"os", "arch", "command", "args"}
VALID_NAME = re.compile(r"^[A-Za-z0-9_-]+$")  # validPluginName
SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$"
)


def lock(tmp_path: Path, tag: str = "1.4.0") -> Path:
    path = tmp_path / "tagpin.lock"
    path.write_text(
        "apiVersion: tagpin.dev/v1\nkind: ImageLock\nimages:\n"
        f"- image: {WEB}:{tag}\n  digest: {DIGEST}\n"
    )
    return path


def helm_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """What Helm hands its post-renderer: its own environment (no AWS here: offline)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "TAGPIN_"))}
    env.update(
        PATH=f"{BIN}{os.pathsep}/usr/bin:/bin",
        TAGPIN_APP_LOOKUP="off",
        TAGPIN_CACHE_DIR=str(tmp_path / "cache"),
        AWS_CONFIG_FILE=str(tmp_path / "no"),
        **extra,
    )
    return env


def post_render(
    argv: list[str], stdin: str, env: dict[str, str]
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        argv, input=stdin.encode(), env=env, capture_output=True, timeout=120, check=False
    )


def test_helm3_post_renderer_pins_stdin_onto_stdout(tmp_path: Path) -> None:
    assert os.access(SCRIPT, os.X_OK)  # Helm 3 execs the path itself
    done = post_render(
        [str(SCRIPT), "--digests", str(lock(tmp_path))], HELM_OUTPUT, helm_env(tmp_path)
    )
    assert done.returncode == 0, done.stderr.decode()
    objects = list(yaml.safe_load_all(done.stdout))
    assert [o["kind"] for o in objects] == ["Service", "Deployment"]
    container = objects[1]["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == f"{WEB}:1.4.0@{DIGEST}"
    piped = post_render(
        [str(BIN / "tagpin"), "pin", "-", "--digests", str(lock(tmp_path))],
        HELM_OUTPUT,
        helm_env(tmp_path),
    )
    assert done.stdout == piped.stdout  # the recipe `helm template | tagpin pin -` agrees


@pytest.mark.parametrize(
    "stdin",
    [
        HELM_OUTPUT.replace(":1.4.0", ":1.5.0"),  # a tag the lock lacks
        HELM_OUTPUT + "  broken: [\n",  # malformed YAML
        '{"kind": "ConfigMap", "data": {"x": NaN}}',  # JSON Argo CD cannot apply
    ],
)
def test_a_failing_post_render_exits_non_zero_with_nothing_on_stdout(
    tmp_path: Path, stdin: str
) -> None:
    done = post_render([str(SCRIPT), "--digests", str(lock(tmp_path))], stdin, helm_env(tmp_path))
    assert done.returncode != 0
    assert done.stdout == b""
    assert done.stderr.startswith(b"tagpin: ")


@pytest.mark.parametrize("stdin", ["", "---\n# Source: web/templates/nothing.yaml\n---\n"])
def test_a_chart_that_renders_nothing_post_renders_to_nothing(tmp_path: Path, stdin: str) -> None:
    """Issue 23, item 20: a filter given no objects prints none and succeeds (a chart with every
    part disabled); it was refused as an empty render."""
    done = post_render([str(SCRIPT), "--digests", str(lock(tmp_path))], stdin, helm_env(tmp_path))
    assert (done.returncode, done.stdout) == (0, b""), done.stderr.decode()
    assert done.stderr == b"tagpin: the input holds no Kubernetes objects; printed none\n"


def test_the_helm4_plugin_yaml_has_only_documented_fields() -> None:
    plugin = yaml.safe_load((PLUGIN_DIR / "plugin.yaml").read_text())
    assert set(plugin) <= V1_FIELDS
    assert plugin["apiVersion"] == "v1"
    assert plugin["type"] == "postrenderer/v1"
    assert plugin["runtime"] == "subprocess"
    assert VALID_NAME.match(plugin["name"])
    assert SEMVER.match(str(plugin["version"]))
    assert set(plugin.get("config") or {}) == set()  # ConfigPostrenderer has no fields
    runtime = plugin["runtimeConfig"]
    assert set(runtime) <= SUBPROCESS_FIELDS
    commands = runtime["platformCommand"]
    assert commands and all(set(c) <= PLATFORM_COMMAND_FIELDS for c in commands)
    assert all(isinstance(c["command"], str) for c in commands)


def test_helm4_runs_the_plugins_command_as_a_post_renderer(tmp_path: Path) -> None:
    plugin = yaml.safe_load((PLUGIN_DIR / "plugin.yaml").read_text())
    command = plugin["runtimeConfig"]["platformCommand"][0]
    # runPostrenderer: os.ExpandEnv over the command with HELM_PLUGIN_DIR/NAME set, then the
    # command's args followed by --post-renderer-args, manifests on stdin.
    env = helm_env(tmp_path, HELM_PLUGIN_DIR=str(PLUGIN_DIR), HELM_PLUGIN_NAME=plugin["name"])
    main = string.Template(command["command"]).substitute(env)
    argv = [main, *command.get("args", []), "--digests", str(lock(tmp_path))]
    done = post_render(argv, HELM_OUTPUT, env)
    assert done.returncode == 0, done.stderr.decode()
    assert f"image: {WEB}:1.4.0@{DIGEST}".encode() in done.stdout
