"""The command line as Argo CD and people use it: same bytes from generate and render, exit
codes per cause, nothing on stdout on failure, plugin.yaml in sync with the parameter table."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from cmp.commands.plugin_yaml import plugin_yaml
from cmp.errors import ExitStatus
from cmp.settings import PARAMETERS
from tests.support.cli import tagpin

REPO = Path(__file__).resolve().parents[3]
REVISION = "4f2a9c1e0b7d3a5f6e8c9b0a1d2e3f4a5b6c7d8e"


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAGPIN_CACHE_DIR", str(tmp_path / "cache"))


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ARGOCD_", "TAGPIN_"))}
    env.update(
        AWS_EC2_METADATA_DISABLED="true", TAGPIN_CACHE_DIR=os.environ["TAGPIN_CACHE_DIR"], **extra
    )
    return env


def run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    return tagpin(*args, cwd=cwd, env=env, binary=True)


@pytest.fixture
def repo_copy(tmp_path: Path) -> Path:
    """A repository like a user's: the example app under apps/web, shared macros elsewhere."""
    shutil.copytree(REPO / "examples" / "web", tmp_path / "examples" / "web")
    shutil.copytree(REPO / "examples" / "lib", tmp_path / "examples" / "lib")
    (tmp_path / ".git").mkdir()
    return tmp_path


def test_generate_and_render_print_the_same_bytes(repo_copy: Path) -> None:
    parameters = [
        {"name": "values-files", "array": ["values-prod.yaml"]},
        {"name": "values", "map": {"replicas": "9", "image.tag": "v1.4.2"}},
    ]
    argocd = clean_env(
        ARGOCD_APP_NAME="team-a_web",
        ARGOCD_APP_NAMESPACE="shop",
        ARGOCD_APP_PROJECT_NAME="shop",
        ARGOCD_APP_REVISION=REVISION,
        ARGOCD_APP_REVISION_SHORT=REVISION[:7],
        ARGOCD_APP_SOURCE_REPO_URL="https://git.example.com/shop/deploy.git",
        ARGOCD_APP_SOURCE_PATH="examples/web",
        ARGOCD_APP_SOURCE_TARGET_REVISION="main",
        ARGOCD_ENV_LOG_LEVEL="info",
        ARGOCD_APP_PARAMETERS=json.dumps(parameters, sort_keys=True, separators=(",", ":")),
        KUBE_VERSION="1.31.2",
        KUBE_API_VERSIONS="v1,v1/ConfigMap,batch/v1,batch/v1/CronJob",
    )
    generated = run(["generate"], repo_copy / "examples" / "web", argocd)
    assert generated.returncode == 0, generated.stderr.decode()

    rendered = run(
        [
            "render",
            "examples/web",
            "--app-name",
            "team-a_web",
            "-n",
            "shop",
            "--project",
            "shop",
            "--revision",
            REVISION,
            "--repo-url",
            "https://git.example.com/shop/deploy.git",
            "--target-revision",
            "main",
            "--env",
            "LOG_LEVEL=info",
            "-f",
            "values-prod.yaml",
            "--set",
            "replicas=9",
            "--set",
            "image.tag=v1.4.2",
            "--kube-version",
            "1.31.2",
            "--api-versions",
            "v1,v1/ConfigMap,batch/v1,batch/v1/CronJob",
        ],
        repo_copy,
        clean_env(),
    )
    assert rendered.returncode == 0, rendered.stderr.decode()
    assert rendered.stdout == generated.stdout
    assert b"replicas: 9" in generated.stdout and b"value: info" in generated.stdout


@pytest.mark.parametrize("parameters", [None, "null", "[]"])
def test_generate_accepts_every_form_of_no_parameters(
    repo_copy: Path, parameters: str | None
) -> None:
    env = clean_env(ARGOCD_APP_NAME="web", ARGOCD_APP_SOURCE_PATH="examples/web")
    if parameters is not None:
        env["ARGOCD_APP_PARAMETERS"] = parameters
    done = run(["generate"], repo_copy / "examples" / "web", env)
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.startswith(b"---\napiVersion: v1\nkind: ConfigMap\n")


@pytest.mark.parametrize(
    "change, status, message",
    [
        (
            {"templates/deployment.yaml.j2": "{% if %}"},
            ExitStatus.TEMPLATE,
            "examples/web/templates/deployment.yaml.j2:1: template syntax error",
        ),
        (
            {"templates/service.yaml": "kind: [unclosed\n"},
            ExitStatus.MANIFEST,
            "examples/web/templates/service.yaml:2:1: invalid YAML",
        ),
        ({"tagpin.yaml": "valueFiles: []\n"}, ExitStatus.CONFIG, "unknown key 'valueFiles'"),
        ({"values-common.yaml": "- a list\n"}, ExitStatus.CONFIG, "must hold a mapping"),
    ],
)
def test_failures_exit_with_their_code_and_print_nothing(
    repo_copy: Path, change: dict[str, str], status: ExitStatus, message: str
) -> None:
    for name, text in change.items():
        (repo_copy / "examples" / "web" / name).write_text(text)
    env = clean_env(ARGOCD_APP_NAME="web", ARGOCD_APP_SOURCE_PATH="examples/web")
    done = run(["generate"], repo_copy / "examples" / "web", env)
    assert done.returncode == status
    assert done.stdout == b""
    assert message in done.stderr.decode()


def test_unknown_parameter_is_a_config_error(repo_copy: Path) -> None:
    env = clean_env(
        ARGOCD_APP_NAME="web",
        ARGOCD_APP_SOURCE_PATH="examples/web",
        ARGOCD_APP_PARAMETERS='[{"name":"valuesFiles","array":["x.yaml"]}]',
    )
    done = run(["generate"], repo_copy / "examples" / "web", env)
    assert done.returncode == ExitStatus.CONFIG
    assert done.stdout == b""
    assert "unknown plugin parameter 'valuesFiles'" in done.stderr.decode()


def test_missing_tag_in_lock_without_ecr_is_a_clear_error(repo_copy: Path) -> None:
    done = run(
        [
            "render",
            "examples/web",
            "--set",
            "image.tag=v9.9.9",
            "--digests",
            "examples/web/tagpin.lock",
        ],
        repo_copy,
        clean_env(),
    )
    assert done.returncode == ExitStatus.LOCK
    assert done.stdout == b""
    assert "shop/web:v9.9.9: not in" in done.stderr.decode()
    assert "--digests never asks ECR" in done.stderr.decode()


def test_plugin_yaml_is_generated_from_the_parameter_table() -> None:
    committed = (REPO / "plugin.yaml").read_text(encoding="utf-8")
    assert committed == plugin_yaml(), "run `tagpin plugin-yaml > plugin.yaml`"
    announced = [
        p["name"]
        for p in __import__("yaml").safe_load(committed.split("---", 1)[1])["spec"]["parameters"][
            "static"
        ]
    ]
    assert announced == [p.name for p in PARAMETERS]


def test_plugin_yaml_check_flag_detects_drift(tmp_path: Path) -> None:
    stale = tmp_path / "plugin.yaml"
    stale.write_text("kind: ConfigManagementPlugin\n")
    done = run(["plugin-yaml", "--check", str(stale)], tmp_path, clean_env())
    assert done.returncode == 1
    assert (
        run(["plugin-yaml", "--check", str(REPO / "plugin.yaml")], tmp_path, clean_env()).returncode
        == 0
    )


def test_ci_runs_the_readme_test_command() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    command = ci.strip().splitlines()[-1]
    assert command in readme
