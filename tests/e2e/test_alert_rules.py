"""deploy/monitoring's alert rules, checked by the real promtool (Debian's `prometheus` package,
tests/support/system-packages.sh): they load, the PrometheusRule holds the plain file's groups,
they name only metrics tagpin serves, and each alert fires on the series of the trouble it is
about, and no other alert does (`promtool test rules`).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from cmp.metrictable import METRICS_BY_NAME

REPO = Path(__file__).resolve().parents[2]
MONITORING = REPO / "deploy" / "monitoring"
RULES = MONITORING / "tagpin-rules.yaml"


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail(
            "promtool is not installed: install Debian's `prometheus` package "
            "(tests/support/system-packages.sh does)"
        )
    return found


def rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def named_metrics(expr: str) -> set[str]:
    """The tagpin metrics a PromQL expression reads (a histogram's by its family name)."""
    found = set(re.findall(r"\btagpin_[a-z_]+", expr))
    return {re.sub(r"_(bucket|count|sum)$", "", name) for name in found}


def test_the_rules_pass_promtools_check(tmp_path: Path) -> None:
    checked = subprocess.run(
        [promtool(), "check", "rules", str(RULES)], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(rules())} rules found" in checked.stdout


def test_the_prometheusrule_holds_the_plain_rules_files_groups(tmp_path: Path) -> None:
    resource = yaml.safe_load((MONITORING / "prometheusrule.yaml").read_text())
    assert resource["kind"] == "PrometheusRule"
    assert resource["spec"] == yaml.safe_load(RULES.read_text())


def test_every_rule_reads_metrics_tagpin_serves() -> None:
    for rule in rules():
        names = named_metrics(rule["expr"])
        assert names, rule["alert"]
        for name in names:
            assert name in METRICS_BY_NAME or f"{name}_total" in METRICS_BY_NAME, (
                rule["alert"],
                name,
            )


# Each trouble, as the series Prometheus would scrape (one sample a minute from 0), and the one
# alert it must raise, evaluated at `at`.
ECR = "tagpin_ecr_calls_total"
SCENARIOS: dict[str, tuple[dict[str, str], str]] = {
    "TagpinEcrThrottled": (
        {
            f'{ECR}{{operation="DescribeImages",error="none"}}': "0+10x60",
            f'{ECR}{{operation="DescribeImages",error="ThrottlingException"}}': "0+1x60",
        },
        "30m",
    ),
    "TagpinEcrErrors": (
        {
            f'{ECR}{{operation="DescribeImages",error="none"}}': "0+10x60",
            f'{ECR}{{operation="DescribeImages",error="AccessDeniedException"}}': "0+5x60",
            f'{ECR}{{operation="DescribeImages",error="ImageNotFoundException"}}': "0+50x60",
        },
        "30m",
    ),
    "TagpinRendersFailing": (
        {
            'tagpin_renders_total{result="ok",exit_code="0"}': "0+5x60",
            'tagpin_renders_total{result="error",exit_code="9"}': "0+5x60",
        },
        "40m",
    ),
    "TagpinInternalErrors": (
        {
            'tagpin_renders_total{result="ok",exit_code="0"}': "0+50x60",
            'tagpin_renders_total{result="error",exit_code="70"}': "0x20 1x40",
        },
        "30m",
    ),
    "TagpinSlotWaitNearDeadline": (
        {
            'tagpin_render_slot_wait_seconds_bucket{le="30"}': "0+1x60",
            'tagpin_render_slot_wait_seconds_bucket{le="40"}': "0+1x60",
            'tagpin_render_slot_wait_seconds_bucket{le="50"}': "0+11x60",
            'tagpin_render_slot_wait_seconds_bucket{le="+Inf"}': "0+11x60",
            'tagpin_renders_total{result="ok",exit_code="0"}': "0+11x60",
        },
        "30m",
    ),
    "TagpinStaleDigestsServed": (
        {
            'tagpin_registry_answers_total{layer="disk",question="tags",outcome="fresh"}': "0+9x60",
            'tagpin_registry_answers_total{layer="disk",question="tags",outcome="stale_served"}': (
                "0x20 1+1x40"
            ),
        },
        "30m",
    ),
    "TagpinRedisUnreachable": ({'tagpin_redis_errors_total{kind="down"}': "0+1x60"}, "30m"),
    "TagpinRedisBadEntries": ({'tagpin_redis_errors_total{kind="rejected"}': "0x20 3x40"}, "25m"),
    "TagpinPushToRenderSlow": (
        {
            'tagpin_push_to_render_seconds_bucket{le="300"}': "0x60",
            'tagpin_push_to_render_seconds_bucket{le="600"}': "0+1x60",
            'tagpin_push_to_render_seconds_bucket{le="+Inf"}': "0+1x60",
            "tagpin_push_to_render_seconds_count": "0+1x60",
        },
        "50m",
    ),
    "TagpinWebhookPatchFailing": (
        {
            'tagpin_webhook_refreshes_total{result="ok"}': "0+2x60",
            'tagpin_webhook_refreshes_total{result="failed"}': "0+1x60",
            "tagpin_push_to_render_seconds_count": "0+2x60",
        },
        "30m",
    ),
    "TagpinWebhookCannotListApplications": (
        {"tagpin_webhook_list_errors_total": "0+1x60"},
        "30m",
    ),
    "TagpinPushesNotReachingRenders": (
        {
            'tagpin_webhook_refreshes_total{result="ok"}': "0+1x90",
            "tagpin_push_to_render_seconds_count": "0x90",
        },
        "70m",
    ),
}
# A healthy fleet, busy: nothing fires.
HEALTHY = {
    f'{ECR}{{operation="DescribeImages",error="none"}}': "0+10x90",
    f'{ECR}{{operation="DescribeImages",error="ImageNotFoundException"}}': "0+1x90",
    'tagpin_renders_total{result="ok",exit_code="0"}': "0+20x90",
    'tagpin_renders_total{result="error",exit_code="8"}': "0+1x90",
    'tagpin_render_slot_wait_seconds_bucket{le="0.1"}': "0+20x90",
    'tagpin_render_slot_wait_seconds_bucket{le="+Inf"}': "0+21x90",
    'tagpin_registry_answers_total{layer="disk",question="tags",outcome="fresh"}': "0+30x90",
    'tagpin_webhook_refreshes_total{result="ok"}': "0+1x90",
    'tagpin_push_to_render_seconds_bucket{le="10"}': "0+1x90",
    'tagpin_push_to_render_seconds_bucket{le="+Inf"}': "0+1x90",
    "tagpin_push_to_render_seconds_count": "0+1x90",
}


def test_every_alert_has_a_scenario() -> None:
    assert sorted(SCENARIOS) == sorted(rule["alert"] for rule in rules())


def test_each_alert_fires_on_its_trouble_and_no_other_does(tmp_path: Path) -> None:
    by_name = {rule["alert"]: rule for rule in rules()}

    def expect(firing: str | None, at: str) -> list[dict[str, Any]]:
        return [
            {
                "eval_time": at,
                "alertname": name,
                "exp_alerts": [
                    {"exp_labels": rule.get("labels", {}), "exp_annotations": rule["annotations"]}
                ]
                if name == firing
                else [],
            }
            for name, rule in by_name.items()
        ]

    tests = [
        {
            "interval": "1m",
            "name": f"{alert} fires",
            "input_series": [{"series": s, "values": v} for s, v in series.items()],
            "alert_rule_test": expect(alert, at),
        }
        for alert, (series, at) in SCENARIOS.items()
    ]
    tests.append(
        {
            "interval": "1m",
            "name": "a healthy fleet",
            "input_series": [{"series": s, "values": v} for s, v in HEALTHY.items()],
            "alert_rule_test": expect(None, "80m"),
        }
    )
    shutil.copy(RULES, tmp_path / RULES.name)
    unit_tests = tmp_path / "tagpin-rules.test.yaml"
    unit_tests.write_text(
        yaml.safe_dump({"rule_files": [RULES.name], "evaluation_interval": "1m", "tests": tests})
    )
    ran = subprocess.run(
        [promtool(), "test", "rules", str(unit_tests)], capture_output=True, text=True
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr


def test_the_monitoring_component_scrapes_the_port_the_sidecar_serves(tmp_path: Path) -> None:
    """deploy/monitoring added to the one-step install: its PodMonitors name the ports the
    sidecar and the webhook declare, and the sidecar's TAGPIN_METRICS_PORT is that port."""
    from tests.support.kustomize import kustomize_build

    shutil.copytree(REPO / "deploy", tmp_path / "deploy")  # kustomize takes relative paths only
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "namespace": "argocd",
                "resources": ["../deploy/base-upstream", "../deploy/webhook"],
                "components": ["../deploy/tagpin", "../deploy/monitoring"],
            }
        )
    )
    built = kustomize_build(overlay)
    kinds = {(o["kind"], o["metadata"]["name"]) for o in built}
    assert ("PrometheusRule", "tagpin") in kinds
    monitors = {o["metadata"]["name"]: o["spec"] for o in built if o["kind"] == "PodMonitor"}
    for name, deployment, container in (
        ("tagpin-sidecar", "argocd-repo-server", "tagpin"),
        ("tagpin-webhook", "tagpin-webhook", "webhook"),
    ):
        [pods] = [
            o for o in built if o["kind"] == "Deployment" and o["metadata"]["name"] == deployment
        ]
        template = pods["spec"]["template"]
        assert (
            monitors[name]["selector"]["matchLabels"].items()
            <= template["metadata"]["labels"].items()
        )
        [served] = [c for c in template["spec"]["containers"] if c["name"] == container]
        [endpoint] = monitors[name]["podMetricsEndpoints"]
        ports = {p["name"]: p["containerPort"] for p in served["ports"]}
        assert endpoint["port"] in ports
        if container == "tagpin":
            env = {e["name"]: e.get("value") for e in served["env"]}
            assert env["TAGPIN_METRICS_PORT"] == str(ports[endpoint["port"]])
