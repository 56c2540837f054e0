"""deploy/redis-cache (kustomize component) and deploy/helm/values-redis-cache.yaml: the sidecar
and the webhook pointed at argocd-redis, secrets from Secrets, the NetworkPolicy rule the
webhook needs; built offline with and without the webhook, valid, and equal to the Helm values."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from cmp.registry.shared import redis_settings
from cmp.settings import SETTINGS_BY_ENV, Settings
from tests.support.kustomize import K8S_VERSIONS, kustomize_build, schema_problems

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def build(tmp_path: Path, *, webhook: bool) -> list[dict[str, Any]]:
    """An installation as a user writes it: base, the tagpin component, the Redis component."""
    up = os.path.relpath(DEPLOY, tmp_path)
    resources = [f"{up}/base-upstream"] + ([f"{up}/webhook"] if webhook else [])
    (tmp_path / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "namespace": "argocd",
                "resources": resources,
                "components": [f"{up}/tagpin", f"{up}/redis-cache"],
                "images": [
                    {
                        "name": "tagpin",
                        "newName": "111122223333.dkr.ecr.eu-west-1.amazonaws.com/tagpin",
                        "newTag": "0.1.0",
                    }
                ],
            }
        )
    )
    return kustomize_build(tmp_path)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    return build(tmp_path_factory.mktemp("install"), webhook=True)


def find(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    [found] = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


def container(objects: list[dict[str, Any]], deployment: str, name: str) -> dict[str, Any]:
    spec = find(objects, "Deployment", deployment)["spec"]["template"]["spec"]
    [found] = [c for c in spec["containers"] if c["name"] == name]
    return found


def env_of(c: dict[str, Any]) -> dict[str, Any]:
    return {item["name"]: item.get("value", item.get("valueFrom")) for item in c["env"]}


ARGOCD_REDIS_AUTH = {"secretKeyRef": {"name": "argocd-redis", "key": "auth"}}


def test_the_sidecar_uses_argocd_redis_with_its_password_and_a_signing_key(
    built: list[dict[str, Any]],
) -> None:
    sidecar = container(built, "argocd-repo-server", "tagpin")
    env = env_of(sidecar)
    spec = find(built, "Deployment", "argocd-repo-server")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    mount = next(m for m in sidecar["volumeMounts"] if m["name"] == "tagpin-redis")

    assert env["TAGPIN_REDIS_URL"] == "redis://argocd-redis:6379/0"
    assert env["TAGPIN_REDIS_PASSWORD"] == ARGOCD_REDIS_AUTH  # as Argo CD's REDIS_PASSWORD
    assert volumes["tagpin-redis"]["secret"]["secretName"] == "tagpin-redis"
    assert mount["readOnly"] is True
    key_file = Path(env["TAGPIN_REDIS_SIGNING_KEY_FILE"])
    assert key_file.parent == Path(mount["mountPath"])
    assert key_file.name in {i["path"] for i in volumes["tagpin-redis"]["secret"]["items"]}
    # Only the sidecar gets the key; the repo-server container is untouched.
    repo_server = container(built, "argocd-repo-server", "argocd-repo-server")
    assert not any(m["name"] == "tagpin-redis" for m in repo_server["volumeMounts"])


def test_every_redis_setting_the_manifests_set_is_one_tagpin_reads(
    built: list[dict[str, Any]],
) -> None:
    for deployment, name in (("argocd-repo-server", "tagpin"), ("tagpin-webhook", "webhook")):
        for env in env_of(container(built, deployment, name)):
            if env.startswith("TAGPIN_REDIS"):
                assert env.removesuffix("_FILE") in SETTINGS_BY_ENV, env


def test_the_webhook_gets_the_password_but_no_signing_key(built: list[dict[str, Any]]) -> None:
    env = env_of(container(built, "tagpin-webhook", "webhook"))

    assert env["TAGPIN_REDIS_URL"] == "redis://argocd-redis:6379/0"
    assert env["TAGPIN_REDIS_PASSWORD"] == ARGOCD_REDIS_AUTH
    assert not [name for name in env if "SIGNING" in name]
    # …and the webhook accepts that configuration (it writes no digests).
    assert (
        redis_settings(
            Settings.from_environ({"TAGPIN_REDIS_URL": env["TAGPIN_REDIS_URL"]}),
            signing_key_required=False,
        )
        is not None
    )


def test_the_network_policy_admits_the_webhook_to_argocd_redis(
    built: list[dict[str, Any]],
) -> None:
    policy = find(built, "NetworkPolicy", "tagpin-webhook-to-argocd-redis")
    webhook = find(built, "Deployment", "tagpin-webhook")
    webhook_labels = webhook["spec"]["template"]["metadata"]["labels"]
    [rule] = policy["spec"]["ingress"]
    [source] = rule["from"]

    assert policy["metadata"]["namespace"] == "argocd"
    # argocd-redis's pods, as the stock install labels them
    assert policy["spec"]["podSelector"]["matchLabels"] == {
        "app.kubernetes.io/name": "argocd-redis"
    }
    assert source["podSelector"]["matchLabels"].items() <= webhook_labels.items()
    assert rule["ports"] == [{"protocol": "TCP", "port": 6379}]


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_built_object_is_valid_kubernetes(built: list[dict[str, Any]], version: str) -> None:
    assert schema_problems(built, version) == []


def test_the_component_works_without_the_webhook(tmp_path: Path) -> None:
    objects = build(tmp_path, webhook=False)

    assert "TAGPIN_REDIS_URL" in env_of(container(objects, "argocd-repo-server", "tagpin"))
    assert not [
        o
        for o in objects
        if o["kind"] == "Deployment" and o["metadata"]["name"] == "tagpin-webhook"
    ]


def test_helm_values_describe_the_same_sidecar(built: list[dict[str, Any]]) -> None:
    values = yaml.safe_load((DEPLOY / "helm" / "values-redis-cache.yaml").read_text())
    spec = find(built, "Deployment", "argocd-repo-server")["spec"]["template"]["spec"]
    sidecar = container(built, "argocd-repo-server", "tagpin")
    added = {m["name"] for m in sidecar["volumeMounts"]} - {"var-files", "plugins"}

    assert values["repoServer"]["extraContainers"] == [sidecar]
    assert {v["name"]: v for v in values["repoServer"]["volumes"]} == {
        v["name"]: v for v in spec["volumes"] if v["name"] in added
    }
