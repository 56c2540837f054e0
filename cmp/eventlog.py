"""The log of a long-lived tagpin process (the render server, the webhook): one line per event,
text a person reads or one JSON object (TAGPIN_LOG_FORMAT=json) a log pipeline reads without a
parser of its own: `time` (UTC, ISO 8601), `level`, `msg` (the event) and the event's fields.

Callers pass fields they chose, never a request's environment or a secret.
"""

from __future__ import annotations

import datetime
import json
import threading
import time
from typing import IO, Any, Literal

Level = Literal["info", "warning", "error"]


class EventLog:
    def __init__(self, stream: IO[str], component: str, *, json_lines: bool) -> None:
        self._stream = stream
        self._component = component
        self.json_lines = json_lines
        self._lock = threading.Lock()

    def write(
        self, msg: str, *, level: Level = "info", text: str | None = None, **fields: Any
    ) -> None:
        """Log event `msg` with `fields`; as text, `text` says it (else msg and the fields)."""
        if self.json_lines:
            record = {
                "time": datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds"),
                "level": level,
                "msg": msg,
                **fields,
            }
            line = json.dumps(record, default=str) + "\n"
        else:
            said = text if text is not None else " ".join([msg, *_pairs(fields)])
            line = f"{time.strftime('%Y-%m-%dT%H:%M:%S')} tagpin {self._component}: {said}\n"
        with self._lock:
            self._stream.write(line)
            self._stream.flush()


def _pairs(fields: dict[str, Any]) -> list[str]:
    shown = []
    for name, value in fields.items():
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        if not text or any(c.isspace() or c in '"=' for c in text):
            text = json.dumps(text)
        shown.append(f"{name}={text}")
    return shown
