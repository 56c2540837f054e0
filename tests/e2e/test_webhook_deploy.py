"""deploy/webhook builds offline into valid, least-privilege Kubernetes objects that run the
`tagpin webhook` command this checkout actually has, with the options it actually takes."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from cmp.argocd.kube import HTTP_TIMEOUT_SECONDS
from cmp.commands.webhook import SECRET_ENV, parse_listen, webhook_command
from cmp.settings import Settings, unknown_settings
from tests.support.kustomize import K8S_VERSIONS, kustomize_build, schema_problems

REPO = Path(__file__).resolve().parents[2]
WEBHOOK = REPO / "deploy" / "webhook"
NAME = "tagpin-webhook"


@pytest.fixture(scope="module")
def built() -> list[dict[str, Any]]:
    return kustomize_build(WEBHOOK)


def find(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    [found] = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == NAME]
    return found


def pod(objects: list[dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = find(objects, "Deployment")["spec"]["template"]["spec"]
    return spec


def webhook_container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    [container] = pod(objects)["containers"]
    return container


def test_builds_offline_into_its_own_objects(built: list[dict[str, Any]]) -> None:
    assert sorted((o["kind"], o["metadata"]["name"]) for o in built) == [
        ("Deployment", NAME),
        ("Role", NAME),
        ("RoleBinding", NAME),
        ("Service", NAME),
        ("ServiceAccount", NAME),
    ]
    assert {o["metadata"]["namespace"] for o in built} == {"argocd"}


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_object_is_valid_kubernetes(built: list[dict[str, Any]], version: str) -> None:
    assert schema_problems(built, version) == []


def test_may_list_and_patch_applications_and_nothing_else(built: list[dict[str, Any]]) -> None:
    role, binding = find(built, "Role"), find(built, "RoleBinding")
    assert role["rules"] == [
        {
            "apiGroups": ["argoproj.io"],
            "resources": ["applications"],
            "verbs": ["get", "list", "patch"],
        }
    ]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": NAME,
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": pod(built)["serviceAccountName"], "namespace": "argocd"}
    ]
    find(built, "ServiceAccount")  # the account the pod runs as exists


def test_runs_the_webhook_command_with_options_it_accepts(built: list[dict[str, Any]]) -> None:
    container = webhook_container(built)
    executable, subcommand = container["command"]
    # The console script pip installs into the image's venv (see Dockerfile).
    assert executable == "/opt/tagpin/bin/tagpin" and subcommand == "webhook"
    assert "tagpin" in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    context = webhook_command().make_context("webhook", list(container["args"]))
    host, port = parse_listen(context.params["webhook_listen"])
    assert host == "0.0.0.0"  # reachable through the Service, not just from inside the pod
    assert [p["containerPort"] for p in container["ports"]] == [port]


def test_every_setting_in_the_environment_is_one_the_command_reads(
    built: list[dict[str, Any]],
) -> None:
    env = {e["name"]: e for e in webhook_container(built)["env"]}
    assert unknown_settings(env) == []  # each a row of the table, read through Settings
    values = {name: e["value"] for name, e in env.items() if "value" in e}
    Settings.from_environ(values)  # and each a value the webhook can use
    assert env["ARGOCD_NAMESPACE"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}


def test_the_secret_comes_from_a_secret_not_the_manifest(built: list[dict[str, Any]]) -> None:
    env = {e["name"]: e for e in webhook_container(built)["env"]}
    assert "value" not in env[SECRET_ENV]
    assert set(env[SECRET_ENV]["valueFrom"]) == {"secretKeyRef"}


def test_runs_as_non_root_with_a_read_only_root(built: list[dict[str, Any]]) -> None:
    spec = pod(built)
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert webhook_container(built)["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 999,
        "runAsGroup": 999,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    mounts = {m["mountPath"]: m["name"] for m in webhook_container(built)["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes[mounts["/tmp"]] == {"name": mounts["/tmp"], "emptyDir": {}}  # HOME=/tmp


def test_probes_and_service_reach_the_webhook_port(built: list[dict[str, Any]]) -> None:
    container = webhook_container(built)
    [port] = container["ports"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": port["name"]}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port["name"]}
    service = find(built, "Service")
    assert [p["targetPort"] for p in service["spec"]["ports"]] == [port["name"]]
    labels = find(built, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()


def test_image_is_set_by_the_kustomization(built: list[dict[str, Any]]) -> None:
    image = webhook_container(built)["image"]
    assert image.startswith("111122223333.dkr.ecr.eu-west-1.amazonaws.com/tagpin")


def test_shutdown_fits_in_the_pods_grace_period(built: list[dict[str, Any]]) -> None:
    """SIGTERM-to-exit is bounded by --shutdown-seconds, plus at most one Kubernetes call in
    flight; past the grace period the kubelet SIGKILLs and pending refreshes are lost."""
    context = webhook_command().make_context("webhook", list(webhook_container(built)["args"]))
    env = {e["name"]: e.get("value") for e in webhook_container(built)["env"]}
    from_env = Settings.from_environ({k: v for k, v in env.items() if v is not None})
    budget = context.params["webhook_shutdown_seconds"] or from_env.webhook_shutdown_seconds
    assert budget + HTTP_TIMEOUT_SECONDS < pod(built)["terminationGracePeriodSeconds"]
