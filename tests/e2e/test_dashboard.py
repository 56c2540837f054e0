"""deploy/monitoring/grafana-dashboard.json: it loads, every query reads metrics tagpin serves
(cmp/metrictable.py), and every query is PromQL that Prometheus parses (promtool)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import yaml

from cmp.metrictable import METRICS_BY_NAME
from tests.e2e.test_alert_rules import named_metrics, promtool

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "monitoring" / "grafana-dashboard.json"


def panels() -> list[dict[str, Any]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [panel for panel in dashboard["panels"] if panel["type"] != "row"]


def queries() -> list[str]:
    return [target["expr"] for panel in panels() for target in panel["targets"]]


def test_every_query_reads_metrics_tagpin_serves() -> None:
    for expr in queries():
        names = named_metrics(expr)
        assert names, expr
        unknown = {
            n for n in names if n not in METRICS_BY_NAME and f"{n}_total" not in METRICS_BY_NAME
        }
        assert unknown == set(), expr


def test_the_dashboard_shows_what_operators_ask_about() -> None:
    shown = set().union(*(named_metrics(expr) for expr in queries()))
    assert {
        "tagpin_renders_total",  # render rate and errors
        "tagpin_render_duration_seconds",  # p50/p99
        "tagpin_render_slot_wait_seconds",
        "tagpin_ecr_calls_total",  # calls and errors
        "tagpin_registry_answers_total",  # answers by layer
        "tagpin_push_to_render_seconds",
    } <= shown
    ids = [panel["id"] for panel in json.loads(DASHBOARD.read_text())["panels"]]
    assert len(ids) == len(set(ids))


def test_every_query_is_promql_prometheus_parses(tmp_path: Path) -> None:
    """Each query as a recording rule, with the dashboard's variable at its `All` value."""
    rules = [
        {"record": f"tagpin:dashboard_query_{n}", "expr": expr.replace("$pod", ".*")}
        for n, expr in enumerate(queries())
    ]
    path = tmp_path / "queries.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    checked = subprocess.run(
        [promtool(), "check", "rules", str(path)], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
