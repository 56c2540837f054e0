"""Canonical YAML out: the same objects always give the same bytes.

The canonical form (documented in docs/reference.md):
- every document starts with `---`; the stream ends with a newline;
- in every mapping `apiVersion`, `kind`, `metadata` come first, then the other keys sorted by
  Unicode code point (never by locale); non-string keys become strings as Kubernetes does;
- a string is quoted whenever a YAML 1.1 or 1.2 reader could take it for anything else
  (`yes`, `NO`, `on`, `y`, `0755`, `1.10`, `1e3`, `0o17`, `~`, `2024-01-01`, `12:30`, `=`, `<<`);
- strings with line breaks are block literals (`|`), unless they cannot be (trailing spaces,
  control characters), in which case libyaml double-quotes them;
- no anchors or aliases, no line folding, UTF-8 text as-is, two-space indentation, and
  sequence items at their key's indentation (`key:\n- item`, as kubectl writes them).

libyaml's C emitter does the writing; the Python part is limited to key order and scalar style.
"""

from __future__ import annotations

import functools
import json
import math
import operator
import re
from collections.abc import Iterable, Sequence
from typing import Any

import yaml

from cmp.source.yamlscalars import (
    BOOL,
    INT64_MIN,
    MERGE,
    NULL,
    STR,
    UINT64_MAX,
    key_text,
    looks_like_timestamp,
    resolve_plain,
)

_CDumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

FIRST_KEYS = {"apiVersion": 0, "kind": 1, "metadata": 2}
NO_WRAP = 2**31 - 1

# Strings that a YAML 1.1 reader (PyYAML) or a YAML 1.2 reader (ruamel.yaml) could resolve to
# something else; go-yaml v2 and v3 are asked through resolve_plain (CanonicalDumper.resolve).
# A string that any reader could misread is quoted, which is what makes every reader agree on
# tagpin's output and a render of it a fixed point.
_QUOTE_PATTERNS: list[tuple[str, re.Pattern[str], Sequence[str]]] = [
    (
        BOOL,
        re.compile(
            r"^(?:y|Y|yes|Yes|YES|n|N|no|No|NO|true|True|TRUE|false|False|FALSE"
            r"|on|On|ON|off|Off|OFF)$"
        ),
        "yYnNtTfFoO",
    ),
    (NULL, re.compile(r"^(?:~|null|Null|NULL|)$"), ("~", "n", "N", "")),
    (
        "tag:yaml.org,2002:int",
        re.compile(
            r"^[-+]?(?:0[bB][01_]+|0[oO][0-7_]+|0[xX][0-9a-fA-F_]+|[0-9][0-9_]*"
            r"|[0-9][0-9_]*(?::[0-5]?[0-9])+)$"
        ),
        "-+0123456789",
    ),
    # ruamel.yaml's YAML 1.2 numbers, which also take `0o`-less octals and bare underscores.
    (
        "tag:yaml.org,2002:int",
        re.compile(r"^(?:[-+]?0b[0-1_]+|[-+]?0o?[0-7_]+|[-+]?[0-9_]+|[-+]?0x[0-9a-fA-F_]+)$"),
        "-+0123456789",
    ),
    (
        "tag:yaml.org,2002:float",
        re.compile(
            r"^(?:[-+]?[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?"
            r"|[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+|[-+]?\.[0-9_]+(?:[eE][-+][0-9]+)?)$"
        ),
        "-+0123456789.",
    ),
    (
        "tag:yaml.org,2002:float",
        re.compile(
            r"^(?:[-+]?(?:\.[0-9_]+|[0-9][0-9_]*(?:\.[0-9_]*)?)(?:[eE][-+]?[0-9]+)?"
            r"|[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*"
            r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
        ),
        "-+0123456789.",
    ),
    # The `yaml` npm package in YAML 1.1 mode (above: sexagesimal numbers may start with 0,
    # `0:30`, `+07:00`) reads a float with no digit at all: `.`, `-.`, `e5` (as NaN).
    (
        "tag:yaml.org,2002:float",
        re.compile(
            r"^(?:[-+]?(?:[0-9][0-9_]*)?(?:\.[0-9_]*)?[eE][-+]?[0-9]+"
            r"|[-+]?(?:[0-9][0-9_]*)?\.[0-9_]*)$"
        ),
        "-+0123456789.eE",
    ),
    (
        "tag:yaml.org,2002:timestamp",
        re.compile(
            r"^(?:[0-9][0-9][0-9][0-9]-[0-9][0-9]?-[0-9][0-9]?"
            r"(?:(?:[Tt]|[ \t]+)[0-9][0-9]?:[0-9][0-9]:[0-9][0-9](?:\.[0-9]*)?"
            r"(?:[ \t]*(?:Z|[-+][0-9][0-9]?(?::[0-9][0-9])?))?)?)$"
        ),
        "0123456789",
    ),
    (MERGE, re.compile(r"^(?:<<)$"), "<"),
    ("tag:yaml.org,2002:value", re.compile(r"^(?:=)$"), "="),
]


