"""Reading YAML the way Kubernetes tooling does (go-yaml v2 via sigs.k8s.io/yaml), on libyaml.

PyYAML's YAML 1.1 resolvers differ from go-yaml's in ways that change meaning: PyYAML reads
`12:30` as the sexagesimal int 750, `2024-01-01` as a date and `=` as an error, and reads
`y`, `1e3` and `0o17` as strings. kubectl and Argo CD read them as the strings "12:30",
"2024-01-01" and "=", the bool true, the float 1000.0 and the int 15. tagpin follows Kubernetes,
so a plain-YAML app means the same thing here as it does to `kubectl apply`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import yaml

from cmp.errors import SourceError

_CLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

# go-yaml v2's bool set is YAML 1.1's, including y/n (PyYAML leaves those out).
BOOL_TRUE = frozenset(["y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON"])
BOOL_FALSE = frozenset(["n", "N", "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF"])
BOOL_PATTERN = re.compile(
    r"^(?:y|Y|yes|Yes|YES|n|N|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF)$"
)
NULL_PATTERN = re.compile(r"^(?:~|null|Null|NULL|)$")
# strconv.ParseInt(s, 0, 64) after go-yaml strips underscores: decimal, 0x, 0o, 0b, 0-octal.
INT_PATTERN = re.compile(
    r"^[-+]?(?:0[bB][01_]+|0[oO][0-7_]+|0[xX][0-9a-fA-F_]+|0[0-7_]*|[1-9][0-9_]*)$"
)
# go-yaml's yamlStyleFloat plus its .inf/.nan spellings.
FLOAT_PATTERN = re.compile(
    r"^(?:[-+]?(?:\.[0-9_]+|[0-9][0-9_]*(?:\.[0-9_]*)?)(?:[eE][-+]?[0-9]+)?"
    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
)
MERGE_PATTERN = re.compile(r"^(?:<<)$")
FIRST_CHARS_NUMERIC = "-+0123456789."
FIRST_CHARS_BOOL = "yYnNtTfFoO"
FIRST_CHARS_NULL = ("~", "n", "N", "")  # "" is PyYAML's key for the empty scalar

Resolvers = dict[str | None, list[tuple[str, re.Pattern[str]]]]


def resolver_table(entries: Sequence[tuple[str, re.Pattern[str], Sequence[str]]]) -> Resolvers:
    """PyYAML's implicit-resolver table: (tag, pattern) pairs by a scalar's first character."""
    resolvers: Resolvers = {}
    for tag, pattern, first in entries:
        for ch in first:
            resolvers.setdefault(ch, []).append((tag, pattern))
    return resolvers


def _resolvers() -> Resolvers:
    return resolver_table([
        ("tag:yaml.org,2002:bool", BOOL_PATTERN, FIRST_CHARS_BOOL),
        ("tag:yaml.org,2002:int", INT_PATTERN, FIRST_CHARS_NUMERIC),
        ("tag:yaml.org,2002:float", FLOAT_PATTERN, FIRST_CHARS_NUMERIC),
        ("tag:yaml.org,2002:null", NULL_PATTERN, FIRST_CHARS_NULL),
        ("tag:yaml.org,2002:merge", MERGE_PATTERN, "<"),
    ])


class KubeLoader(_CLoader):  # type: ignore[misc,valid-type]
    """libyaml parser + Kubernetes' scalar rules + duplicate-key detection."""

    yaml_implicit_resolvers = _resolvers()

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[str, Any]:
        # Keys become strings as sigs.k8s.io/yaml makes them (`1` → "1", `y` → "true"), so
        # templates and the emitter see what Kubernetes sees. go-yaml refuses duplicate keys
        # ("key already set in map"), and so does tagpin, including keys that only collide once
        # stringified. Keys brought in by a merge (<<) may be overridden by explicit ones.
        keys = [k.value for k, _ in node.value
                if k.tag == "tag:yaml.org,2002:str" and isinstance(k, yaml.ScalarNode)]
        if len(keys) == len(node.value) and len(set(keys)) == len(keys):
            # The common case: plain string keys, all different. Nothing to merge or convert.
            return {key: self.construct_object(value_node, deep=deep)
                    for key, (_, value_node) in zip(keys, node.value, strict=True)}
        seen: dict[str, Any] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                text = key if isinstance(key, str) else key_text(key)
            except TypeError:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark,
                    "found a key that is a mapping or a list", key_node.start_mark,
                ) from None
            if text in seen:
                raise DuplicateKeyError(seen[text], key, key_node.start_mark)
            seen[text] = key
        self.flatten_mapping(node)
        mapping: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=deep)
            text = key if isinstance(key, str) else key_text(key)
            mapping[text] = self.construct_object(value_node, deep=deep)
        return mapping

    def construct_yaml_bool(self, node: yaml.ScalarNode) -> bool:
        return self.construct_scalar(node) in BOOL_TRUE

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int | str:
        text = str(self.construct_scalar(node))
        digits = text.replace("_", "").lstrip("+-")
        sign = -1 if text.startswith("-") else 1
        try:
            if len(digits) > 1 and digits[0] == "0" and digits[1].isdigit():
                return sign * int(digits, 8)
            return sign * int(digits, 0)
        except ValueError:  # `0x_`: go-yaml strips `_`, fails to parse, and keeps the string
            return text

    def construct_yaml_float(self, node: yaml.ScalarNode) -> float | str:
        original = str(self.construct_scalar(node))
        text = original.replace("_", "").lower()
        if text.endswith(".inf"):
            return float("-inf") if text.startswith("-") else float("inf")
        if text == ".nan":
            return float("nan")
        try:
            return float(text)
        except ValueError:  # `._`: not a number to go-yaml either
            return original

    def construct_undefined(self, node: yaml.Node) -> Any:
        raise yaml.constructor.ConstructorError(
            None, None, f"unsupported YAML tag {node.tag!r}", node.start_mark
        )


