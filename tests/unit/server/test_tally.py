"""A worker's report to the render server (cmp/server/tally.py): what the worker counted
arrives intact, and the server reads nothing else. A worker runs a tenant's render, so its
report is read like any untrusted input: bounded, and checked against the metric table."""

from __future__ import annotations

import json

import pytest

from cmp.server.tally import MAX_REPORT_BYTES, BadReport, Tally, decode


def test_what_a_worker_counts_reaches_the_server() -> None:
    tally = Tally()
    tally.answered("disk", "tags", "fresh")
    tally.answered("disk", "tags", "pushed")
    tally.answered("ecr", "tags", "fresh")
    tally.answered("ecr", "tags", "fresh")
    tally.answered("disk", "listing", "stale")
    tally.ecr_called("DescribeImages", None, 0)
    tally.ecr_called("DescribeImages", "ThrottlingException", 3)
    tally.redis_trouble("rejected")
    tally.waited("redis")
    tally.push_floor_decided(False)
    tally.limit_hit("cpu")
    tally.slot_waited(1.5)
    tally.push_pinned("0123456789abcdef", 4.0)
    tally.push_pinned("0123456789abcdef", 9.0)  # the same push, pinned again: timed once

    report = decode(tally.encode("web-staging"))

    assert report.counts == {
        ("tagpin_registry_answers_total", ("disk", "tags", "fresh")): 1,
        ("tagpin_registry_answers_total", ("disk", "tags", "refused_by_push_floor")): 1,
        ("tagpin_registry_answers_total", ("ecr", "tags", "fresh")): 2,
        ("tagpin_registry_answers_total", ("disk", "listing", "stale_served")): 1,
        ("tagpin_ecr_calls_total", ("DescribeImages", "none")): 1,
        ("tagpin_ecr_calls_total", ("DescribeImages", "ThrottlingException")): 1,
        ("tagpin_ecr_retries_total", ("DescribeImages",)): 3,
        ("tagpin_redis_errors_total", ("rejected",)): 1,
        ("tagpin_registry_fill_waits_total", ("redis",)): 1,
        ("tagpin_push_floor_decisions_total", ("refused",)): 1,
        ("tagpin_render_limit_hits_total", ("cpu",)): 1,
    }
    assert (report.slot_wait, report.pushes, report.app) == (
        1.5,
        [("0123456789abcdef", 4.0)],
        "web-staging",
    )


def test_an_empty_tally_is_an_empty_report() -> None:
    report = decode(Tally().encode(""))
    assert (report.counts, report.slot_wait, report.pushes, report.app) == ({}, None, [], "")


def report(**changes: object) -> bytes:
    document: dict[str, object] = {"counts": [], "slot_wait": None, "pushes": [], "app": "web"}
    document.update(changes)
    return json.dumps(document).encode()


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"not json", "not JSON"),
        (b"[]", "not an object"),
        (b" " * (MAX_REPORT_BYTES + 1), "more than"),
        (b"[" * 10_000 + b"]" * 10_000, "more than"),
        (report(counts=[["tagpin_renders_total", ["ok", "0"], 1]]), "not a metric a worker"),
        (report(counts=[["made_up_total", [], 1]]), "not a metric a worker"),
        (
            report(counts=[["tagpin_registry_answers_total", ["disk", "tags", "sha256:ab"], 1]]),
            "outside their vocabulary",
        ),
        (report(counts=[["tagpin_ecr_calls_total", ["ListImages", "no such"], 1]]), "vocabulary"),
        (report(counts=[["tagpin_redis_errors_total", ["down", "extra"], 1]]), "vocabulary"),
        (report(counts=[["tagpin_redis_errors_total", ["down"], -1]]), "not a count"),
        (report(counts=[["tagpin_redis_errors_total", ["down"], True]]), "not a count"),
        (report(counts=[["tagpin_redis_errors_total", ["down"], 1e300]]), "not a count"),
        (report(slot_wait="soon"), "not a count"),
        (report(pushes=[["x", -5]]), "not a count"),
        (report(pushes="x"), "not a list"),
        (report(app=None), "no app"),
    ],
)
def test_a_report_the_worker_could_not_have_written_is_refused(data: bytes, problem: str) -> None:
    with pytest.raises(BadReport, match=problem):
        decode(data)


def test_the_app_name_and_the_pushes_are_bounded() -> None:
    pushes = [[f"{n:016x}", 1.0] for n in range(1000)]
    decoded = decode(report(app="a" * 5000, pushes=pushes))
    assert len(decoded.app) == 253 and len(decoded.pushes) == 64
