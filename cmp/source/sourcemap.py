"""Which template line wrote a given line of a template's rendered output.

A YAML error is found in the rendered text, whose line numbers mean nothing to the author once a
loop or an include sits above the fault. Only then (renders are deterministic) the template is
rendered again up to the faulty line, watching which template frame produced each chunk:

- literal template text is found in the template's source at or after the line Jinja2's debug
  information gives, so each of its lines maps to the exact template line;
- an expression's output (`{{ … }}`) maps to the expression's line; if the text came from a
  macro, the macro's file and the line in its body that wrote it are named too;
- text from an `{% include %}` maps to the include's line, naming the included file and line.

Nothing here can fail a render: any surprise means "unknown", and the caller keeps the
rendered line.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

_TAG = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}")


@dataclass(frozen=True)
class Event:
    """A Jinja2 frame handing back text: a template yielding a chunk, or a macro returning."""

    template: Any  # jinja2.Template
    line: int  # template line the frame was at
    macro_line: int | None  # a macro's definition line; None for a template's own output
    text: str


def locate(
    environment: Any, name: str, context: Mapping[str, Any], line: int, column: int = 1
) -> str | None:
    """`file:line` in the template `name` (app-relative) that wrote rendered `line`, with the
    included file or macro the text came from; None when it cannot be told."""
    try:
        return _locate(environment, name, context, line, column)
    except Exception:  # noqa: BLE001 - a diagnostic must never replace the real error
        return None


def _locate(
    environment: Any, name: str, context: Mapping[str, Any], line: int, column: int
) -> str | None:
    template = environment.get_template(name)
    events: list[Event] = []

    def watch(frame: Any, event: str, value: Any) -> None:
        if event != "return" or not isinstance(value, str):
            return
        owner = frame.f_globals.get("__jinja_template__")
        if owner is None:
            return
        code = frame.f_code
        macro_line = (
            owner.get_corresponding_lineno(code.co_firstlineno) if code.co_name == "macro" else None
        )
        events.append(
            Event(owner, owner.get_corresponding_lineno(frame.f_lineno), macro_line, value)
        )

    chunks = template.root_render_func(template.new_context(dict(context)))
    length = 0  # of the output so far
    newlines = 0  # in the output so far
    offset: int | None = None  # of (line, column) in the output, once its line has started
    target: tuple[str, int, list[Event]] | None = None
    previous = sys.getprofile()
    sys.setprofile(watch)
    try:
        for chunk in chunks:
            start, length = length, length + len(chunk)
            if offset is None:
                missing = line - 1 - newlines  # newlines before the line starts
                if chunk.count("\n") >= missing:
                    position = -1
                    for _ in range(missing):
                        position = chunk.find("\n", position + 1)
                    offset = start + position + 1 + max(column - 1, 0)
                newlines += chunk.count("\n")
            if offset is not None and offset < length:
                target = (chunk, offset - start, list(events))
                break
            events.clear()
    finally:
        sys.setprofile(previous)
        chunks.close()
    if target is None:
        return None
    chunk, inside, produced = target
    # The first event handing back this very chunk is the innermost template that wrote it;
    # the last is the app's template itself.
    writers = [e for e in produced if e.text is chunk and e.macro_line is None]
    if not writers:
        return None
    outer, inner = writers[-1], writers[0]
    where = f"{_shown(outer.template)}:{_source_line(environment, outer, chunk, inside)}"
    output_line = chunk[:inside].rsplit("\n", 1)[-1] + chunk[inside:].split("\n", 1)[0]
    if inner.template is not outer.template:
        inner_line = _source_line(environment, inner, chunk, inside)
        return f"{where} (text from {_shown(inner.template)}:{inner_line}, included there)"
    macro = _macro_of(produced, output_line)
    if macro is not None and macro.macro_line is not None:
        body = _line_in_macro(environment, macro, output_line)
        return f"{where} (text from the macro at {_shown(macro.template)}:{macro.macro_line}" + (
            f", its line {body})" if body else ")"
        )
    return where


def _source(environment: Any, template: Any) -> str:
    return str(environment.loader.get_source(environment, template.name)[0])


def _source_line(environment: Any, event: Event, chunk: str, inside: int) -> int:
    """Literal text is found in the source at or after the line Jinja2 reports (which is the
    line of the tag before it); an expression's output is all on the expression's line."""
    source = _source(environment, event.template)
    line_start = 0
    for _ in range(event.line - 1):
        line_start = source.find("\n", line_start) + 1
    found = source.find(chunk, line_start)
    if chunk and found >= 0:
        return source.count("\n", 0, found) + 1 + chunk.count("\n", 0, inside)
    # Not literal: an expression's value, or text Jinja2 folded with a constant expression
    # (`{{ "x" }}`); the first template line from here that can write its first line.
    first, newline, rest = chunk.partition("\n")
    lines = source.split("\n")
    for number in range(event.line, min(len(lines), event.line + 50) + 1):
        if _writes(lines[number - 1], first):
            # Literal text after it (folded into the same chunk) keeps its own lines.
            following = "\n".join(lines[number:])
            if newline and following.startswith(rest):
                return number + chunk.count("\n", 0, inside)
            return number
    return event.line


def _writes(template_line: str, output_line: str) -> bool:
    """Whether a template line, its tags taken as wildcards, can render as `output_line`."""
    text = template_line.strip()
    if not text or _TAG.fullmatch(text) or not output_line.strip():
        return False
    pattern = ".*".join(re.escape(part.strip()) for part in _TAG.split(text))
    return re.fullmatch(pattern, output_line.strip()) is not None


def _macro_of(events: list[Event], output_line: str) -> Event | None:
    wanted = output_line.strip()
    for event in reversed(events):
        if event.macro_line is not None and wanted in (
            part.strip() for part in event.text.split("\n")
        ):
            return event
    return None


def _line_in_macro(environment: Any, macro: Event, output_line: str) -> int | None:
    """The line of the macro's body whose text, its tags taken as wildcards, is the output line."""
    lines = _source(environment, macro.template).split("\n")
    wanted = output_line.strip()
    for number in range(macro.macro_line or 1, len(lines) + 1):
        if "endmacro" in lines[number - 1]:
            break
        if _writes(lines[number - 1], wanted):
            return number
    return None


def _shown(template: Any) -> str:
    return str(template.filename or template.name)
