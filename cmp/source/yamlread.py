"""Reading YAML the way Kubernetes tooling does (go-yaml v2 via sigs.k8s.io/yaml), on libyaml.

PyYAML's YAML 1.1 resolvers differ from go-yaml's in ways that change meaning: PyYAML reads
`12:30` as the sexagesimal int 750, `2024-01-01` as a date and `=` as an error, and reads
`y`, `1e3` and `0o17` as strings. kubectl and Argo CD read them as the strings "12:30",
"2024-01-01" and "=", the bool true, the float 1000.0 and the int 15. tagpin follows Kubernetes,
so a plain-YAML app means the same thing here as it does to `kubectl apply`.
"""

from __future__ import annotations

import functools
import re
from typing import Any, NamedTuple

import yaml

from cmp.errors import SourceError
from cmp.jsonread import MAX_NESTING
from cmp.source.yamlscalars import BOOL, FLOAT, INT, MERGE, NULL, STR, key_text, resolve_plain

_CLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

MAP, SEQ = "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"
_NO_PATHS: dict[Any, Any] = {}

_EXPECTED_TAGS = {INT: (INT,), FLOAT: (FLOAT, INT), BOOL: (BOOL,), NULL: (NULL,)}


_DEFAULT_TAGS = {yaml.ScalarNode: STR, yaml.SequenceNode: SEQ, yaml.MappingNode: MAP}


@functools.lru_cache(maxsize=4096)  # keys and many values repeat across objects
def _resolve(kind: type, value: str | None, implicit: Any) -> str:
    """The tag of an untagged node: go-yaml v2's for a plain scalar (`implicit[0]`), else the
    default one of its kind."""
    if kind is yaml.ScalarNode and implicit[0]:
        return str(resolve_plain(str(value))[0])
    return _DEFAULT_TAGS[kind]


