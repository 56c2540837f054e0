"""Nothing deploys but what git says (#23 items 1, 2, 3, 18, 19), end to end: `tagpin render`,
`tagpin lock`, `tagpin pin` and the sidecar (the cmp-server emulator, in-process and through a
render server's worker), against moto's ECR. A refusal exits non-zero with nothing on stdout
(Argo CD reads empty output as "no resources"); an image left unpinned is named on stderr."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from cmp.errors import ExitStatus
from tests.support.apptree import build_tree
from tests.support.cli import tagpin
from tests.support.cmpserver import AppSpec, CmpServer, GenerateResult
from tests.support.moto_ecr import ACCOUNT, REGION

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
HOST = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"
WEB = f"{HOST}/shop/web"

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - {name: web, image: "IMAGE"}
      - {name: proxy, image: "nginx:1.27"}
"""


def repo_with(root: Path, files: dict[str, str]) -> Path:
    build_tree(root, {f"apps/web/{name}": text for name, text in files.items()})
    (root / ".git").mkdir(exist_ok=True)
    return root


def template_app(values: str, config: str = "{}\n") -> dict[str, str]:
    image = "{{ values.image.repository }}:{{ values.image.tag }}"
    return {
        "tagpin.yaml": config,
        "values.yaml": f"image:\n  repository: {WEB}\n{values}",
        "templates/web.yaml.j2": DEPLOYMENT.replace("IMAGE", image),
    }


@pytest.fixture
def env(tmp_path: Path, moto_ecr) -> dict[str, str]:
    return {
        **os.environ,
        "TAGPIN_CACHE_DIR": str(tmp_path / "cache"),
        "TAGPIN_APP_LOOKUP": "off",
    }


@pytest.fixture
def tags(moto_ecr) -> dict[str, str]:
    """Both tags exist: the wrong one would pin without any error."""
    return {tag: moto_ecr.push("shop/web", tag) for tag in ("1.1", "1.10")}


