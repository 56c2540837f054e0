"""The YAML reader's and writer's fast paths decide exactly what the general code decides.

Reading and writing a large render is mostly per-node Python work, so both sides take short
cuts for the common case (cmp/source/emit.py, cmp/source/yamlread.py). Each short cut is checked
here against the general path it stands in for, on generated inputs: the same bytes out, the
same values in, never "plain" where the full quoting rules say "quote", never a skipped depth
walk for a document that nests too deeply.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cmp.jsonread import MAX_NESTING
from cmp.source.emit import (
    _COMMENT_LINES,
    _ESCAPED_BREAKS,
    CERTAINLY_PLAIN,
    FIRST_KEYS,
    NO_WRAP,
    CanonicalDumper,
    _key,
    emit_stream,
    emit_value,
    plain_tag,
)
from cmp.source.yamlread import KubeLoader, nesting_bound
from cmp.source.yamlscalars import STR

PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# -- strings: what Kubernetes objects hold, and every kind the quoting rules know ---------------

WORDS = [
    "y",
    "Y",
    "yes",
    "Yes",
    "YES",
    "n",
    "N",
    "no",
    "No",
    "NO",
    "true",
    "True",
    "TRUE",
    "false",
    "False",
    "FALSE",
    "on",
    "On",
    "ON",
    "off",
    "Off",
    "OFF",
    "~",
    "null",
    "Null",
    "NULL",
    "<<",
    "=",
    ".nan",
    ".NaN",
    ".inf",
    "-.inf",
    "+.inf",
    ".",
    "-.",
    "e5",
    "E-3",
    "e+07",
    "1e3",
    "0755",
    "0o17",
    "0x1F",
    "0b101",
    "1_000",
    "+1",
    "-0",
    "1.10",
    "12:30",
    "1:2:3",
    "+07:00",
    "2024-01-01",
    "2024-1-1T10:00:00Z",
    "10:00:00",
    "+07",
    "6.8523015e+5",
    "685.230_15e+03",
    "190:20:30.15",
    "name",
    "svc-0",
    "IfNotPresent",
    "/healthz",
    "app.kubernetes.io/part-of",
    "team_a",
    "nginx:1.25",
    "yes-no",
    "yaml",
    "nope",
    "trueish",
    "offset",
    "enabled",
    "e",
    "e5x",
    "E_5",
    "_1",
    "/e5",
    "a:b",
    "#c",
    "2024-01-01 10:00:00",
    "a: b",
    "a #c",
    "",
    " leading",
    "trailing ",
    "- item",
    "? key",
    "{a: 1}",
    "[1, 2]",
    "'quoted'",
    '"double"',
    "@at",
    "`tick",
    "%pct",
    "!bang",
    "&anchor",
    "*alias",
    "|pipe",
    ">folded",
]
TEXT = st.one_of(
    st.sampled_from(WORDS),
    st.text(max_size=12),
    st.text("yYnNtTfFoOeEul0123456789.:+-_ /abcxz", max_size=10),
    st.from_regex(r"[A-Za-z_/][A-Za-z0-9_./-]{0,10}", fullmatch=True),
    st.from_regex(r"[eE][-+]?[0-9_]{1,4}[A-Za-z0-9_./-]{0,3}", fullmatch=True),
    st.lists(st.sampled_from(["#c", "  # c", "", " ", "x", "y: 1", "\r", "\x85"]), max_size=4).map(
        "\n".join
    ),
    st.builds(lambda a, b: a + "\n" + b, st.text(max_size=5), st.text(max_size=5)),
)


@PROPERTY
@given(TEXT)
def test_the_fast_path_never_writes_plain_what_the_rules_would_quote(text: str) -> None:
    if CERTAINLY_PLAIN.fullmatch(text):
        assert plain_tag(text) == STR


@pytest.mark.parametrize("text", ["svc-0", "IfNotPresent", "/healthz", "app.kubernetes.io/name"])
def test_the_fast_path_takes_the_common_strings(text: str) -> None:
    assert CERTAINLY_PLAIN.fullmatch(text)


@pytest.mark.parametrize("text", ["y", "NO", "null", "e5", "E-3", "on", "2024-01-01", "12:30"])
def test_the_fast_path_leaves_what_some_reader_misreads_to_the_rules(text: str) -> None:
    assert not CERTAINLY_PLAIN.fullmatch(text)
    assert plain_tag(text) != STR


# -- the writer: the same bytes as PyYAML's own representer and resolver hooks with the rules ---


class ReferenceDumper(yaml.CSafeDumper):
    """The canonical form written the straightforward way: PyYAML's representer for every node
    and the full quoting rules asked by the serializer for every scalar, with no cache, no
    fast path and no style decided in advance."""

    comment_blocks = True

    def resolve(self, kind: type, value: Any, implicit: Any) -> str:
        if kind is yaml.ScalarNode and implicit[0]:
            return plain_tag(value)
        return str(super().resolve(kind, value, implicit))

    def ignore_aliases(self, data: Any) -> bool:
        return True

    def represent_mapping_canonical(self, data: dict[Any, Any]) -> yaml.MappingNode:
        items = sorted(((_key(k), v) for k, v in data.items()), key=_reference_order)
        node: yaml.MappingNode = self.represent_mapping("tag:yaml.org,2002:map", items)
        return node

    def represent_str_canonical(self, data: str) -> yaml.ScalarNode:
        style = None
        if _ESCAPED_BREAKS.search(data):
            style = '"'
        elif "\n" in data:
            commented = not self.comment_blocks and "#" in data and _COMMENT_LINES.fullmatch(data)
            style = '"' if commented else "|"
        node: yaml.ScalarNode = self.represent_scalar("tag:yaml.org,2002:str", data, style=style)
        return node

    def represent_tuple(self, data: tuple[Any, ...]) -> yaml.SequenceNode:
        node: yaml.SequenceNode = self.represent_list(list(data))
        return node

    # Numbers are written by the same representers: only the strings' and maps' changed.
    represent_float_canonical = CanonicalDumper.represent_float_canonical
    represent_int_canonical = CanonicalDumper.represent_int_canonical


def _reference_order(item: tuple[str, Any]) -> tuple[int, str]:
    return FIRST_KEYS.get(item[0], 3), item[0]


ReferenceDumper.add_representer(dict, ReferenceDumper.represent_mapping_canonical)
ReferenceDumper.add_multi_representer(dict, ReferenceDumper.represent_mapping_canonical)
ReferenceDumper.add_multi_representer(list, ReferenceDumper.represent_list)
ReferenceDumper.add_representer(str, ReferenceDumper.represent_str_canonical)
ReferenceDumper.add_representer(float, ReferenceDumper.represent_float_canonical)  # type: ignore[arg-type]
ReferenceDumper.add_representer(int, ReferenceDumper.represent_int_canonical)  # type: ignore[arg-type]
ReferenceDumper.add_representer(tuple, ReferenceDumper.represent_tuple)


class ReferenceToYaml(ReferenceDumper):
    comment_blocks = False


def reference_dump(value: Any, dumper: type[ReferenceDumper], **options: Any) -> str:
    text: str = yaml.dump_all(
        [value],
        Dumper=dumper,
        default_flow_style=False,
        allow_unicode=True,
        width=NO_WRAP,
        indent=2,
        sort_keys=False,
        line_break="\n",
        **options,
    )
    return text


class Tree(dict[Any, Any]):
    """A dict subclass, as a template's values are (cmp.source.templates)."""