class KubeLoader(_CLoader):  # type: ignore[misc,valid-type]
    """libyaml parser + go-yaml v2's scalar rules and merge order + duplicate-key detection."""

    # Start marks (line, column) of scalars tagged with the non-specific `!`: go-yaml reads them
    # as strings, while libyaml hands them to the resolver like plain scalars.
    nonspecific: frozenset[tuple[int, int]] = frozenset()
    # Where equal-valued duplicate keys go when the caller accepts them (None: refuse them).
    duplicates: list[EqualDuplicate] | None = None
    # Where numbers and booleans that print unlike their text go, when the caller asks.
    misread: list[tuple[yaml.Mark, str, Any]] | None = None

    # libyaml's composer calls these for every node: `resolve` answered from the cache without
    # a Python call when the text was seen before, and C no-ops instead of PyYAML's Python
    # path-resolver hooks (none are registered).
    resolve = staticmethod(_resolve)
    descend_resolver = staticmethod(_NO_PATHS.get)
    ascend_resolver = staticmethod(tuple)

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        if (
            self.nonspecific
            and isinstance(node, yaml.ScalarNode)
            and (node.start_mark.line, node.start_mark.column) in self.nonspecific
        ):
            return node.value
        return super().construct_object(node, deep=deep)

    def construct_tree(self, node: yaml.Node) -> Any:
        """What construct_document builds from a document without aliases, built directly
        when it holds only string-keyed mappings (keys all different), sequences and scalars
        of JSON's kinds, as nearly every Kubernetes object does: PyYAML's constructor spends
        more on bookkeeping for each node (aliases, recursion, deferred filling) than on the
        node. Anything else, a merge key or an error included, is left to construct_document,
        so that what it reads and reports, and in what order, stays its own."""
        if self.nonspecific or self.misread is not None:
            return self.construct_document(node)
        try:
            return self._tree(node)
        except (_Unusual, yaml.constructor.ConstructorError):
            return self.construct_document(node)

    def _tree(self, node: Any) -> Any:  # recursion bounded by _check_depth
        kind, tag = node.__class__, node.tag
        if kind is yaml.ScalarNode:
            if tag == STR:
                return node.value
            if tag in _EXPECTED_TAGS:
                return self._scalar(node)
        elif kind is yaml.MappingNode and tag == MAP:
            pairs = node.value
            keys = [k.value for k, _ in pairs if k.__class__ is yaml.ScalarNode and k.tag == STR]
            if len(keys) == len(pairs) and len(set(keys)) == len(keys):
                tree = self._tree
                return {key: tree(value) for key, (_, value) in zip(keys, pairs, strict=True)}
        elif kind is yaml.SequenceNode and tag == SEQ:
            tree = self._tree
            return [tree(item) for item in node.value]
        raise _Unusual

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[str, Any]:
        # Keys become strings as sigs.k8s.io/yaml makes them (`1` → "1", `y` → "true"), so
        # templates and the emitter see what Kubernetes sees. Duplicate keys are refused, also
        # keys that only collide once stringified (go-yaml v2 would keep the last one: tagpin is
        # stricter on purpose, see docs/yaml.md).
        if not isinstance(node, yaml.MappingNode):  # `!!map text`: PyYAML's own message
            raise yaml.constructor.ConstructorError(
                None, None, f"expected a mapping node, but found {node.id}", node.start_mark
            )
        keys = [k.value for k, _ in node.value if k.tag == STR and isinstance(k, yaml.ScalarNode)]
        if len(keys) == len(node.value) and len(set(keys)) == len(keys):
            # The common case: plain string keys, all different. Nothing to merge or convert.
            return {
                key: self.construct_object(value_node, deep=deep)
                for key, (_, value_node) in zip(keys, node.value, strict=True)
            }
        seen: dict[str, tuple[Any, yaml.Node, yaml.Node]] = {}
        mapping: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == MERGE:
                # go-yaml v2 merges in document order: a `<<` after an explicit key overrides
                # it, and in a list of mappings the earlier ones win.
                for merged in reversed(self._merged_mappings(node, value_node)):
                    mapping.update(merged)
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                text = key_text(key)
            except TypeError as exc:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found {exc}, which Kubernetes cannot turn into a JSON key",
                    key_node.start_mark,
                ) from None
            if text in seen:
                first, first_key_node, first_value_node = seen[text]
                # go-yaml v2 keeps the last value: harmless when both are the same, so that is
                # only a warning; otherwise nobody can tell which one the author meant.
                if self.duplicates is None or not self._same_value(first_value_node, value_node):
                    raise DuplicateKeyError(
                        first,
                        key,
                        key_node.start_mark,
                        first_key_node.start_mark,
                        differ=self.duplicates is not None,
                    )
                self.duplicates.append(
                    EqualDuplicate(_shown(first), first_key_node.start_mark, key_node.start_mark)
                )
            seen[text] = (key, key_node, value_node)
            mapping[text] = self.construct_object(value_node, deep=deep)
        return mapping

    def _same_value(self, first: yaml.Node, second: yaml.Node) -> bool:
        """Whether two value nodes read as the same value (types included: 1 is not 1.0).
        Built apart, by a loader of their own: this one fills nested values in later."""
        reader = KubeLoader("")
        reader.nonspecific = self.nonspecific
        try:
            return _same(reader.construct_document(first), reader.construct_document(second))
        except RecursionError:
            return False
        finally:
            reader.dispose()

    def _merged_mappings(self, node: yaml.Node, value_node: yaml.Node) -> list[dict[str, Any]]:
        sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
        merged = []
        for source in sources:
            if not isinstance(source, yaml.MappingNode):
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    "a merge key (<<) takes a mapping or a list of mappings",
                    source.start_mark,
                )
            merged.append(self.construct_object(source, deep=True))  # filled in now, not later
        return merged

    def _scalar(self, node: yaml.ScalarNode) -> Any:
        """A scalar tagged int/float/bool/null (implicitly or explicitly), read as go-yaml does:
        an explicit tag that does not fit the text is an error there, and here."""
        text = str(self.construct_scalar(node))
        tag, value = resolve_plain(text)
        if tag not in _EXPECTED_TAGS[node.tag]:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"cannot read {text!r} as {node.tag.replace(_LONG, '!!')}",
                node.start_mark,
            )
        value = float(value) if node.tag == FLOAT else value
        if self.misread is not None and value is not None and str(value) != text:
            self.misread.append((node.start_mark, text, value))
        return value

    def construct_undefined(self, node: yaml.Node) -> Any:
        raise yaml.constructor.ConstructorError(
            None, None, f"unsupported YAML tag {node.tag!r}", node.start_mark
        )