def render(root: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return tagpin("render", str(root / "apps/web"), "--app-name", "web", *args, env=env)


@pytest.fixture(params=["in-process", "served"])
def sidecar(
    request: pytest.FixtureRequest, tmp_path: Path, env: dict[str, str]
) -> Iterator[CmpServer]:
    """The sidecar through Argo CD's plugin mechanics, rendering in-process or in a render
    server's forked worker: one code path, the same answers."""
    workdir = tmp_path / "cmp-tmp"
    workdir.mkdir()
    sidecar_env = {
        **{k: v for k, v in env.items() if k.startswith(("AWS_", "TAGPIN_"))},
        "PATH": f"{BIN}{os.pathsep}/usr/bin:/bin",
        "HOME": str(tmp_path / "home"),
    }
    server = CmpServer.from_plugin_yaml(
        REPO / "plugin.yaml", sidecar_env=sidecar_env, workdir=workdir, timeout=60
    )
    if request.param == "in-process":
        yield server
        return
    from tests.e2e.test_render_server import Server, wait_for

    directory = Path(tempfile.mkdtemp(prefix="tp-", dir="/tmp"))  # socket paths must be short
    render_server = Server(directory / "render.sock", directory / "server.log")
    server.sidecar_env.update(
        TAGPIN_RENDER_SERVER="on", TAGPIN_RENDER_SERVER_SOCKET=str(render_server.socket)
    )
    yield server
    # The worker did render (its line is written once the server has reaped it).
    wait_for(render_server.worker_lines, "the render server's worker line")
    render_server.stop()
    shutil.rmtree(directory, ignore_errors=True)


def generate(server: CmpServer, root: Path) -> GenerateResult:
    return server.generate(root, AppSpec(name="web", source_path="apps/web"), exclude=[".git"])


# --- item 1: a YAML number in an image -------------------------------------------------------

FLOAT_REFUSAL = (
    "apps/web/values.yaml:3: tag: 1.10 is read by YAML as the number 1.1, so Deployment/web in "
    "apps/web/templates/web.yaml.j2:1 at spec.template.spec.containers[0].image would deploy "
    f'"{WEB}:1.1", not "{WEB}:1.10"; write tag: \'1.10\' (quoted, it stays text)'
)


def test_render_and_lock_refuse_a_tag_yaml_reads_as_a_number(
    tmp_path: Path, env: dict[str, str], tags: dict[str, str]
) -> None:
    root = repo_with(tmp_path / "repo", template_app("  tag: 1.10\n"))
    done = render(root, env)
    assert (done.returncode, done.stdout) == (ExitStatus.CONFIG, "")
    assert FLOAT_REFUSAL in done.stderr
    locked = tagpin("lock", str(root / "apps/web"), "--app-name", "web", env=env)
    assert locked.returncode == ExitStatus.CONFIG and FLOAT_REFUSAL in locked.stderr
    assert not (root / "apps/web/tagpin.lock").exists()

    (root / "apps/web/values.yaml").write_text(f"image:\n  repository: {WEB}\n  tag: '1.10'\n")
    quoted = render(root, env)
    assert quoted.returncode == 0, quoted.stderr
    assert f"image: {WEB}:1.10@{tags['1.10']}\n" in quoted.stdout


def test_the_sidecar_refuses_a_tag_yaml_reads_as_a_number(
    sidecar: CmpServer, tmp_path: Path, tags: dict[str, str]
) -> None:
    root = repo_with(tmp_path / "repo", template_app("  tag: 1.10\n"))
    result = generate(sidecar, root)
    assert (result.exit_code, result.stdout) == (ExitStatus.CONFIG, "")
    assert FLOAT_REFUSAL in result.stderr


def test_a_kustomization_s_numeric_new_tag_is_refused_at_its_line(
    tmp_path: Path, env: dict[str, str], tags: dict[str, str]
) -> None:
    root = repo_with(
        tmp_path / "repo",
        {
            "tagpin.yaml": "kustomize: {}\n",
            "kustomization.yaml": (
                f"resources: [web.yaml]\nimages:\n- name: {WEB}\n  newTag: 1.10\n"
            ),
            "web.yaml": DEPLOYMENT.replace("IMAGE", f"{WEB}:v1"),
        },
    )
    done = render(root, {**env, "PATH": f"{BIN}{os.pathsep}/usr/bin:/bin"})
    assert (done.returncode, done.stdout) == (ExitStatus.CONFIG, "")
    assert (
        "apps/web/kustomization.yaml:4: newTag: 1.10 is read by YAML as the number 1.1, not "
        "text, which kustomize refuses; write newTag: '1.10'"
    ) in done.stderr


# --- item 2: look-alike hosts, and what is left unpinned -------------------------------------

LOOKALIKE = f"{HOST[:-1]}/shop/web:v1"  # …amazonaws.co


def test_a_host_almost_like_ecr_is_refused_by_render_and_pin(
    tmp_path: Path, env: dict[str, str]
) -> None:
    files = template_app("  tag: v1\n")
    files["values.yaml"] = f"image:\n  repository: {HOST[:-1]}/shop/web\n  tag: v1\n"
    root = repo_with(tmp_path / "repo", files)
    nearest = f"(amazonaws.co is not an ECR domain): {HOST}"
    done = render(root, env)
    assert (done.returncode, done.stdout) == (ExitStatus.IMAGE, "")
    assert nearest in done.stderr
    piped = tagpin("pin", "-", env=env, stdin=DEPLOYMENT.replace("IMAGE", LOOKALIKE))
    assert (piped.returncode, piped.stdout) == (ExitStatus.IMAGE, "")
    assert nearest in piped.stderr


NOTICE = (
    'tagpin: warning: not pinned: "nginx:1.27" is not in ECR (in '
    "Deployment/web in {file}:1 at spec.template.spec.containers[1].image); list it in "
    "images.allowUnpinned in tagpin.yaml to say that is meant\n"
)


def test_render_and_pin_name_each_image_left_unpinned_unless_declared(
    tmp_path: Path, env: dict[str, str], tags: dict[str, str]
) -> None:
    root = repo_with(tmp_path / "repo", template_app("  tag: '1.10'\n"))
    done = render(root, env)
    assert done.returncode == 0 and "image: nginx:1.27\n" in done.stdout
    assert NOTICE.format(file="apps/web/templates/web.yaml.j2") in done.stderr
    piped = tagpin("pin", "-", env=env, stdin=DEPLOYMENT.replace("IMAGE", f"{WEB}:1.10"))
    assert piped.returncode == 0 and f"{WEB}:1.10@{tags['1.10']}" in piped.stdout
    assert piped.stderr == NOTICE.format(file="<stdin>")

    config = "images:\n  allowUnpinned: [nginx]\n"
    (root / "apps/web/tagpin.yaml").write_text(config)
    declared = render(root, env)
    assert declared.returncode == 0 and declared.stdout == done.stdout
    assert "not pinned" not in declared.stderr
    (tmp_path / "tagpin.yaml").write_text(config)
    piped = tagpin(
        "pin",
        "--config",
        str(tmp_path / "tagpin.yaml"),
        "-",
        env=env,
        stdin=DEPLOYMENT.replace("IMAGE", f"{WEB}:1.10"),
    )
    assert piped.returncode == 0 and piped.stderr == ""


def test_the_sidecar_names_unpinned_images_and_refuses_lookalikes(
    sidecar: CmpServer, tmp_path: Path, tags: dict[str, str]
) -> None:
    root = repo_with(tmp_path / "repo", template_app("  tag: '1.10'\n"))
    result = generate(sidecar, root)
    assert result.ok and len(result.objects) == 1
    assert NOTICE.format(file="apps/web/templates/web.yaml.j2") in result.stderr
    (root / "apps/web/templates/web.yaml.j2").write_text(DEPLOYMENT.replace("IMAGE", LOOKALIKE))
    result = generate(sidecar, root)
    assert (result.exit_code, result.stdout) == (ExitStatus.IMAGE, "")
    assert f"(amazonaws.co is not an ECR domain): {HOST}" in result.stderr


# --- item 3: Jinja2 in a plain file ----------------------------------------------------------


@pytest.mark.parametrize("value", ['"{{ app.name }}"', "{{ app.name }}"])
def test_render_refuses_jinja_in_a_plain_file(
    tmp_path: Path, env: dict[str, str], value: str
) -> None:
    root = repo_with(
        tmp_path / "repo",
        {
            "tagpin.yaml": "{}\n",
            "templates/cm.yaml": f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {value}\n",
        },
    )
    done = render(root, env)
    assert (done.returncode, done.stdout) == (ExitStatus.SOURCE, "")
    assert (
        "apps/web/templates/cm.yaml:4: {{ app.name }} is Jinja2 for tagpin, but "
        "apps/web/templates/cm.yaml is a plain file, copied as written: rename it to cm.yaml.j2"
    ) in done.stderr


def test_the_sidecar_refuses_jinja_in_a_plain_file(sidecar: CmpServer, tmp_path: Path) -> None:
    root = repo_with(
        tmp_path / "repo",
        {
            "tagpin.yaml": "{}\n",
            "templates/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n"
            '  name: "{{ app.name }}"\n',
        },
    )
    result = generate(sidecar, root)
    assert (result.exit_code, result.stdout) == (ExitStatus.SOURCE, "")
    assert "rename it to cm.yaml.j2 to render it with Jinja2" in result.stderr


# --- items 18 and 19: real manifests Argo CD applies -----------------------------------------

KNATIVE_AND_TEKTON = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: activator, namespace: knative-serving}
spec:
  template:
    spec:
      containers:
      - name: activator
        image: ko://knative.dev/serving/cmd/activator
