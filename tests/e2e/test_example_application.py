"""deploy/examples/application.yaml renders what its comment says: its source and plugin block
(name, parameters) go through the cmp-server emulator onto examples/web, and each values layer
shows in the output exactly once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.e2e.test_contract import REPO, REVISION, server, user_repo  # noqa: F401
from tests.support.cmpserver import AppSpec, CmpServer

APPLICATION = REPO / "deploy" / "examples" / "application.yaml"
LOCK = yaml.safe_load((REPO / "examples" / "web" / "tagpin.lock").read_text())


def from_application(application: dict[str, Any]) -> AppSpec:
    source = application["spec"]["source"]
    return AppSpec(
        name=application["metadata"]["name"],
        source_path=source["path"],
        repo_url=source["repoURL"],
        target_revision=source["targetRevision"],
        destination_namespace=application["spec"]["destination"]["namespace"],
        revision=REVISION,
        plugin=source["plugin"],
    )


def test_the_example_application_renders_what_it_says(server: CmpServer, user_repo: Path) -> None:  # noqa: F811
    application = yaml.safe_load(APPLICATION.read_text())
    # The emulated sidecar has no AWS access: candidates and digests come from the lock.
    server.sidecar_env["TAGPIN_LOCK"] = "strict"
    result = server.generate(user_repo, from_application(application))
    assert result.ok, (result.error, result.stderr)
    assert "warning" not in result.stderr
    deployment = next(o for o in result.objects if o["kind"] == "Deployment")
    assert deployment["spec"]["replicas"] == 3  # the values parameter
    (web,) = deployment["spec"]["template"]["spec"]["containers"]
    assert web["resources"]["requests"] == {"cpu": "500m", "memory": "512Mi"}  # values-prod
    labels = deployment["metadata"]["labels"]
    assert labels["app.kubernetes.io/part-of"] == "shop"  # values-common.yaml
    locked = {i["image"]: i["digest"] for i in LOCK["images"]}
    tag = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/shop/web:v1.4.2"
    assert web["image"] == f"{tag}@{locked[tag]}"  # values.yaml's tag, pinned by the lock


def test_a_values_file_layered_twice_is_a_warning(server: CmpServer, user_repo: Path) -> None:  # noqa: F811
    application = yaml.safe_load(APPLICATION.read_text())
    plugin = application["spec"]["source"]["plugin"]
    for parameter in plugin["parameters"]:
        if parameter["name"] == "values-files":
            parameter["array"] = ["values.yaml", *parameter["array"]]  # the old example's mistake
    server.sidecar_env["TAGPIN_LOCK"] = "strict"
    result = server.generate(user_repo, from_application(application))
    assert result.ok, result.error
    assert "warning: values file apps/web/values.yaml is layered 2 times" in result.stderr
