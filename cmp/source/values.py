"""Layered values: deep-merged mappings (lists replace) and helm-style `--set` keys."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping
from typing import Any

from cmp.errors import ConfigError
from cmp.source.yamlread import Misread

# Deeper than any real chart's values; a deeper key is an attack on the recursive merge and
# copy below (a 3,000-deep key used to end in "a bug in tagpin").
MAX_KEY_DEPTH = 100
_INT = re.compile(r"^-?(?:0|[1-9][0-9]*)$")


def merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Deep merge: mappings merge key by key, anything else (lists included) replaces."""
    merged = dict(base)
    for key, value in override.items():
        current = merged.get(key)
        if isinstance(current, Mapping) and isinstance(value, Mapping):
            merged[key] = merge(current, value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def layer(layers: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for values in layers:
        result = merge(result, values)
    return result


def typed(text: str) -> Any:
    """helm --set typing: true/false, null and plain integers; everything else stays a string
    (so `image.tag=1.10` stays "1.10", never the float 1.1)."""
    if text in ("true", "false"):
        return text == "true"
    if text == "null":
        return None
    if _INT.match(text) and len(text.lstrip("-")) < 19:
        return int(text)
    return text


def misread_assignments(assignments: Mapping[str, str], where: str) -> list[Misread]:
    """The assignments `typed` makes booleans: `image.tag=true` prints as True."""
    found = []
    for dotted in sorted(assignments):
        value = typed(assignments[dotted])
        if value is not None and str(value) != assignments[dotted]:
            found.append(Misread(where, 0, dotted, assignments[dotted], value))
    return found


def split_key(dotted: str) -> list[str | int]:
    """`a.b[0].c` → ["a", "b", 0, "c"]; `\\.` keeps a dot inside a key (annotation names)."""
    parts: list[str] = []
    current = ""
    escaped = False
    for ch in dotted:
        if escaped:
            current += ch
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == ".":
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    path: list[str | int] = []
    for part in parts:
        key, indices = _indices(part)
        if not key:
            raise ValueError("empty key segment")
        path.append(key)
        path.extend(indices)
        if len(path) > MAX_KEY_DEPTH:
            raise ValueError(f"nests deeper than {MAX_KEY_DEPTH} levels")
    return path


def _indices(part: str) -> tuple[str, list[int]]:
    """`env[0][1]` → ("env", [0, 1]), scanning from the end once (linear in the part)."""
    indices: list[int] = []
    while part.endswith("]"):
        opening = part.rfind("[")
        digits = part[opening + 1 : -1]
        if opening < 0 or not (digits.isascii() and digits.isdigit()):
            break
        if len(digits) > 18:
            raise ValueError(f"index {digits[:20]}... is too large")
        indices.append(int(digits))
        part = part[:opening]
    indices.reverse()
    return part, indices


def set_dotted(
    values: dict[str, Any], assignments: Mapping[str, str], where: str
) -> dict[str, Any]:
    """Apply `{"image.tag": "v2"}` style assignments in key order; errors name `where`."""
    result = copy.deepcopy(values)
    problems: list[str] = []
    for dotted in sorted(assignments):
        try:
            _assign(result, split_key(dotted), typed(assignments[dotted]))
        except ValueError as exc:
            problems.append(f"{where}: key {_shown(dotted)}: {exc}")
    if problems:
        raise ConfigError(*problems)
    return result


def _shown(dotted: str) -> str:
    return repr(dotted) if len(dotted) <= 80 else f"{dotted[:60]!r}... ({len(dotted)} characters)"


def _assign(target: Any, path: list[str | int], value: Any) -> None:
    for position, step in enumerate(path):
        last = position == len(path) - 1
        following = None if last else path[position + 1]
        empty: Any = [] if isinstance(following, int) else {}
        if isinstance(step, int):
            if not isinstance(target, list):
                raise ValueError("indexes a value that is not a list")
            if step > len(target):
                raise ValueError(f"index {step} skips past the end of a list of {len(target)}")
            if step == len(target):
                target.append(empty)
            if last:
                target[step] = value
                return
            if not isinstance(target[step], (dict, list)):
                target[step] = empty
            target = target[step]
        else:
            if not isinstance(target, dict):
                raise ValueError(f"{step!r} is set below a value that is not a mapping")
            if last:
                target[step] = value
                return
            if not isinstance(target.get(step), (dict, list)):
                target[step] = empty
            target = target[step]