# Characters YAML 1.1 readers take for line breaks (YAML 1.2 readers do not) and the carriage
# return: written raw in a block or single-quoted scalar they change the value read back, so
# strings holding them are double-quoted, where libyaml escapes them.
_ESCAPED_BREAKS = re.compile("[\r\x85\u2028\u2029]")
# Text whose every line is blank or starts with `#`: as a block scalar that a template places
# less indented than it was written (`key: {{ v | to_yaml }}` under a nested key) its lines read
# as comments, the value silently '' instead of an error; double-quoted, it reads the same
# wherever it is put (ToYamlDumper).
_COMMENT_LINES = re.compile(r"(?:[ \t]*(?:#[^\n]*)?\n)*[ \t]*(?:#[^\n]*)?")


def _resolver_table(
    entries: Sequence[tuple[str, re.Pattern[str], Sequence[str]]],
) -> dict[str | None, list[tuple[str, re.Pattern[str]]]]:
    """PyYAML's implicit-resolver table: (tag, pattern) pairs by a scalar's first character."""
    resolvers: dict[str | None, list[tuple[str, re.Pattern[str]]]] = {}
    for tag, pattern, first in entries:
        for ch in first:
            resolvers.setdefault(ch, []).append((tag, pattern))
    return resolvers


_QUOTE_RESOLVERS = _resolver_table(_QUOTE_PATTERNS)


# Plain text that no reader takes for anything but a string: a letter, `_` or `/` first, then
# only letters, digits and `_./-`, and none of YAML 1.1's words (bools, nulls) nor `e5`-like
# floats. Most keys and values in Kubernetes objects are such; for them the rule chain below
# would answer str after half a dozen dictionary and pattern lookups. A fast path only: every
# string it accepts, the chain reads as str too (tests/unit/source/test_emit_fast.py).
CERTAINLY_PLAIN = re.compile(
    r"(?!(?:y|Y|yes|Yes|YES|n|N|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF"
    r"|null|Null|NULL)\Z)(?![eE][-+]?[0-9])[A-Za-z_/][A-Za-z0-9_./-]*"
)


@functools.lru_cache(maxsize=4096)  # keys and many values repeat across objects
def _plain_tag(value: str) -> str:
    """What some reader could take plain `value` for: go-yaml v2, v3, then the patterns."""
    if CERTAINLY_PLAIN.fullmatch(value):
        return STR
    return plain_tag(value)


def plain_tag(value: str) -> str:
    """The full rule chain behind `_plain_tag` (which answers most strings without it)."""
    tag = resolve_plain(value)[0]
    if tag != STR:
        return str(tag)
    if resolve_plain(value, v3=True)[0] != STR or looks_like_timestamp(value):
        return "tag:yaml.org,2002:timestamp"
    for pattern_tag, pattern in _QUOTE_RESOLVERS.get(value[:1], []):
        if pattern.match(value):
            return pattern_tag
    return STR


@functools.lru_cache(maxsize=4096)
def _str_style(value: str) -> str | None:
    """How a string is written: plain (None) when every reader reads it back as this string,
    else single-quoted (libyaml double-quotes what single quotes cannot hold), `|` for text
    with line breaks, double-quoted for the breaks only some readers know."""
    if _ESCAPED_BREAKS.search(value):
        return '"'
    if "\n" in value:
        return "|"
    return None if _plain_tag(value) == STR else "'"


