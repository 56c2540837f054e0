"""The report: machine, tables, slopes and the imports summary."""

from __future__ import annotations

import contextlib
import os
import platform
from collections.abc import Sequence
from pathlib import Path

from bench.model import ImportCheck, Row


def machine() -> str:
    import _yaml  # type: ignore[import-untyped,unused-ignore]
    import yaml

    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return (
        f"{cpu}, {os.cpu_count()} cores; {platform.python_implementation()} "
        f"{platform.python_version()} on {platform.system()} {platform.release()}; "
        f"PyYAML {yaml.__version__} (libyaml {_yaml.get_version_string()}, "
        f"C loader {'yes' if yaml.__with_libyaml__ else 'NO'})"
    )


def table(rows: Sequence[Row]) -> str:
    lines = [
        "| case | objects | runs | tagpin ms | floor ms | time × floor | CPU × floor "
        "| tagpin MiB | floor MiB | memory × floor | notes |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row.case} | {row.objects} | {row.runs} | {row.tagpin.median_ms:.1f} | "
            f"{row.floor.median_ms:.1f} | {row.tagpin.median_ms / row.floor.median_ms:.2f} | "
            f"{row.tagpin.cpu_ms / row.floor.cpu_ms:.2f} | "
            f"{row.tagpin.peak_rss_kb / 1024:.1f} | {row.floor.peak_rss_kb / 1024:.1f} | "
            f"{row.tagpin.peak_rss_kb / row.floor.peak_rss_kb:.2f} | {row.note} |"
        )
    return "\n".join(lines)


def slope(rows: Sequence[Row]) -> str | None:
    """ms per 1,000 objects between the two large apps: linear growth keeps it flat."""
    large = sorted((r for r in rows if r.case.startswith("large-")), key=lambda r: r.objects)
    if len(large) < 2:
        return None
    small, big = large[0], large[-1]
    per_k = 1000 / (big.objects - small.objects)
    tagpin = (big.tagpin.median_ms - small.tagpin.median_ms) * per_k
    floor = (big.floor.median_ms - small.floor.median_ms) * per_k
    average = small.tagpin.median_ms * 1000 / small.objects
    return (
        f"Slope {small.objects}→{big.objects} objects: tagpin {tagpin:.1f} ms per 1,000 "
        f"objects, floor {floor:.1f} ms ({tagpin / floor:.2f}× floor); tagpin's average at "
        f"{small.objects} is {average:.1f} ms per 1,000 (equal to the slope when linear)."
    )


def import_report(checks: Sequence[ImportCheck]) -> str:
    lines = []
    for check in checks:
        verdict = (
            "OK"
            if not check.forbidden_found
            else "FAIL: imports " + ", ".join(check.forbidden_found)
        )
        top = ", ".join(f"{name} {ms:.1f}" for name, ms in check.top)
        lines.append(
            f"- {check.case}: {verdict}; total import time {check.total_ms:.1f} ms; "
            f"also imports: {', '.join(check.watched_found) or 'none watched'}; "
            f"top-level imports (cumulative ms): {top}"
        )
    return "\n".join(lines)
