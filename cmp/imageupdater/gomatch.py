"""Go's tag matching, in linear time: `regexp` (RE2) for allow-tags, `filepath.Match` for
ignore-tags.

Image Updater runs these patterns in Go, whose RE2 engine never backtracks. Python's `re` does,
so a pattern such as `^(a+)+$` from one app's annotations could burn a render's (or the
webhook's) CPU for minutes. Both kinds of pattern are compiled here with RE2 (google-re2, the
same engine's C++ original): matching takes time linear in the tag, whatever the pattern.

`re2` is imported on first use only: a render without an allow-tags or ignore-tags policy never
loads it (the warm path's import budget, bench `imports`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

# Go's regexp/syntax limits that RE2's C++ parser does not share (or reads differently).
MAX_REPEAT = 1000  # Go: `x{1001}` and `x{9876543210}` are errors; C++ reads the latter as text
MAX_NESTING = 1000  # Go: "expression nests too deeply"

Matcher = Callable[[str], bool]

# A repetition operator as Go's parser reads one: no leading zeros, else `{` is a literal.
_REPEAT = re.compile(r"\{(0|[1-9][0-9]*)(?:,(0|[1-9][0-9]*)?)?\}")


class BadPattern(ValueError):
    """A pattern Go rejects; the message says why, as Go would."""


def _re2_options() -> Any:
    import re2  # type: ignore[import-untyped,unused-ignore]

    options = re2.Options()
    options.log_errors = False  # RE2 writes its own errors to stderr: that is Argo CD's UI
    return options


def compile_regexp(expression: str) -> Matcher:
    """Go's `regexp.Compile(expression).MatchString`: an unanchored search, RE2 syntax.
    BadPattern for what Go rejects."""
    import re2

    problem = _go_only_error(expression)
    if problem:
        raise BadPattern(problem)
    try:
        compiled = re2.compile(expression, _re2_options())
    except UnicodeError:  # a lone surrogate (JSON's \ud800): Go rejects invalid UTF-8 too
        raise BadPattern("invalid UTF-8") from None
    except re2.error as error:
        detail = error.args[0] if error.args else error
        if isinstance(detail, bytes):
            detail = detail.decode("utf-8", "replace")
        raise BadPattern(str(detail)) from None
    return lambda text: compiled.search(text) is not None


def _go_only_error(expression: str) -> str | None:
    """What Go's parser rejects although RE2's C++ parser accepts it."""
    depth = 0
    i, end = 0, len(expression)
    while i < end:
        char = expression[i]
        if char == "\\":
            escaped = expression[i + 1 : i + 2]
            if escaped == "Q":  # literal text up to \E
                close = expression.find("\\E", i + 2)
                i = end if close < 0 else close + 2
                continue
            if escaped == "C":
                return "invalid escape sequence: \\C"  # any byte: C++ only
            i += 2
            continue
        if char == "[":
            i = _class_end(expression, i)
            continue
        if char == "(":
            depth += 1
            if depth >= MAX_NESTING:
                return "expression nests too deeply"
        elif char == ")":
            depth = max(0, depth - 1)
        elif char == "{":
            repeat = _REPEAT.match(expression, i)
            if repeat and any(
                count and (len(count) > 4 or int(count) > MAX_REPEAT) for count in repeat.groups()
            ):
                return f"invalid repeat count: {repeat.group()}"
        i += 1
    return None


def _class_end(expression: str, start: int) -> int:
    """The index just after the bracket expression opened at `start` (or the end)."""
    i = start + 1
    if expression.startswith("^", i):
        i += 1
    if expression.startswith("]", i):
        i += 1  # a leading `]` is a literal
    while i < len(expression):
        if expression[i] == "\\":
            i += 2
        elif expression.startswith("[:", i) and (close := expression.find(":]", i + 2)) >= 0:
            i = close + 2
        elif expression[i] == "]":
            return i + 1
        else:
            i += 1
    return i


# --- filepath.Match ------------------------------------------------------------------------------


def compile_glob(pattern: str) -> Matcher:
    """Go's `filepath.Match(pattern, text)` on Linux, as a whole-text matcher. BadPattern where
    Go returns ErrBadPattern (Go reports it for every text, so the pattern matches nothing)."""
    import re2

    try:
        compiled = re2.compile(_glob_to_re2(pattern), _re2_options())
    except UnicodeError:  # a lone surrogate: not text Go could hold either
        raise BadPattern("syntax error in pattern") from None
    return lambda text: compiled.fullmatch(text) is not None


def _literal(char: str) -> str:
    return char if char.isascii() and char.isalnum() else f"\\x{{{ord(char):x}}}"


def _class_char(pattern: str, i: int) -> tuple[str, int]:
    """Go's getEsc: one class character at `i`, honouring `\\`; the index after it."""
    if i >= len(pattern) or pattern[i] in "-]":
        raise BadPattern("syntax error in pattern")
    if pattern[i] == "\\":
        i += 1
        if i >= len(pattern):
            raise BadPattern("syntax error in pattern")
    if i + 1 >= len(pattern):  # the class is never closed
        raise BadPattern("syntax error in pattern")
    return pattern[i], i + 1


def _glob_to_re2(pattern: str) -> str:
    r"""The RE2 expression for a filepath.Match pattern: `*` is `[^/]*` and `?` is `[^/]` (they
    never match the separator), classes match any one character, `\` escapes."""
    out = ["\\A(?:"]
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "*":
            out.append("[^/]*")
            i += 1
        elif char == "?":
            out.append("[^/]")
            i += 1
        elif char == "\\":
            if i + 1 >= len(pattern):
                raise BadPattern("syntax error in pattern")
            out.append(_literal(pattern[i + 1]))
            i += 2
        elif char == "[":
            i += 1
            negated = pattern.startswith("^", i)
            if negated:
                i += 1
            ranges: list[tuple[str, str]] = []
            while True:
                if pattern.startswith("]", i) and ranges:
                    i += 1
                    break
                low, i = _class_char(pattern, i)
                high = low
                if pattern[i] == "-":
                    high, i = _class_char(pattern, i + 1)
                ranges.append((low, high))
            # Go keeps an inverted range (`[z-a]`) legal but empty; RE2 would reject it.
            kept = [f"{_literal(lo)}-{_literal(hi)}" for lo, hi in ranges if lo <= hi]
            if kept:
                out.append(f"[{'^' if negated else ''}{''.join(kept)}]")
            else:
                out.append("(?s:.)" if negated else "[^\\x00-\\x{10ffff}]")
        else:
            out.append(_literal(char))
            i += 1
    out.append(")\\z")
    return "".join(out)
