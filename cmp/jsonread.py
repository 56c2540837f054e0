"""JSON from outside tagpin, read under explicit bounds: the Kubernetes API's answers, the
records tagpin keeps in annotations, `tagpin pin`'s input, webhook bodies, values schemas,
credential plugins' output.

Python's json module recurses once per nesting level and raises RecursionError (no ValueError)
near 1,000 levels, and what tagpin does with a value afterwards (emit it, check it against a
schema) recurses too. So every text is first measured, linearly and outside strings, and a
value nested deeper than MAX_NESTING is refused with the line where it goes too deep, before it
is decoded. Decoding is strict RFC 8259, and refuses what Argo CD and Kubernetes cannot carry:
duplicate keys, NaN and Infinity, numbers beyond a float's range, lone UTF-16 surrogates.

Standard library only: every render that reads its Application imports this.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from itertools import accumulate
from typing import Any, NamedTuple

# The deepest nesting of arrays and objects (YAML's sequences and mappings too, see
# cmp/source/yamlread.py) that tagpin reads. Real manifests stay far below it (a CRD's schema
# reaches ~40); the emitter and the schema checks recurse a few frames per level, and Python
# allows 1,000 frames in all.
MAX_NESTING = 256
MAX_INT_DIGITS = 4300  # Python's own limit for int("…") (sys.int_info.default_max_str_digits)

_STRING = r'"[^"\\]*(?:\\.[^"\\]*)*"'
_STRINGS = re.compile(_STRING)
_NOT_BRACKETS = re.compile(r"[^\[\]{}]+")
_BRACKET_TOKENS = re.compile(rf"{_STRING}|[\[\]{{}}]")
_STRUCTURE_TOKENS = re.compile(rf"{_STRING}|[\[\]{{}},]")
_NODE_TOKENS = re.compile(rf"{_STRING}|[\[{{]|[-+0-9.eE]+|true|false|null")
_WHITESPACE = re.compile(r"[ \t\n\r]*")
_STEPS = {"[": 1, "{": 1, "]": -1, "}": -1}
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")


class JsonError(ValueError):
    """Why a text is not JSON tagpin reads; `line` (1-based) where it is known."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}" if self.line else self.message


class TooManyNodes(JsonError):
    """A value larger than `max_nodes` (load_stream)."""


def loads(text: str | bytes, *, max_bytes: int | None = None, max_depth: int = MAX_NESTING) -> Any:
    """Exactly one JSON value; JsonError says what is wrong and where."""
    text = _text(text, max_bytes)
    values = load_stream(text, max_depth=max_depth)
    if not values:
        raise JsonError("no JSON value", 1)
    if len(values) > 1:
        raise JsonError("more than one JSON value", values[1][0])
    return values[0][1]


def load_stream(
    text: str, *, max_depth: int = MAX_NESTING, max_nodes: int | None = None
) -> list[tuple[int, Any]]:
    """Every JSON value in a row (`kubectl get -o json`, `jq -c`), with the line each starts on.
    `max_nodes` bounds each value's size (keys, values and containers counted), as
    TAGPIN_MAX_YAML_NODES bounds a YAML document's."""
    _check_depth(text, max_depth)
    values: list[tuple[int, Any]] = []
    decoder = _StrictDecoder()
    position, line, counted = 0, 1, 0
    while True:
        position = _skip_whitespace(text, position)
        if position >= len(text):
            return values
        line += text.count("\n", counted, position)  # only the text since the last value
        counted = position
        decoder.flagged = False
        try:
            value, end = decoder.raw_decode(text, position)
        except json.JSONDecodeError as error:
            raise JsonError(error.msg, error.lineno) from None
        except JsonError as error:  # from a hook: a duplicate key, a number too long
            raise JsonError(error.message, line) from None
        if max_nodes is not None and end - position > max_nodes:
            nodes = _NODE_TOKENS.subn("", text[position:end])[1]
            if nodes > max_nodes:
                raise TooManyNodes(f"the value has more than {max_nodes} nodes", line)
        if decoder.flagged or _SURROGATE_ESCAPE.search(text, position, end):
            problem = _first_problem(value)
            if problem is not None:
                raise JsonError(problem, line)
        values.append((line, value))
        position = end


