"""Second lines for errors whose first line alone points at the wrong fix.

Each function takes an error and what the render knew, and returns the same error (same class,
same exit code) with a hint added where one applies, or the error unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from cmp.errors import TagpinError


def numbered_values(values: Any, path: str = "values") -> Iterator[tuple[str, int | float]]:
    """Every (dotted path, number) in a values tree; booleans are not numbers here."""
    if isinstance(values, Mapping):
        for key, value in values.items():
            yield from numbered_values(value, f"{path}.{key}")
    elif isinstance(values, list):
        for index, value in enumerate(values):
            yield from numbered_values(value, f"{path}[{index}]")
    elif isinstance(values, int | float) and not isinstance(values, bool):
        yield path, values


def with_number_hints(error: TagpinError, values: Mapping[str, Any]) -> TagpinError:
    """`tag: 1.10` in a values file is the number 1.1, so the render asks for tag `1.1`.
    For each `<image>:<tag>: …` problem whose tag is how a number in the values prints, say
    which value it is and that quoting keeps it text."""
    numbers: dict[str, list[str]] = {}
    for path, number in numbered_values(values):
        numbers.setdefault(str(number), []).append(path)
    if not numbers:
        return error
    problems = []
    changed = False
    for problem in error.problems:
        image = problem.split(": ", 1)[0]
        tag = image.rsplit(":", 1)[1] if ":" in image.rsplit("/", 1)[-1] else ""
        paths = numbers.get(tag)
        if paths:
            changed = True
            problem += (
                f"; note: {' and '.join(paths)} is the number {tag}, not text: YAML "
                "reads an unquoted tag such as 1.10 as a number (1.1); quote it in the "
                'values file (tag: "1.10") so it stays the tag you wrote'
            )
        problems.append(problem)
    if not changed:
        return error
    hinted = type(error)(*problems)
    hinted.__cause__ = error.__cause__
    return hinted