class Items(list[Any]):
    """A list subclass."""


KEY = st.one_of(
    TEXT,
    st.sampled_from(sorted(FIRST_KEYS)),
    st.integers(-(2**66), 2**66),
    st.booleans(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.none(),
)
LEAF = st.one_of(
    TEXT,
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
)
VALUE = st.recursive(
    LEAF,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.lists(inner, max_size=3).map(tuple),
        st.lists(inner, max_size=3).map(Items),
        st.dictionaries(KEY, inner, max_size=5),
        st.dictionaries(KEY, inner, max_size=3).map(Tree),
    ),
    max_leaves=25,
)
DOCUMENT = st.dictionaries(st.one_of(st.sampled_from(sorted(FIRST_KEYS)), KEY), VALUE, min_size=1)


@PROPERTY
@given(DOCUMENT)
def test_the_canonical_stream_is_byte_for_byte_the_reference(document: dict[Any, Any]) -> None:
    assert emit_stream([document]) == reference_dump(document, ReferenceDumper, explicit_start=True)


@PROPERTY
@given(VALUE)
def test_to_yaml_is_byte_for_byte_the_reference(value: Any) -> None:
    expected = reference_dump(value, ReferenceToYaml)
    if expected.endswith("\n...\n"):
        expected = expected[: -len("...\n")]
    assert emit_value(value) == (expected[:-1] if expected.endswith("\n") else expected)


def test_objects_the_representer_refuses_are_still_refused() -> None:
    class Text(str):
        pass

    with pytest.raises(yaml.representer.RepresenterError):
        emit_stream([{"a": Text("b")}])
    with pytest.raises(yaml.representer.RepresenterError):
        emit_stream([{Text("a"): "b"}])


# -- the reader: the same values as PyYAML's constructor ----------------------------------------

