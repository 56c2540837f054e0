"""deploy/branch-deploy: the RBAC for people and CI running `tagpin branch`, checked against
Kubernetes' schemas and against the requests `tagpin branch` really makes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.fake_kube import FakeKube
from tests.support.kustomize import K8S_VERSIONS, kustomize_build, schema_problems
from tests.support.moto_ecr import ACCOUNT, REGION

REPO = Path(__file__).resolve().parents[2]
WEB = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/shop/web"
PREFIX = "argocd-image-updater.argoproj.io/"


@pytest.fixture(scope="module")
def built() -> list[dict[str, Any]]:
    return kustomize_build(REPO / "deploy" / "branch-deploy")


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_the_rbac_is_valid_kubernetes(built: list[dict[str, Any]], version: str) -> None:
    assert schema_problems(built, version) == []


def test_the_role_is_bound_in_argo_cd_s_namespace_only(built: list[dict[str, Any]]) -> None:
    kinds = {(o["kind"], o["metadata"]["name"]) for o in built}
    assert kinds == {
        ("ClusterRole", "tagpin-branch-deployer"),
        ("RoleBinding", "tagpin-branch-deployer"),
    }
    binding = next(o for o in built if o["kind"] == "RoleBinding")
    assert binding["metadata"]["namespace"] == "argocd"
    assert binding["roleRef"]["name"] == "tagpin-branch-deployer"


def test_the_sidecar_install_does_not_include_it() -> None:
    names = {o["metadata"]["name"] for o in kustomize_build(REPO / "deploy")}
    assert "tagpin-branch-deployer" not in names


VERBS = {("GET", True): "get", ("GET", False): "list", ("PATCH", True): "patch"}


def test_the_role_grants_exactly_what_tagpin_branch_asks(
    built: list[dict[str, Any]], tmp_path: Path, fake_kube: FakeKube, kubeconfig: Path, moto_ecr
) -> None:
    moto_ecr.push("shop/web", "pr-42-1-a")
    fake_kube.add("argocd", "web", {f"{PREFIX}image-list": f"web={WEB}"})
    env = dict(os.environ, KUBECONFIG=str(kubeconfig), TAGPIN_CACHE_DIR=str(tmp_path / "c"))
    tagpin = str(Path(sys.executable).with_name("tagpin"))
    for args in (
        ["set", "web", "--allow-tags", "^pr-42-"],
        ["status"],
        ["status", "web"],
        ["clear", "web"],
    ):
        done = subprocess.run(
            [tagpin, "branch", *args, "-n", "argocd"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
    # Cleared although the restored rule (semver, no constraint) selects none of the pr- tags.
    assert "nothing deploys: Application argocd/web: no tag of" in done.stdout
    asked = {VERBS[(r.method, r.path.split("?")[0].endswith("/web"))] for r in fake_kube.requests}
    (role,) = [o for o in built if o["kind"] == "ClusterRole"]
    assert role["rules"] == [
        {"apiGroups": ["argoproj.io"], "resources": ["applications"], "verbs": sorted(asked)}
    ]
