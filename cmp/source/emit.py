"""Canonical YAML out: the same objects always give the same bytes.

The canonical form (documented in the README):
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

import math
import re
from collections.abc import Iterable, Sequence
from typing import Any

import yaml

from cmp.source.yamlread import (
    BOOL_PATTERN,
    FIRST_CHARS_BOOL,
    FIRST_CHARS_NULL,
    MERGE_PATTERN,
    NULL_PATTERN,
    key_text,
    resolver_table,
)

_CDumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

FIRST_KEYS = {"apiVersion": 0, "kind": 1, "metadata": 2}
NO_WRAP = 2**31 - 1

# Anything a YAML 1.1 reader (PyYAML, go-yaml v2) or a YAML 1.2 reader (go-yaml v3) could
# resolve to a non-string, so such strings are always quoted. A superset of what tagpin's own
# loader resolves (bools, nulls and merge keys are the loader's very patterns), which is what
# makes a render of tagpin's output a fixed point.
_QUOTE_PATTERNS: list[tuple[str, re.Pattern[str], Sequence[str]]] = [
    ("tag:yaml.org,2002:bool", BOOL_PATTERN, FIRST_CHARS_BOOL),
    ("tag:yaml.org,2002:null", NULL_PATTERN, FIRST_CHARS_NULL),
    (
        "tag:yaml.org,2002:int",
        re.compile(
            r"^[-+]?(?:0[bB][01_]+|0[oO][0-7_]+|0[xX][0-9a-fA-F_]+|[0-9][0-9_]*"
            r"|[1-9][0-9_]*(?::[0-5]?[0-9])+)$"
        ),
        "-+0123456789",
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
    (
        "tag:yaml.org,2002:timestamp",
        re.compile(
            r"^(?:[0-9][0-9][0-9][0-9]-[0-9][0-9]?-[0-9][0-9]?"
            r"(?:(?:[Tt]|[ \t]+)[0-9][0-9]?:[0-9][0-9]:[0-9][0-9](?:\.[0-9]*)?"
            r"(?:[ \t]*(?:Z|[-+][0-9][0-9]?(?::[0-9][0-9])?))?)?)$"
        ),
        "0123456789",
    ),
    ("tag:yaml.org,2002:merge", MERGE_PATTERN, "<"),
    ("tag:yaml.org,2002:value", re.compile(r"^(?:=)$"), "="),
]


def _key_order(item: tuple[str, Any]) -> tuple[int, str]:
    return FIRST_KEYS.get(item[0], 3), item[0]


class CanonicalDumper(_CDumper):  # type: ignore[misc,valid-type]
    yaml_implicit_resolvers = resolver_table(_QUOTE_PATTERNS)

    def ignore_aliases(self, data: Any) -> bool:
        return True  # never emit anchors: every value is written out in full

    def represent_mapping_canonical(self, data: dict[Any, Any]) -> yaml.MappingNode:
        items = [(key_text(k), v) for k, v in data.items()]
        items.sort(key=_key_order)
        node: yaml.MappingNode = self.represent_mapping("tag:yaml.org,2002:map", items)
        return node

    def represent_str_canonical(self, data: str) -> yaml.ScalarNode:
        style = "|" if "\n" in data else None
        node: yaml.ScalarNode = self.represent_scalar("tag:yaml.org,2002:str", data, style=style)
        return node

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

    def represent_tuple(self, data: tuple[Any, ...]) -> yaml.SequenceNode:
        node: yaml.SequenceNode = self.represent_list(list(data))
        return node


CanonicalDumper.add_representer(dict, CanonicalDumper.represent_mapping_canonical)
CanonicalDumper.add_multi_representer(dict, CanonicalDumper.represent_mapping_canonical)
CanonicalDumper.add_representer(str, CanonicalDumper.represent_str_canonical)
CanonicalDumper.add_representer(float, CanonicalDumper.represent_float_canonical)
CanonicalDumper.add_representer(tuple, CanonicalDumper.represent_tuple)

_DUMP_OPTIONS: dict[str, Any] = {
    "Dumper": CanonicalDumper,
    "default_flow_style": False,
    "allow_unicode": True,
    "width": NO_WRAP,
    "indent": 2,
    "sort_keys": False,  # the mapping representer orders keys itself
    "line_break": "\n",
}


def emit_stream(documents: Iterable[Any]) -> str:
    """The canonical YAML stream for `documents`: `---` before each, newline at the end."""
    text: str = yaml.dump_all(documents, explicit_start=True, **_DUMP_OPTIONS)
    return text


def emit_value(value: Any) -> str:
    """One value in canonical form with no document marker and no trailing newline
    (the `to_yaml` template filter, like Helm's toYaml)."""
    text: str = yaml.dump(value, **_DUMP_OPTIONS)
    if text.endswith("\n...\n"):  # libyaml closes a bare top-level scalar with `...`
        text = text[: -len("...\n")]
    return text.rstrip("\n")