class Skipped(NamedTuple):
    """An item of a list left out: where it was, what could be read of its metadata, why."""

    position: int  # in the list
    metadata: dict[str, Any]
    problem: str

    def describe(self, namespace: str) -> str:
        """`namespace/name` when the name could be read, else the item's place in the list."""
        name = self.metadata.get("name")
        return (
            f"{namespace}/{name}" if isinstance(name, str) else f"{namespace} item {self.position}"
        )


def load_list(
    text: str | bytes, *, max_bytes: int | None = None, max_depth: int = MAX_NESTING
) -> tuple[dict[str, Any], list[Skipped]]:
    """A Kubernetes list (`{"metadata": …, "items": [...]}`), decoded item by item: an item
    nested deeper than `max_depth` is left out of `items` and returned as Skipped, so one bad
    object never costs the others."""
    text = _text(text, max_bytes)
    skipped: list[Skipped] = []
    try:
        _check_depth(text, max_depth + 2)  # an item is two levels down: list, `items`
    except JsonError:
        text, skipped = _without_deep_items(text, max_depth)
    document = loads(text, max_depth=max_depth + 2)
    if not isinstance(document, dict) or not isinstance(document.get("items", []), list):
        raise JsonError("not a list object with an `items` array")
    if skipped:  # each left a `null` in its place
        gone = {item.position for item in skipped}
        document["items"] = [v for i, v in enumerate(document["items"]) if i not in gone]
    return document, skipped


# --- depth ----------------------------------------------------------------------------------


def _check_depth(text: str, max_depth: int) -> None:
    """JsonError at the first bracket nested deeper than `max_depth`. Linear: two regex passes
    in C decide; only a text that is too deep is walked bracket by bracket for the line."""
    if text.count("[") + text.count("{") <= max_depth:
        return
    brackets = _NOT_BRACKETS.sub("", _STRINGS.sub("", text))
    if max(accumulate(map(_STEPS.__getitem__, brackets)), default=0) <= max_depth:
        return
    for depth, position in _brackets(text):
        if depth > max_depth:
            line = text.count("\n", 0, position) + 1
            raise JsonError(f"nested too deeply (more than {max_depth} levels)", line)


def _brackets(text: str) -> Iterator[tuple[int, int]]:
    """(depth after it, position) of every bracket outside strings; an opening bracket at the
    top is depth 1, the closing one that ends it depth 0."""
    depth = 0
    for match in _BRACKET_TOKENS.finditer(text):
        character = text[match.start()]
        if character in "[{":
            depth += 1
        elif character in "]}":
            depth -= 1
        else:
            continue
        yield depth, match.start()


def _without_deep_items(text: str, max_depth: int) -> tuple[str, list[Skipped]]:
    """`text` with every element of the top object's `items` array that nests deeper than
    `max_depth` replaced by `null`, and those elements as Skipped."""
    depth, key, in_items, position = 0, "", False, 0
    start, deepest = 0, 0
    bad: list[tuple[int, int, int]] = []  # (position in `items`, start, end)
    for match in _STRUCTURE_TOKENS.finditer(text):
        character = text[match.start()]
        if character == '"':
            if depth == 1:  # a key or a value of the top object; `"items":[` ends with the key
                key = match.group()
        elif character == ",":
            if in_items and depth == 2:
                position += 1
        elif character in "[{":
            depth += 1
            if depth == 2:
                in_items, position = character == "[" and key == '"items"', 0
            elif depth == 3 and in_items:
                start, deepest = match.start(), 0
            deepest = max(deepest, depth - 2)
        else:  # closing the container at level `depth`
            if in_items and depth == 3 and deepest > max_depth:
                bad.append((position, start, match.end()))
            in_items = in_items and depth != 2
            depth -= 1
    pieces, skipped, cursor = [], [], 0
    for position, begin, end in bad:
        pieces += [text[cursor:begin], "null"]
        cursor = end
        problem = f"nested too deeply (more than {max_depth} levels)"
        skipped.append(Skipped(position, _metadata(text[begin:end]), problem))
    pieces.append(text[cursor:])
    return "".join(pieces), skipped