KubeLoader.add_constructor("tag:yaml.org,2002:bool", KubeLoader.construct_yaml_bool)
KubeLoader.add_constructor("tag:yaml.org,2002:int", KubeLoader.construct_yaml_int)
KubeLoader.add_constructor("tag:yaml.org,2002:float", KubeLoader.construct_yaml_float)
KubeLoader.add_constructor(None, KubeLoader.construct_undefined)
# Explicit timestamps/binary/sets/omaps have no JSON form; Kubernetes would reject them.
for _tag in ("timestamp", "binary", "set", "omap", "pairs"):
    KubeLoader.add_constructor(f"tag:yaml.org,2002:{_tag}", KubeLoader.construct_undefined)


class DuplicateKeyError(yaml.MarkedYAMLError):
    def __init__(self, first: Any, second: Any, mark: yaml.Mark) -> None:
        if first == second and type(first) is type(second):
            problem = f"duplicate key {first!r} in a mapping"
        else:
            problem = (f"keys {_shown(first)} and {_shown(second)} both mean "
                       f"{key_text(second)!r} in Kubernetes; quote or rename one")
        super().__init__(problem=problem, problem_mark=mark)


def _shown(key: Any) -> str:
    return repr(key) if isinstance(key, str) else key_text(key)


def key_text(key: Any) -> str:
    """A mapping key as sigs.k8s.io/yaml turns it into a JSON object key."""
    if isinstance(key, str):
        return key
    if isinstance(key, bool):
        return "true" if key else "false"
    if key is None:
        return "null"
    if isinstance(key, float):
        return repr(key) if math.isfinite(key) else str(key)
    if isinstance(key, int):
        return str(key)
    raise TypeError(f"unsupported key type {type(key).__name__}")


def load_all(text: str, source: str, *, max_nodes: int) -> list[tuple[int, Any]]:
    """Parse a YAML stream into (start line, document) pairs; errors name `source` and line.

    `max_nodes` bounds the size of each document, aliases expanded: composing a node costs
    about 300 bytes, so a plain 8 MiB list would otherwise take gigabytes before any check.
    """
    _check_plain_size(text, source, max_nodes)
    loader = KubeLoader(text)
    may_alias = "*" in text  # no alias without a `*`: skip the expansion walk
    documents: list[tuple[int, Any]] = []
    try:
        while loader.check_node():
            node = loader.get_node()
            line = node.start_mark.line + 1 if node is not None else 1
            if may_alias:
                _check_expansion(node, source, line, max_nodes)
            documents.append((line, loader.construct_document(node)))
    except yaml.MarkedYAMLError as exc:
        raise SourceError(yaml_problem(source, exc)) from None
    except yaml.reader.ReaderError as exc:  # control characters: name the line, not an offset
        line = text[: exc.position].count("\n") + 1
        raise SourceError(
            f"{source}:{line}: invalid YAML: character {_codepoint(exc.character)} is not allowed "
            "(control characters must be escaped in a double-quoted string)"
        ) from None
    except yaml.YAMLError as exc:
        raise SourceError(f"{source}: invalid YAML: {exc}") from None
    finally:
        loader.dispose()
    return documents


