"""deploy/'s patches against every Argo CD version the docs claim (SUPPORTED_ARGO_CD): the
oldest's repo-server objects (a verbatim copy in tests/data/argo-cd/) get the same component
and overlay settings as deploy/kustomization.yaml, and every deploy test that checks the built
objects runs on that build too. The newest is deploy/base-upstream/ itself
(tests/e2e/test_deploy.py).
"""

from __future__ import annotations

import inspect
import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e import test_deploy
from tests.support.kustomize import kustomize_build

REPO = Path(__file__).resolve().parents[2]
OLDEST = "v3.0.0"
NEWEST = "v3.5.1"
SUPPORTED_ARGO_CD = f"{OLDEST} to {NEWEST}"  # as README.md and docs/install.md say
OLDEST_COPY = REPO / "tests" / "data" / "argo-cd" / f"argocd-repo-server-{OLDEST}.yaml"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """deploy/kustomization.yaml with the oldest version's objects in place of base-upstream/."""
    root = tmp_path_factory.mktemp("argo-cd-oldest")
    shutil.copy(OLDEST_COPY, root / "argocd-repo-server.yaml")
    overlay = yaml.safe_load((test_deploy.DEPLOY / "kustomization.yaml").read_text())
    assert overlay["resources"][0] == "base-upstream"
    deploy = os.path.relpath(test_deploy.DEPLOY, root)  # kustomize refuses absolute roots
    overlay["resources"] = ["argocd-repo-server.yaml"] + [
        f"{deploy}/{r}" for r in overlay["resources"][1:]
    ]
    overlay["components"] = [f"{deploy}/{c}" for c in overlay.get("components", [])]
    (root / "kustomization.yaml").write_text(yaml.safe_dump(overlay))
    return kustomize_build(root)


# Every deploy test that checks the built objects, run again on the oldest version's build
# (with the other fixtures they use; `built` is this module's).
for _name, _value in vars(test_deploy).copy().items():
    if _name.startswith("test_"):
        if "built" in inspect.signature(_value).parameters:
            globals()[_name] = _value
    elif not _name.startswith("_") and _name not in globals():
        globals()[_name] = _value


def test_the_copies_are_the_versions_they_claim() -> None:
    oldest = OLDEST_COPY.read_text()
    newest = (test_deploy.DEPLOY / "base-upstream" / "argocd-repo-server.yaml").read_text()
    assert f"image: quay.io/argoproj/argocd:{OLDEST}\n" in oldest
    assert f"image: quay.io/argoproj/argocd:{NEWEST}\n" in newest
    assert (
        f"argo-cd/{NEWEST}/manifests/install.yaml"
        in (test_deploy.DEPLOY / "remote" / "kustomization.yaml").read_text()
    )


def test_the_docs_state_the_one_tested_range() -> None:
    claims = {
        "README.md": (REPO / "README.md").read_text(),
        "docs/install.md": (REPO / "docs" / "install.md").read_text(),
    }
    for name, text in claims.items():
        assert f"Argo CD {SUPPORTED_ARGO_CD}" in text, name
        # No other range or minimum anywhere (e.g. a stale "2.8+" or "v3.x").
        assert not re.search(r"Argo CD v?\d+\.\d+\+|Argo CD v?\d\.x\b", text), name