---
apiVersion: v1
kind: Pod
metadata: {name: build}
spec:
  containers:
  - {name: build, image: $(params.BUILDER_IMAGE)}
  - {name: sample, image: <YOUR-CONTAINER>}
"""


def test_pin_leaves_references_it_would_not_pin_as_written_and_names_them(
    env: dict[str, str],
) -> None:
    done = tagpin("pin", "-", env=env, stdin=KNATIVE_AND_TEKTON)
    assert done.returncode == 0, done.stderr
    for image in ("ko://knative.dev/serving/cmd/activator", "$(params.BUILDER_IMAGE)"):
        assert f"image: {image}\n" in done.stdout
    assert "image: <YOUR-CONTAINER>\n" in done.stdout
    assert done.stderr.count("is not a valid image reference (in") == 3


SELECTOR_TWICE = (
    DEPLOYMENT.replace("IMAGE", "nginx:1.27") + "  selector: {matchLabels: {app: SEL}}\n"
)


def test_pin_warns_about_a_key_given_twice_alike_and_refuses_it_when_the_values_differ(
    env: dict[str, str],
) -> None:
    same = tagpin("pin", "-", env=env, stdin=SELECTOR_TWICE.replace("SEL", "web"))
    assert same.returncode == 0 and "matchLabels:\n      app: web\n" in same.stdout
    assert (
        "tagpin: warning: <stdin>:12:3: key 'selector' is given twice in one mapping (the first "
        "one 7 lines above) with the same value"
    ) in same.stderr
    different = tagpin("pin", "-", env=env, stdin=SELECTOR_TWICE.replace("SEL", "api"))
    assert (different.returncode, different.stdout) == (ExitStatus.MANIFEST, "")
    assert (
        "duplicate key 'selector' in a mapping (the first one 7 lines above) with a different"
        in (different.stderr)
    )