def load_one(text: str, source: str, *, max_nodes: int) -> Any:
    """Parse a file holding at most one YAML document (values files, tagpin.yaml)."""
    documents = load_all(text, source, max_nodes=max_nodes)
    if len(documents) > 1:
        raise SourceError(f"{source}:{documents[1][0]}: expected one YAML document, found several")
    return documents[0][1] if documents else None


def _codepoint(character: object) -> str:
    # libyaml reports the code point as an int, PyYAML's pure reader as a one-character str.
    if isinstance(character, str) and len(character) == 1:
        return f"U+{ord(character):04X}"
    return f"U+{character:04X}" if isinstance(character, int) else repr(character)


def yaml_problem(source: str, exc: yaml.MarkedYAMLError) -> str:
    mark = exc.problem_mark or exc.context_mark
    where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
    problem = exc.problem or exc.context or "invalid YAML"
    context = f" ({exc.context})" if exc.context and exc.problem else ""
    return f"{where}: invalid YAML: {problem}{context}"


# A document marker: `---` or `...` at the start of a line, then a space or the line's end.
_DOCUMENT_MARKER = re.compile(r"^(?:---|\.\.\.)(?=[ \t\r\n]|$)", re.MULTILINE)
_NODE_EVENTS = (yaml.ScalarEvent, yaml.SequenceStartEvent, yaml.MappingStartEvent,
                yaml.AliasEvent)


def _check_plain_size(text: str, source: str, max_nodes: int) -> None:
    """Refuse a document of more than `max_nodes` nodes before composing it. A node takes at
    least one character, so only a document longer than `max_nodes` characters (found by one
    regex scan) can be too large; only then are its parser events counted."""
    if len(text) <= max_nodes:
        return
    starts = [0, *(m.start() for m in _DOCUMENT_MARKER.finditer(text)), len(text)]
    if all(end - start <= max_nodes for start, end in zip(starts, starts[1:], strict=False)):
        return
    parser = KubeLoader(text)
    nodes, line = 0, 0
    try:
        while parser.check_event():
            event = parser.get_event()
            if isinstance(event, yaml.DocumentStartEvent):
                nodes = 0
            elif isinstance(event, _NODE_EVENTS):
                nodes += 1
                if nodes == 1 and event.start_mark is not None:  # as load_all names it
                    line = event.start_mark.line + 1
                if nodes > max_nodes:
                    raise SourceError(
                        f"{source}:{line}: YAML document has more than {max_nodes} nodes "
                        "(TAGPIN_MAX_YAML_NODES); refusing it")
    except yaml.YAMLError:
        return  # malformed: composing it reports the error with its line
    finally:
        parser.dispose()


def _check_expansion(node: yaml.Node | None, source: str, line: int, max_nodes: int) -> None:
    """Count nodes as aliases would expand them, without expanding (memoised by identity)."""
    if node is None:
        return
    sizes: dict[int, int] = {}

    def size(n: yaml.Node) -> int:
        cached = sizes.get(id(n))
        if cached is not None:
            return cached
        sizes[id(n)] = 1  # a recursive alias counts once; go-yaml rejects those anyway
        if isinstance(n, yaml.MappingNode):
            total = 1 + sum(size(k) + size(v) for k, v in n.value)
        elif isinstance(n, yaml.SequenceNode):
            total = 1 + sum(size(item) for item in n.value)
        else:
            total = 1
        sizes[id(n)] = total
        return total

    try:
        total = size(node)
    except RecursionError:
        raise SourceError(f"{source}:{line}: YAML nested too deeply") from None
    if total > max_nodes:
        raise SourceError(
            f"{source}:{line}: YAML document expands to {total} nodes through aliases "
            f"(limit {max_nodes}, TAGPIN_MAX_YAML_NODES); refusing it (an alias bomb?)"
        )