def _key(key: Any) -> str:
    # Only values built in templates reach here with keys the loader refuses (a null key, a
    # 65-bit integer): written as their text, quoted, so they read back as that text.
    try:
        return key_text(key)
    except TypeError:
        return "null" if key is None else str(key)


_MAP, _SEQ = "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"
_DEFAULT_TAGS = {yaml.ScalarNode: STR, yaml.SequenceNode: _SEQ, yaml.MappingNode: _MAP}
_ScalarNode, _SequenceNode, _MappingNode = yaml.ScalarNode, yaml.SequenceNode, yaml.MappingNode
_NO_PATHS: dict[Any, Any] = {}
_FIRST = operator.itemgetter(0)


class CanonicalDumper(_CDumper):  # type: ignore[misc,valid-type]
    """PyYAML's representer with the canonical rules, written by libyaml's C emitter.

    Strings, lists and dicts (nearly every node of a Kubernetes object) are turned into nodes
    here directly, each string with its style already decided; anything else goes through
    PyYAML's representer table. A string is written plain only when no reader could read the
    plain text as anything else; quoted otherwise, which is what makes every reader agree on
    tagpin's output and a render of it a fixed point."""

    yaml_implicit_resolvers = _QUOTE_RESOLVERS
    # False for text a template places itself (`to_yaml`); tagpin's own output indents right.
    comment_blocks = True
    # The C serializer calls these around every node it writes. No path resolvers are
    # registered, so C no-ops stand in for PyYAML's Python ones: two calls a node.
    descend_resolver = staticmethod(_NO_PATHS.get)
    ascend_resolver = staticmethod(tuple)

    def resolve(self, kind: type, value: Any, implicit: Any) -> str:
        # The serializer writes a scalar plain only when this gives back its own tag. A
        # string's style is already decided (_str_style); numbers, booleans and null are
        # written as text that every reader reads as what they are.
        if kind is _ScalarNode and implicit[0]:
            return _plain_tag(value)
        return _DEFAULT_TAGS[kind]

    def ignore_aliases(self, data: Any) -> bool:
        return True  # never emit anchors: every value is written out in full

    def represent_data(self, data: Any) -> yaml.Node:
        kind = data.__class__
        if kind is str:
            return self.represent_str_canonical(data)
        if kind is dict:
            return self.represent_mapping_canonical(data)
        if kind is list:
            return self.represent_list(data)
        node: yaml.Node = super().represent_data(data)  # other types, and subclasses
        return node

    def represent_mapping_canonical(self, data: dict[Any, Any]) -> yaml.MappingNode:
        items = [(key if key.__class__ is str else _key(key), value) for key, value in data.items()]
        # Sorted by code point, then apiVersion, kind, metadata (already in that order) first.
        items.sort(key=_FIRST)
        if "kind" in data or "apiVersion" in data or "metadata" in data:
            items = [item for item in items if item[0] in FIRST_KEYS] + [
                item for item in items if item[0] not in FIRST_KEYS
            ]
        represent = self.represent_data
        pairs = [
            (
                self.represent_str_canonical(key) if key.__class__ is str else represent(key),
                represent(value),
            )
            for key, value in items
        ]
        return _MappingNode(_MAP, pairs, None, None, False)

    def represent_list(self, data: list[Any]) -> yaml.SequenceNode:
        represent = self.represent_data
        return _SequenceNode(_SEQ, [represent(item) for item in data], None, None, False)

    def represent_str_canonical(self, data: str) -> yaml.ScalarNode:
        style = _str_style(data)
        if (
            style == "|"
            and not self.comment_blocks
            and "#" in data
            and _COMMENT_LINES.fullmatch(data)
        ):
            style = '"'
        return _ScalarNode(STR, data, None, None, style)

    def represent_float_canonical(self, data: float) -> yaml.ScalarNode:
        if data != data:
            text = ".nan"
        elif math.isinf(data):
            text = ".inf" if data > 0 else "-.inf"
        else:
            text = repr(data)  # shortest round-trip form, identical on every CPython 3.x
            if "e" in text and "." not in text.split("e")[0]:
                mantissa, exponent = text.split("e")
                text = f"{mantissa}.0e{exponent}"
        node: yaml.ScalarNode = self.represent_scalar("tag:yaml.org,2002:float", text)
        return node

    def represent_int_canonical(self, data: int) -> yaml.ScalarNode:
        if INT64_MIN <= data <= UINT64_MAX:
            node: yaml.ScalarNode = self.represent_scalar("tag:yaml.org,2002:int", str(data))
            return node
        # go-yaml reads a wider integer as a float, or, past float's range, as a string: write
        # what it reads, so that every reader agrees.
        try:
            return self.represent_float_canonical(float(data))
        except OverflowError:
            return self.represent_str_canonical(str(data))

    def represent_tuple(self, data: tuple[Any, ...]) -> yaml.SequenceNode:
        node: yaml.SequenceNode = self.represent_list(list(data))
        return node


