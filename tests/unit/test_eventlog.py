"""The render server's and the webhook's log (cmp/eventlog.py, TAGPIN_LOG_FORMAT)."""

from __future__ import annotations

import io
import json
import re

import pytest

from cmp.commands.webhook import webhook_config
from cmp.eventlog import EventLog
from cmp.settings import Settings


def test_json_lines_are_one_object_per_line_with_time_level_and_event() -> None:
    stream = io.StringIO()
    log = EventLog(stream, "render-server", json_lines=True)
    log.write("render", app="web", exit_code=0, duration_seconds=0.0123, text="ignored as JSON")
    log.write("render", level="error", app="api\nwith a newline", exit_code=137)
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", first.pop("time"))
    assert first == {
        "level": "info",
        "msg": "render",
        "app": "web",
        "exit_code": 0,
        "duration_seconds": 0.0123,
    }
    assert (second["level"], second["app"], second["exit_code"]) == (
        "error",
        "api\nwith a newline",
        137,
    )


def test_text_lines_say_the_text_or_the_event_and_its_fields() -> None:
    stream = io.StringIO()
    log = EventLog(stream, "webhook", json_lines=False)
    log.write("serving", text="serving /tmp/s.sock (pid 7, ready in 0.10 s)")
    log.write("refresh failed", level="error", app="argocd/web", problem="409 Conflict")
    lines = stream.getvalue().splitlines()
    stamp = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d"
    assert re.fullmatch(
        rf"{stamp} tagpin webhook: serving /tmp/s.sock \(pid 7, ready in 0.10 s\)", lines[0]
    )
    assert re.fullmatch(
        rf'{stamp} tagpin webhook: refresh failed app=argocd/web problem="409 Conflict"', lines[1]
    )


@pytest.mark.parametrize(
    ("raw", "json_lines"), [("", True), ("auto", True), ("json", True), ("text", False)]
)
def test_the_webhook_logs_json_unless_told_text(raw: str, json_lines: bool) -> None:
    environ = {"TAGPIN_WEBHOOK_SECRET": "s" * 20, "TAGPIN_LOG_FORMAT": raw}
    config = webhook_config(Settings.from_environ(environ), environ)
    assert config.log_json is json_lines