_LONG = "tag:yaml.org,2002:"
for _tag in (INT, FLOAT, BOOL, NULL):
    KubeLoader.add_constructor(_tag, KubeLoader._scalar)
# `<<` anywhere but in a key is the string "<<" to go-yaml.
KubeLoader.add_constructor(MERGE, KubeLoader.construct_yaml_str)
KubeLoader.add_constructor(None, KubeLoader.construct_undefined)
# Explicit timestamps/binary/sets/omaps have no JSON form; Kubernetes would reject them.
for _tag in ("timestamp", "binary", "set", "omap", "pairs"):
    KubeLoader.add_constructor(f"tag:yaml.org,2002:{_tag}", KubeLoader.construct_undefined)


class _Unusual(Exception):
    """A node KubeLoader.construct_tree leaves to PyYAML's constructor."""


def _same(first: Any, second: Any) -> bool:
    if type(first) is not type(second):
        return False
    if isinstance(first, dict):
        return first.keys() == second.keys() and all(_same(first[k], second[k]) for k in first)
    if isinstance(first, list):
        return len(first) == len(second) and all(map(_same, first, second))
    return bool(first == second)


def _above(first: yaml.Mark, second: yaml.Mark) -> str:
    """Where the first of two keys is, relative to the second: a template's rendered lines
    are not its own, but the distance between two lines written together is."""
    lines = second.line - first.line
    if lines == 0:
        return "the first one earlier on the same line"
    return f"the first one {lines} line{'s' if lines > 1 else ''} above"


class EqualDuplicate(NamedTuple):
    """A key given twice in one mapping with the same value both times."""

    key: str  # as messages show it
    first: yaml.Mark
    second: yaml.Mark

    def describe(self, source: str) -> str:
        return (
            f"{source}:{self.second.line + 1}:{self.second.column + 1}: key {self.key} is given "
            f"twice in one mapping ({_above(self.first, self.second)}) with the same value; "
            "Argo CD keeps the last one, so nothing changes, but delete one of them"
        )


class DuplicateKeyError(yaml.MarkedYAMLError):
    def __init__(
        self, first: Any, second: Any, mark: yaml.Mark, first_mark: yaml.Mark, *, differ: bool
    ) -> None:
        if first == second and type(first) is type(second):
            problem = f"duplicate key {first!r} in a mapping ({_above(first_mark, mark)})"
            if differ:
                problem += (
                    " with a different value; Argo CD would apply only the last one: delete the "
                    "one you do not mean"
                )
        else:
            problem = (
                f"keys {_shown(first)} and {_shown(second)} both mean "
                f"{key_text(second)!r} in Kubernetes; quote or rename one"
            )
        super().__init__(problem=problem, problem_mark=mark)


def _shown(key: Any) -> str:
    return repr(key) if isinstance(key, str) else key_text(key)


class Misread(NamedTuple):
    """A scalar YAML reads as a number or a boolean that prints unlike its text: `1.10` is the
    number 1.1, `010` is 8, `yes` is True. In a template it prints as 1.1, 8, True."""

    source: str  # the file, or the parameter, it was written in
    line: int  # 1-based; 0 for a parameter
    key: str  # the key it is the value of, as written ("" when it is a list item)
    text: str  # as written
    value: Any  # as read

    @property
    def printed(self) -> str:
        """How a template prints it."""
        return str(self.value)

    @property
    def read_as(self) -> str:
        """`the number 1.1`, `the boolean true`."""
        if isinstance(self.value, bool):
            return f"the boolean {str(self.value).lower()}"
        return f"the number {self.printed}"

    @property
    def where(self) -> str:
        return f"{self.source}:{self.line}" if self.line else self.source

    @property
    def written(self) -> str:
        """`tag: 1.10`, as in the file."""
        return f"{self.key}: {self.text}" if self.key else self.text


