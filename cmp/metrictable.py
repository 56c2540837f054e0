"""Every Prometheus metric tagpin serves, declared once: the render server's (cmp/server/metrics.py)
and the webhook's (cmp/webhook/metrics.py) are built from these rows, docs/reference.md lists
them (`python -m cmp.metrictable` prints the table; tests/unit/test_metric_table.py fails on
drift), and the drift tests scrape what /metrics really serves against it.

Names follow Prometheus' conventions: `tagpin_` first, the unit last (`_seconds`), `_total` on
counters. Every label has a fixed vocabulary, or a value form that stays bounded (an exit code,
an AWS error code): never a tag, a digest, a repository or an Application.

Standard library only: a worker imports it to check what it reports.
"""

from __future__ import annotations

import re
from typing import Literal, NamedTuple

Kind = Literal["counter", "gauge", "histogram"]
Source = Literal["render server", "webhook"]


class Label(NamedTuple):
    name: str
    values: tuple[str, ...] = ()  # the vocabulary; () for a value of `form`
    form: str = ""  # what any value looks like, when there is no fixed vocabulary

    def allows(self, value: str) -> bool:
        if self.values:
            return value in self.values
        return re.fullmatch(self.form, value) is not None


class Metric(NamedTuple):
    name: str  # as /metrics shows it (a counter's with `_total`)
    kind: Kind
    help: str
    source: Source
    labels: tuple[Label, ...] = ()
    buckets: tuple[float, ...] = ()  # histograms

    @property
    def label_names(self) -> tuple[str, ...]:
        return tuple(label.name for label in self.labels)


EXIT_CODE = Label("exit_code", form=r"[0-9]{1,3}")
# AWS's error codes tagpin knows, `other`, botocore's error class, `deadline`: all CamelCase words.
ECR_ERROR = Label("error", form=r"none|[A-Za-z][A-Za-z0-9]{0,63}")
ECR_OPERATION = Label("operation", ("DescribeImages", "ListImages", "BatchGetImage"))
LAYER = Label("layer", ("lock", "memory", "disk", "redis", "ecr"))
QUESTION = Label("question", ("tags", "listing"))
OUTCOME = Label("outcome", ("fresh", "refused_by_push_floor", "stale_served"))

# A render: warm ones take milliseconds, Argo CD gives up at 60 s (its exec timeout).
RENDER_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 45.0, 60.0)
# A wait for a slot: nothing, or up to TAGPIN_SLOT_WAIT_SECONDS, which must stay under 60 s.
SLOT_WAIT_BUCKETS = (0.001, 0.01, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0)
# A push to its first render: the webhook's coalescing (2 s), Argo CD's refresh, the render.
PUSH_BUCKETS = (1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
# Seconds from an event's arrival to its last PATCH: coalescing (default 2 s) dominates.
WEBHOOK_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 2.5, 5.0, 10.0, 30.0)

SERVER: Source = "render server"
WEBHOOK: Source = "webhook"