def _metadata(item: str, keep: int = 3) -> dict[str, Any]:
    """What can be read of a too-deep object's `metadata`: anything deeper than `keep` levels
    becomes null, so the name and namespace survive for messages."""
    pieces, cursor, cut_from = [], 0, None
    for depth, position in _brackets(item):
        if item[position] in "[{" and depth == keep + 1:
            cut_from = position
        elif cut_from is not None and depth == keep:
            pieces += [item[cursor:cut_from], "null"]
            cursor, cut_from = position + 1, None
    pieces.append(item[cursor:])
    try:
        skeleton = loads("".join(pieces), max_depth=keep)
    except JsonError:
        return {}
    metadata = skeleton.get("metadata") if isinstance(skeleton, dict) else None
    return metadata if isinstance(metadata, dict) else {}


# --- strict decoding ------------------------------------------------------------------------


class _Refused:
    """Stands in for a value the decoder must refuse; found with its path afterwards."""

    __slots__ = ("problem",)

    def __init__(self, problem: str) -> None:
        self.problem = problem


class _StrictDecoder(json.JSONDecoder):
    def __init__(self) -> None:
        super().__init__(
            object_pairs_hook=_unique_keys,
            parse_float=self._float,
            parse_int=self._int,
            parse_constant=self._constant,
        )
        self.flagged = False

    def _refuse(self, problem: str) -> _Refused:
        self.flagged = True
        return _Refused(problem)

    def _float(self, text: str) -> float | _Refused:
        value = float(text)
        if value in (float("inf"), float("-inf")):
            return self._refuse(f"the number {_clip(text)} is out of range (beyond a float)")
        return value

    def _int(self, text: str) -> int | _Refused:
        if len(text) > MAX_INT_DIGITS:
            return self._refuse(f"the number {_clip(text)} has more than {MAX_INT_DIGITS} digits")
        value = int(text)
        try:
            float(value)  # Kubernetes reads every JSON number as at most a float64
        except OverflowError:
            return self._refuse(f"the number {_clip(text)} is out of range (beyond a float)")
        return value

    def _constant(self, text: str) -> _Refused:
        return self._refuse(f"{text} is not JSON (Kubernetes has no NaN or Infinity)")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise JsonError(f"duplicate key {_clip(key)!r}")
        result[key] = value
    return result


def _first_problem(value: Any) -> str | None:
    """`path: problem` for the first refused number or lone surrogate in `value` (depth-first,
    iterative: the value's depth is already bounded, but its width is not)."""
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(value, ())]
    while stack:
        current, path = stack.pop()
        problem = None
        if isinstance(current, _Refused):
            problem = current.problem
        elif isinstance(current, str) and _SURROGATE.search(current):
            problem = "a lone UTF-16 surrogate (\\ud800-\\udfff) is not a character"
        elif isinstance(current, dict):
            for key in current:
                if _SURROGATE.search(key):
                    return f"{_path(path)}: key {_clip(key)!r} holds a lone UTF-16 surrogate"
            stack.extend((item, (*path, key)) for key, item in reversed(current.items()))
        elif isinstance(current, list):
            stack.extend((item, (*path, i)) for i, item in reversed(list(enumerate(current))))
        if problem is not None:
            return f"{_path(path)}: {problem}"
    return None


def _path(steps: tuple[str | int, ...]) -> str:
    """`spec.containers[0].image`, as kubectl explain writes paths; `(top level)` for none."""
    text = ""
    for step in steps:
        if isinstance(step, int):
            text += f"[{step}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", step):
            text += f".{step}" if text else step
        else:
            text += f"[{json.dumps(_clip(step))}]"
    return text or "(top level)"


def _clip(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def _skip_whitespace(text: str, position: int) -> int:
    match = _WHITESPACE.match(text, position)
    return match.end() if match else position


def _text(text: str | bytes, max_bytes: int | None) -> str:
    if max_bytes is not None and len(text) > max_bytes:
        raise JsonError(f"larger than {max_bytes} bytes")
    if isinstance(text, bytes):
        try:
            return text.decode("utf-8")
        except UnicodeDecodeError as error:
            raise JsonError(f"not UTF-8 (byte {error.start})") from None
    return text