def _key_before(line: str, column: int) -> str:
    """The key a value at `column` belongs to: `  tag: 1.10` → "tag", `{a: 1, tag: 1.10}` →
    "tag"; "" for a list item. Looks back at most 200 characters: linear on a long line."""
    before = line[max(0, column - 200) : column].rstrip()
    if not before.endswith(":"):
        return ""
    head = before[:-1].rstrip()
    key = head[max(head.rfind("{"), head.rfind(","), head.rfind("[")) + 1 :].strip()
    return key[2:].strip() if key.startswith("- ") else key


def _misread(text: str, source: str, found: list[tuple[yaml.Mark, str, Any]]) -> list[Misread]:
    lines = text.split("\n")
    records = []
    for mark, written, value in found:
        line = lines[mark.line] if mark.line < len(lines) else ""
        key = _key_before(line, mark.column)
        records.append(Misread(source, mark.line + 1, key, written, value))
    return records


def load_all(
    text: str,
    source: str,
    *,
    max_nodes: int,
    warnings: list[str] | None = None,
    misread: list[Misread] | None = None,
) -> list[tuple[int, Any]]:
    """Parse a YAML stream into (start line, document) pairs; errors name `source` and line.

    `max_nodes` bounds the size of each document, aliases expanded: composing a node costs
    about 300 bytes, so a plain 8 MiB list would otherwise take gigabytes before any check.
    A key given twice with the same value is a warning added to `warnings`, or an error when
    the caller gives no `warnings`; with different values it is always an error. Numbers and
    booleans that print unlike their text are added to `misread`, when given.
    """
    if text and not text.endswith("\n"):
        # Argo CD's document splitter ends every line with a newline, the last one too; this
        # matters to a block scalar on the last line (`|` then keeps one line break).
        text += "\n"
    # A template can make a lone surrogate, which libyaml cannot encode (never in ASCII text).
    surrogate = None if text.isascii() else _SURROGATE.search(text)
    if surrogate:
        line = text.count("\n", 0, surrogate.start()) + 1
        raise SourceError(
            f"{source}:{line}: invalid YAML: a lone UTF-16 surrogate "
            f"{_codepoint(ord(surrogate.group()))} is not a character"
        )
    _check_plain_size(text, source, max_nodes)
    loader = KubeLoader(text)
    if "!" in text and _MAY_TAG.search(text):  # the `in` skips the slow scan of most texts
        loader.nonspecific = _nonspecific_scalars(text)
    may_alias = "*" in text  # no alias without a `*`: skip the expansion walks
    if warnings is not None:
        loader.duplicates = []
    if misread is not None:
        loader.misread = []
    documents: list[tuple[int, Any]] = []
    try:
        while loader.check_node():
            node = loader.get_node()
            line = node.start_mark.line + 1
            span = text[node.start_mark.index : node.end_mark.index]
            if may_alias and "*" in span:  # an alias refers to an anchor of its own document
                _check_expansion(node, source, line, max_nodes)
                _check_depth(node, source, may_alias=True)
                documents.append((line, loader.construct_document(node)))
            else:
                if nesting_bound(span) > MAX_NESTING:
                    _check_depth(node, source, may_alias=False)
                documents.append((line, loader.construct_tree(node)))
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
    if loader.duplicates:
        assert warnings is not None
        warnings.extend(duplicate.describe(source) for duplicate in loader.duplicates)
    if loader.misread:
        assert misread is not None
        misread.extend(_misread(text, source, loader.misread))
    return documents


_SURROGATE = re.compile("[\ud800-\udfff]")
# A tag starts a token: `!` after a line start, a space or a flow indicator (not `#!/bin/sh`).
_MAY_TAG = re.compile(r"(?:^|[\s\[{,])!", re.MULTILINE)


def _nonspecific_scalars(text: str) -> frozenset[tuple[int, int]]:
    """Where scalars tagged `!` start. A second parse, but only of text with a `!` in it; a
    syntax error is left for the real parse to report."""
    marks = set()
    try:
        for event in yaml.parse(text, Loader=_CLoader):
            if isinstance(event, yaml.ScalarEvent) and event.tag == "!" and event.start_mark:
                marks.add((event.start_mark.line, event.start_mark.column))
    except yaml.YAMLError:
        pass
    return frozenset(marks)


