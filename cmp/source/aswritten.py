"""Values that print as they were written: the values tree again, with the numbers and booleans
YAML read unlike their text (`tag: 1.10` is 1.1, `yes` is True) printing as that text.

A second render with these values shows which output depends on YAML's reading
(cmp/images/misread.py). They stay numbers for everything else a template does with them
(arithmetic, comparisons, `range`, truth), so only what is printed changes; booleans become
integers 0 and 1 (Python's bool cannot be subclassed), which compare and test alike.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from cmp.source.yamlread import Misread


class _AsWritten:
    """Prints as written, computes as read: mixed into a number type (first, so its `__str__`
    wins); a format spec formats the number."""

    written: str

    def __str__(self) -> str:
        return self.written

    def __format__(self, spec: str) -> str:
        return self.written if not spec else super().__format__(spec)


class WrittenFloat(_AsWritten, float):
    """A float that prints as written (`1.10`, `1e3`, `.5`)."""

    def __new__(cls, value: float, written: str) -> WrittenFloat:
        made = float.__new__(cls, value)
        made.written = written
        return made


class WrittenInt(_AsWritten, int):
    """An integer (or a boolean, as 0 or 1) that prints as written (`010`, `0x1F`, `yes`)."""

    def __new__(cls, value: int, written: str) -> WrittenInt:
        made = int.__new__(cls, value)
        made.written = written
        return made


def as_written(values: Any, misread: Iterable[Misread]) -> Any:
    """`values` with every scalar equal to a misread one (same type and value) printing as
    that one was written; the first of several misread alike wins."""
    table: dict[tuple[type, Any], str] = {}
    for item in misread:
        table.setdefault((type(item.value), item.value), item.text)
    if not table:
        return values

    def swap(node: Any) -> Any:
        if isinstance(node, dict):
            return {key: swap(value) for key, value in node.items()}
        if isinstance(node, list):
            return [swap(value) for value in node]
        if isinstance(node, bool | int | float):
            written = table.get((type(node), node))
            if written is not None:
                return (
                    WrittenFloat(node, written)
                    if isinstance(node, float)
                    else WrittenInt(node, written)
                )
        return node

    return swap(values)


def as_data(value: Any) -> Any:
    """`value` for `to_yaml`/`to_json` in that render: what was written, as text."""
    if isinstance(value, WrittenFloat | WrittenInt):
        return value.written
    if isinstance(value, dict):
        return {key: as_data(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [as_data(item) for item in value]
    return value