CanonicalDumper.add_representer(dict, CanonicalDumper.represent_mapping_canonical)
CanonicalDumper.add_multi_representer(dict, CanonicalDumper.represent_mapping_canonical)
# Subclasses (a template's values know their path: cmp.source.context.TreeList); plain lists
# still take the exact-type entry first.
CanonicalDumper.add_multi_representer(list, CanonicalDumper.represent_list)
CanonicalDumper.add_representer(str, CanonicalDumper.represent_str_canonical)
CanonicalDumper.add_representer(float, CanonicalDumper.represent_float_canonical)
CanonicalDumper.add_representer(int, CanonicalDumper.represent_int_canonical)
CanonicalDumper.add_representer(tuple, CanonicalDumper.represent_tuple)


class ToYamlDumper(CanonicalDumper):
    """The `to_yaml` filter's: its text goes where the template puts it (docs/yaml.md)."""

    comment_blocks = False


_DUMP_OPTIONS: dict[str, Any] = {
    "Dumper": CanonicalDumper,
    "default_flow_style": False,
    "allow_unicode": True,
    "width": NO_WRAP,
    "indent": 2,
    "sort_keys": False,  # the mapping representer orders keys itself
    "line_break": "\n",
}


# What a double-quoted YAML scalar must not hold raw: DEL and the C1 controls (U+0085 is read as
# a line break), U+2028/U+2029 (line breaks to YAML 1.1 readers), the byte order mark, and the
# non-characters U+FFFE/U+FFFF. `\\uXXXX` escapes them in both YAML and JSON.
_UNSAFE_QUOTED = re.compile("[\x7f-\x9f\u2028\u2029\ufeff\ufffe\uffff]")


def quote_scalar(value: Any) -> str:
    """`value` as a double-quoted scalar that every YAML reader (and JSON) reads back as the
    same string (the `quote` template filter)."""
    text = json.dumps(str(value), ensure_ascii=False)
    return _UNSAFE_QUOTED.sub(lambda found: f"\\u{ord(found.group()):04x}", text)


def emit_stream(documents: Iterable[Any]) -> str:
    """The canonical YAML stream for `documents`: `---` before each, newline at the end.

    `---` is always a line of its own: libyaml would write `--- {}` or `--- text`, which
    Argo CD's document splitter refuses ("invalid Yaml document separator")."""
    documents = list(documents)
    if all(isinstance(d, dict | list) and d for d in documents):  # every Kubernetes object
        text: str = yaml.dump_all(documents, explicit_start=True, **_DUMP_OPTIONS)
        return text
    return "".join(f"---\n{_dump(document)}" for document in documents)


def _dump(value: Any, dumper: type[CanonicalDumper] = CanonicalDumper) -> str:
    text: str = yaml.dump(value, **{**_DUMP_OPTIONS, "Dumper": dumper})
    if text.endswith("\n...\n"):  # libyaml closes a bare top-level scalar with `...`
        text = text[: -len("...\n")]
    return text


def emit_value(value: Any) -> str:
    """One value in canonical form with no document marker and no trailing newline
    (the `to_yaml` template filter, like Helm's toYaml)."""
    text = _dump(value, ToYamlDumper)
    # Only the one line break libyaml ends with: more are the kept (`|+`) trailing line breaks
    # of a last block scalar, which the template's next line break completes.
    return text[:-1] if text.endswith("\n") else text