METRICS: tuple[Metric, ...] = (
    Metric(
        "tagpin_renders_total",
        "counter",
        "Renders the render server's workers ran, by result (ok: exit 0) and exit code (as the "
        "client saw it; 128+N for a worker killed by signal N).",
        SERVER,
        (Label("result", ("ok", "error")), EXIT_CODE),
    ),
    Metric(
        "tagpin_render_duration_seconds",
        "histogram",
        "Seconds from a worker's start to its exit (its answer, and a few ms), slot wait included.",
        SERVER,
        buckets=RENDER_BUCKETS,
    ),
    Metric(
        "tagpin_render_slot_wait_seconds",
        "histogram",
        "Seconds a render waited for one of TAGPIN_MAX_PARALLEL_RENDERS slots (a render refused "
        "as busy, exit 75, waited TAGPIN_SLOT_WAIT_SECONDS).",
        SERVER,
        buckets=SLOT_WAIT_BUCKETS,
    ),
    Metric(
        "tagpin_render_slots_busy",
        "gauge",
        "Render slots held now, by any render of the sidecar (served or in-process).",
        SERVER,
    ),
    Metric(
        "tagpin_render_slots_waiting",
        "gauge",
        "Renders waiting for a slot now.",
        SERVER,
    ),
    Metric(
        "tagpin_render_workers_running",
        "gauge",
        "The render server's workers alive now (rendering, waiting for a slot, or exiting).",
        SERVER,
    ),
    Metric(
        "tagpin_render_workers_started_total",
        "counter",
        "Workers the render server forked, one per render.",
        SERVER,
    ),
    Metric(
        "tagpin_render_workers_killed_total",
        "counter",
        "Workers that ended by a signal before they answered: client_left (Argo CD's deadline "
        "or the client stopped), server_stopped, or signal (a hard CPU limit, the render's "
        "lease, the kernel's OOM killer).",
        SERVER,
        (Label("reason", ("client_left", "server_stopped", "signal")),),
    ),
    Metric(
        "tagpin_render_limit_hits_total",
        "counter",
        "Renders stopped by a limit: cpu (TAGPIN_MAX_CPU_SECONDS), memory (TAGPIN_MAX_MEMORY_MB) "
        "or time (TAGPIN_MAX_RENDER_SECONDS).",
        SERVER,
        (Label("limit", ("cpu", "memory", "time")),),
    ),
    Metric(
        "tagpin_ecr_calls_total",
        "counter",
        "ECR API calls (a page of a listing is one), by operation and AWS error code (none: it "
        "succeeded; ThrottlingException: throttled past botocore's retries; deadline: "
        "TAGPIN_ECR_DEADLINE stopped it; other: a code tagpin does not know).",
        SERVER,
        (ECR_OPERATION, ECR_ERROR),
    ),
    Metric(
        "tagpin_ecr_retries_total",
        "counter",
        "botocore's retries within ECR calls (throttling or server errors met on the way).",
        SERVER,
        (ECR_OPERATION,),
    ),
    Metric(
        "tagpin_registry_answers_total",
        "counter",
        "Questions about one repository (its tags, or its listing for branch deploys) met by a "
        "layer (lock, memory, disk, redis, ecr), by outcome: fresh (it answered), "
        "refused_by_push_floor (it held an answer older than a push the webhook announced, so "
        "the layer below was asked), stale_served (past its time to live, served because ECR "
        "failed; TAGPIN_SERVE_STALE_HOURS).",
        SERVER,
        (LAYER, QUESTION, OUTCOME),
    ),
    Metric(
        "tagpin_registry_fill_waits_total",
        "counter",
        "Renders that waited for another one filling the same repository: on this machine "
        "(disk) or another replica (redis).",
        SERVER,
        (Label("layer", ("disk", "redis")),),
    ),
    Metric(
        "tagpin_redis_errors_total",
        "counter",
        "Trouble with the shared cache: down (unreachable, timeout, auth, protocol; the render "
        "went on without it), rejected (a bad entry: unsigned or malformed), planted_lock.",
        SERVER,
        (Label("kind", ("down", "rejected", "planted_lock")),),
    ),
    Metric(
        "tagpin_push_floor_decisions_total",
        "counter",
        "Per render and repository with a push announced on the Application, what the push "
        "floor did to the cached answers: admitted (fetched after the push) or refused (one "
        "was fetched before it: ECR or another layer below was asked).",
        SERVER,
        (Label("decision", ("admitted", "refused")),),
    ),
    Metric(
        "tagpin_push_to_render_seconds",
        "histogram",
        "Seconds from the webhook recording a push to the first render on this sidecar that "
        "pins the pushed digest.",
        SERVER,
        buckets=PUSH_BUCKETS,
    ),
    Metric(
        "tagpin_render_reports_unreadable_total",
        "counter",
        "Worker reports the render server could not read (their counts are lost; a bug, or a "
        "worker that wrote where it should not).",
        SERVER,
    ),
    Metric(
        "tagpin_webhook_events_total",
        "counter",
        "Requests to the event endpoints, by sender and outcome.",
        WEBHOOK,
        (
            Label("sender", ("eventbridge", "generic")),
            Label(
                "outcome",
                (
                    "accepted",
                    "no_match",
                    "ignored",
                    "duplicate",
                    "malformed",
                    "unauthorized",
                    "stale",
                    "replayed",
                    "too_large",
                    "unavailable",
                ),
            ),
        ),
    ),
    Metric(
        "tagpin_webhook_refreshes_total",
        "counter",
        "Hard-refresh merge patches sent to Applications, by result.",
        WEBHOOK,
        (Label("result", ("ok", "failed")),),
    ),
    Metric(
        "tagpin_webhook_coalesced_events_total",
        "counter",
        "Events folded into a refresh that was already pending for the same Application.",
        WEBHOOK,
    ),
    Metric(
        "tagpin_webhook_list_errors_total",
        "counter",
        "Failed attempts to list Applications from the Kubernetes API.",
        WEBHOOK,
    ),
    Metric(
        "tagpin_webhook_unreadable_applications",
        "gauge",
        "Applications left out of the last list because they cannot be read (nested too "
        "deeply); pushes do not refresh them.",
        WEBHOOK,
    ),
    Metric(
        "tagpin_webhook_policy_errors_total",
        "counter",
        "Applications skipped for one event because their policy could not be evaluated.",
        WEBHOOK,
    ),
    Metric(
        "tagpin_webhook_connections_refused_total",
        "counter",
        "Connections refused (busy: every request slot taken), dropped (evicted: too many "
        "still sending) or cut off (deadline: the request took longer than its total limit).",
        WEBHOOK,
        (Label("reason", ("busy", "evicted", "deadline")),),
    ),
    Metric(
        "tagpin_webhook_event_to_refresh_seconds",
        "histogram",
        "Seconds from an accepted event to the last refresh patch it caused.",
        WEBHOOK,
        buckets=WEBHOOK_LATENCY_BUCKETS,
    ),
)

METRICS_BY_NAME = {metric.name: metric for metric in METRICS}
# The standard process collector's (CPU seconds, resident memory, open files): both servers
# serve them too, under Prometheus' own names.
PROCESS_PREFIX = "process_"


def family_name(metric: Metric) -> str:
    """The family name prometheus_client and its parser use: a counter's without `_total`."""
    return metric.name.removesuffix("_total") if metric.kind == "counter" else metric.name


def reference_table() -> str:
    """The Markdown table docs/reference.md shows."""
    lines = ["| Metric | Type | Labels | Served by | What it counts |", "|---|---|---|---|---|"]
    for metric in METRICS:
        labels = ", ".join(
            f"`{label.name}` ({'/'.join(label.values) if label.values else 'see text'})"
            for label in metric.labels
        )
        lines.append(
            f"| `{metric.name}` | {metric.kind} | {labels or '-'} | {metric.source} "
            f"| {metric.help} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(reference_table(), end="")