STYLES = [
    {"default_flow_style": False},
    {"default_flow_style": True},
    {"default_flow_style": None},
    {"default_flow_style": False, "default_style": "'"},
    {"default_flow_style": False, "default_style": '"'},
    {"default_flow_style": False, "indent": 4},
]
YAML_PIECES = [
    "a: 1\na: 1\n",
    "a: 1\nb: {a: 1, a: 2}\n",
    "<<: {a: 1}\nb: 2\n",
    "a: !!int '12'\nb: !!str 1\nc: !!float 3\n",
    "a: ! 12\n",
    "a: !!binary aGVsbG8=\n",
    "a: !!map x\n",
    "? [a, b]\n: c\n",
    "1: a\ntrue: b\n~: c\n",
    "a: !!int x\nb: !!bool y\n",
    "a: [x: 1, ? y]\n",
    "- - - a\n  - b\n- c\n",
    "a:\n- b: 1\n  c:\n  - d\n",
]


def _same(first: Any, second: Any) -> bool:
    if type(first) is not type(second):
        return False
    if isinstance(first, dict):
        return list(first) == list(second) and all(_same(first[k], second[k]) for k in first)
    if isinstance(first, list):
        return len(first) == len(second) and all(map(_same, first, second))
    if isinstance(first, float) and math.isnan(first):
        return math.isnan(second)
    return bool(first == second)


def _built(text: str, fast: bool) -> list[Any]:
    loader = KubeLoader(text)
    loader.duplicates = []
    built: list[Any] = []
    try:
        while loader.check_node():
            node = loader.get_node()
            try:
                built.append(
                    loader.construct_tree(node) if fast else loader.construct_document(node)
                )
            except yaml.YAMLError as exc:
                built.append(("error", str(exc)))
    except yaml.YAMLError as exc:
        built.append(("stream error", str(exc)))
    finally:
        loader.dispose()
    built.append(("duplicates", [(d.key, d.second.line) for d in loader.duplicates]))
    return built


PLAIN_VALUE = st.recursive(
    LEAF,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(KEY, inner, max_size=5)),
    max_leaves=25,
)
YAML_TEXT = st.one_of(
    st.builds(
        lambda value, style: yaml.dump(value, Dumper=yaml.SafeDumper, **style),
        PLAIN_VALUE,
        st.sampled_from(STYLES),
    ),
    st.lists(st.sampled_from(YAML_PIECES), min_size=1, max_size=3).map("---\n".join),
)


@PROPERTY
@given(YAML_TEXT)
def test_the_direct_build_reads_what_the_constructor_reads(text: str) -> None:
    assert _same(_built(text, fast=True), _built(text, fast=False)), text


# -- the depth bound: never below the real depth -----------------------------------------------


def _depth(node: yaml.Node) -> int:
    if isinstance(node, yaml.MappingNode):
        return 1 + max((max(_depth(k), _depth(v)) for k, v in node.value), default=0)
    if isinstance(node, yaml.SequenceNode):
        return 1 + max((_depth(item) for item in node.value), default=0)
    return 0


NESTED = st.recursive(
    st.sampled_from(["x", 1, None, ""]),
    lambda inner: st.one_of(
        st.lists(inner, max_size=2),
        st.dictionaries(
            st.one_of(st.sampled_from(["k", "", "a b"]), st.tuples(st.sampled_from(["x", "y"]))),
            inner,
            max_size=2,
        ),
    ),
    max_leaves=40,
)
DEEP_PIECES = [
    "- - - - a\n",
    "? - a\n  - b\n: - c\n",
    "[a: [b: [c: d]]]\n",
    "{a: {b: {c: []}}}\n",
    "a:\n- b:\n  - c:\n    - d\n",
    "[? a, ? [b]]\n",
    "!!map {a: !!seq [b]}\n",
]


@PROPERTY
@given(
    st.one_of(
        st.builds(
            lambda value, style: yaml.dump(value, Dumper=yaml.SafeDumper, **style),
            NESTED,
            st.sampled_from(STYLES),
        ),
        st.sampled_from(DEEP_PIECES),
    )
)
def test_the_depth_bound_is_never_below_the_depth(text: str) -> None:
    loader = KubeLoader(text)
    try:
        while loader.check_node():
            node = loader.get_node()
            span = text[node.start_mark.index : node.end_mark.index]
            assert nesting_bound(span) >= _depth(node), text
    finally:
        loader.dispose()


def test_a_document_nested_too_deeply_is_still_refused() -> None:
    from cmp.errors import SourceError
    from cmp.source.yamlread import load_all

    keys = "".join("  " * level + "b:\n" for level in range(1, MAX_NESTING + 1))
    deep = "a:\n" + keys + "  " * (MAX_NESTING + 1) + "c\n"  # 257 mappings
    with pytest.raises(SourceError, match="nested too deeply"):
        load_all(deep, "deep.yaml", max_nodes=10_000)