def load_one(
    text: str,
    source: str,
    *,
    max_nodes: int,
    warnings: list[str] | None = None,
    misread: list[Misread] | None = None,
) -> Any:
    """Parse a file holding at most one YAML document (values files, tagpin.yaml)."""
    documents = load_all(text, source, max_nodes=max_nodes, warnings=warnings, misread=misread)
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
# Matched with the line break before it, which is many times faster to search for than `^`.
_DOCUMENT_MARKER = re.compile(r"\n(?:---|\.\.\.)(?=[ \t\r\n]|$)", re.MULTILINE)
_NODE_EVENTS = (yaml.ScalarEvent, yaml.SequenceStartEvent, yaml.MappingStartEvent, yaml.AliasEvent)


def _check_plain_size(text: str, source: str, max_nodes: int) -> None:
    """Refuse a document of more than `max_nodes` nodes before composing it. A node takes at
    least one character, so only a document longer than `max_nodes` characters (found by one
    regex scan) can be too large; only then are its parser events counted."""
    if len(text) <= max_nodes:
        return
    starts = [0, *(m.start() + 1 for m in _DOCUMENT_MARKER.finditer(text)), len(text)]
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
                        "(TAGPIN_MAX_YAML_NODES); refusing it"
                    )
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


def nesting_bound(span: str) -> int:
    """How deep a document without aliases, written as `span`, can nest at most: every mapping
    or sequence in it has a character of its own among `:?-[{` (a block mapping its first
    key's `:` or `?`, a block sequence its first `-`, a flow collection its bracket, a pair in
    a flow sequence its `:`). Counting them is far cheaper than walking the nodes, and a
    Kubernetes object rarely has more than MAX_NESTING."""
    openers = span.count(":") + span.count("-") + span.count("?") + span.count("[")
    return openers + span.count("{")


def _check_depth(node: yaml.Node | None, source: str, may_alias: bool) -> None:
    """Refuse a document nested deeper than MAX_NESTING (cmp/jsonread.py), naming a line where
    it goes too deep: what reads it afterwards (the emitter, schema checks) recurses. Iterative,
    each node walked once; with aliases, depths are summed up from below instead, and an
    anchor that contains itself is infinitely deep."""
    if node is None:
        return
    if may_alias:
        _check_depth_through_aliases(node, source)
        return
    stack: list[tuple[yaml.Node, int]] = [(node, 1)]
    while stack:
        current, depth = stack.pop()
        if depth > MAX_NESTING:
            _too_deep(source, current)
        stack.extend((child, depth + 1) for child in _collections_in(current))


def _check_depth_through_aliases(root: yaml.Node, source: str) -> None:
    depths: dict[int, int] = {}
    started: set[int] = set()  # the nodes on the path being walked
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        current, finished = stack.pop()
        key = id(current)
        if finished:
            started.discard(key)
            depths[key] = 1 + max((depths[id(c)] for c in _collections_in(current)), default=0)
            if depths[key] > MAX_NESTING:
                _too_deep(source, current)
        elif key in started:  # an alias to one of its own ancestors
            raise SourceError(
                f"{source}:{current.start_mark.line + 1}: an anchor holds an alias to itself, "
                "so the value is infinitely deep (go-yaml refuses it too)"
            )
        elif key not in depths:
            started.add(key)
            stack.append((current, True))
            stack.extend((child, False) for child in _collections_in(current))


def _collections_in(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        children = [child for pair in node.value for child in pair]
    elif isinstance(node, yaml.SequenceNode):
        children = list(node.value)
    else:
        return []
    return [child for child in children if not isinstance(child, yaml.ScalarNode)]


def _too_deep(source: str, node: yaml.Node) -> None:
    raise SourceError(
        f"{source}:{node.start_mark.line + 1}: YAML nested too deeply "
        f"(more than {MAX_NESTING} levels)"
    )
