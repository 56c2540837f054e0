"""What a template may turn into text: strings, numbers, booleans, None, and lists, tuples,
mappings and sets of them.

Anything else a template can reach (a bound method such as `values.items` under
`'{0[items]}'.format(values)`, a generator from `map`, the `kube` object, a macro) prints as
its Python repr, which carries a heap address: different on every run, so the output is not
deterministic, and a leak of the sidecar's memory layout to whoever can push a template. The
sandbox (cmp/source/templates.py) checks every place where it turns a value into text:
`{{ }}` output, `str.format`/`format_map`, `%`, `~` and the filters that take a value as a string.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import update_wrapper
from typing import Any

PLAIN = (str, int, float, bool, type(None), range)  # Markup is a str; range prints no address
CONTAINERS = (list, tuple, set, frozenset)

# Built-in and tagpin filters that turn their input into text; the rest either work on data
# (`length`, `sort`, `dictsort`...) or fail on a non-string input without showing it.
TEXT_FILTERS = (
    "capitalize",
    "center",
    "e",
    "escape",
    "forceescape",
    "format",
    "indent",
    "lower",
    "pprint",
    "replace",
    "safe",
    "string",
    "striptags",
    "title",
    "trim",
    "truncate",
    "upper",
    "urlencode",
    "urlize",
    "wordcount",
    "wordwrap",
    "b64encode",
    "from_json",
    "from_yaml",
    "nindent",
    "quote",
    "sha256",
)


def check(value: Any, undefined: type, error: Callable[[str], Exception]) -> Any:
    """`value` unchanged if it prints as data; else `error(message)` is raised. Undefined
    values pass: printing them raises their own, better error."""
    if type(value) is str:  # nearly every call: the fast path
        return value
    leaves = (*PLAIN, undefined)
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, leaves):
            continue
        if isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, CONTAINERS):
            pending.extend(item)
        else:
            raise error(
                f"cannot turn a {type(item).__name__} into text (it would print a "
                "Python object and its memory address); print data, or call it"
            )
    return value


def checked_filter(
    function: Callable[..., Any], checker: Callable[[Any], Any], value_position: int
) -> Callable[..., Any]:
    """`function` (a Jinja2 filter) with its input and arguments checked first (`format`
    prints its arguments too); `value_position` is 1 for filters that Jinja2 passes an
    environment or context first."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        checker(list(args[value_position:]))
        checker(kwargs)
        return function(*args, **kwargs)

    return update_wrapper(wrapper, function)  # keeps jinja_pass_arg


def checked_join(function: Callable[..., Any], checker: Callable[[Any], Any]) -> Callable[..., Any]:
    """Jinja2's `join` (eval context first), its items checked: they are often a generator
    (`map(...)|join`), so they are listed once and the list is joined."""

    def wrapper(eval_ctx: Any, value: Any, *args: Any, **kwargs: Any) -> Any:
        items = list(value)
        checker(items)
        return function(eval_ctx, items, *args, **kwargs)

    return update_wrapper(wrapper, function)
