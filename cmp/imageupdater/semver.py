"""Semantic versions and constraints as Masterminds/semver v3.4.0 reads them.

Argo CD Image Updater v0.18 picks `semver` tags with that Go library, so tagpin copies its loose
parsing, precedence and constraint rules (quirks included) to choose the same tag it would.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import total_ordering

_UINT64_MAX = 2**64 - 1

# NewVersion with CoerceNewVersion=true (v3.4.0's default): `v` prefix, 1-3 parts, leading zeros.
_LOOSE_VERSION = re.compile(
    r"v?([0-9]+)(\.[0-9]+)?(\.[0-9]+)?"
    r"(-([0-9A-Za-z\-]+(\.[0-9A-Za-z\-]+)*))?"
    r"(\+([0-9A-Za-z\-]+(\.[0-9A-Za-z\-]+)*))?"
)

# Go's \s is ASCII-only and has no \v; spell it out so Python's Unicode \s cannot widen the grammar.
_WS = r"[\t\n\f\r ]"
# The operator alternation exactly as upstream writes it, empty alternative and order included:
# leftmost-first matching depends on that order.
_OPS = r"=||!=|>|<|>=|=>|<=|=<|~|~>|\^"
# `|` inside the classes is upstream's quirk (`[0-9|x|X|\*]`); keeping it keeps the errors alike.
_CV = (
    r"v?([0-9|x|X|\*]+)(\.[0-9|x|X|\*]+)?(\.[0-9|x|X|\*]+)?"
    r"(-([0-9A-Za-z\-]+(\.[0-9A-Za-z\-]+)*))?"
    r"(\+([0-9A-Za-z\-]+(\.[0-9A-Za-z\-]+)*))?"
)
_SINGLE_CONSTRAINT = re.compile(rf"{_WS}*({_OPS}){_WS}*({_CV}){_WS}*")
_RANGE = re.compile(rf"{_WS}*({_CV}){_WS}+-{_WS}+({_CV}){_WS}*")
_FIND_CONSTRAINT = re.compile(rf"({_OPS}){_WS}*({_CV})")
# Upstream's validConstraintRegex describes the same language but backtracks exponentially in Python
# (Go's RE2 does not); this form is unambiguous: possessive whitespace, atomic versions.
_VALID_AND_GROUP = re.compile(
    rf"{_WS}*+(?:{_OPS}){_WS}*+(?>{_CV})"
    rf"(?:(?:{_WS}*+,{_WS}*+|{_WS}++)(?:{_OPS}){_WS}*+(?>{_CV}))*+"
    rf"{_WS}*+"
)
# Not an upstream limit: it bounds the quadratic regex scans; real constraints are a few bytes.
MAX_CONSTRAINT_LENGTH = 1024

_WILDCARDS = frozenset({"x", "X", "*"})


def _uint64(digits: str) -> int | None:
    value = int(digits)
    return value if value <= _UINT64_MAX else None


def _prerelease_key(prerelease: str) -> tuple[tuple[int, int, str], ...]:
    # Numeric identifiers (that fit a uint64) rank below alphanumeric ones, as in comparePrePart.
    key = []
    for part in prerelease.split("."):
        number = _uint64(part) if part.isdigit() and part.isascii() else None
        key.append((0, number, "") if number is not None else (1, 0, part))
    return tuple(key)


@total_ordering
@dataclass(frozen=True, eq=False)
class Version:
    """One parsed tag. Equality and ordering are semver precedence: build metadata is ignored."""

    major: int
    minor: int
    patch: int
    prerelease: str
    metadata: str
    original: str

    @classmethod
    def parse(cls, tag: str) -> Version | None:
        """The version a tag denotes, or None when Image Updater's `semver` strategy skips it."""
        match = _LOOSE_VERSION.fullmatch(tag)
        if match is None:
            return None
        major = _uint64(match.group(1))
        minor = _uint64(match.group(2)[1:]) if match.group(2) else 0
        patch = _uint64(match.group(3)[1:]) if match.group(3) else 0
        if major is None or minor is None or patch is None:
            return None
        prerelease = match.group(5) or ""
        # Leading zeros are coerced in the numbers but stay invalid in numeric pre-release parts.
        if any(len(p) > 1 and p.isdigit() and p[0] == "0" for p in prerelease.split(".")):
            return None
        return cls(major, minor, patch, prerelease, match.group(8) or "", tag)

    @property
    def precedence(self) -> tuple[int, int, int, int, tuple[tuple[int, int, str], ...]]:
        # A release ranks above every pre-release of the same major.minor.patch.
        if self.prerelease:
            return (self.major, self.minor, self.patch, 0, _prerelease_key(self.prerelease))
        return (self.major, self.minor, self.patch, 1, ())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self.precedence == other.precedence

    def __lt__(self, other: Version) -> bool:
        return self.precedence < other.precedence

    def __hash__(self) -> int:
        return hash(self.precedence)

    def __str__(self) -> str:
        text = f"{self.major}.{self.minor}.{self.patch}"
        if self.prerelease:
            text += f"-{self.prerelease}"
        if self.metadata:
            text += f"+{self.metadata}"
        return text


@dataclass(frozen=True)
class _Comparator:
    """One `op version` term. `dirty` means a wildcard or missing part, as in Masterminds."""

    operator: str
    version: Version
    minor_dirty: bool
    patch_dirty: bool
    dirty: bool

    def check(self, v: Version) -> bool:
        op = self.operator
        if op in ("", "="):
            return self._tilde(v) if self.dirty else v == self.version
        if op == "!=":
            return self._not_equal(v)
        if op == ">":
            return self._greater_than(v)
        if op == "<":
            return v < self.version
        if op in (">=", "=>"):
            return v >= self.version
        if op in ("<=", "=<"):
            return self._less_than_equal(v)
        if op in ("~", "~>"):
            return self._tilde(v)
        return self._caret(v)

    def _not_equal(self, v: Version) -> bool:
        c = self.version
        if self.dirty:
            if c.major != v.major:
                return True
            if c.minor != v.minor and not self.minor_dirty:
                return True
            if self.minor_dirty:
                return False
            if c.patch != v.patch and not self.patch_dirty:
                return True
            if self.patch_dirty:
                return v.prerelease != c.prerelease
        return v != c

    def _greater_than(self, v: Version) -> bool:
        c = self.version
        if not self.dirty:
            return v > c
        if v.major != c.major:
            return v.major > c.major
        if self.minor_dirty:  # `>11` needs 12 or higher
            return False
        if self.patch_dirty:  # `>11.1` needs 11.2 or higher
            return v.minor > c.minor
        return v > c

    def _less_than_equal(self, v: Version) -> bool:
        c = self.version
        if not self.dirty:
            return v <= c
        if v.major > c.major:
            return False
        return not (v.major == c.major and v.minor > c.minor and not self.minor_dirty)

    def _tilde(self, v: Version) -> bool:
        c = self.version
        if v < c:
            return False
        # ~0.0.0 (and `*`) accept everything
        if (c.major, c.minor, c.patch) == (0, 0, 0) and not (self.minor_dirty or self.patch_dirty):
            return True
        if v.major != c.major:
            return False
        return v.minor == c.minor or self.minor_dirty

    def _caret(self, v: Version) -> bool:
        c = self.version
        if v < c:
            return False
        if c.major > 0 or self.minor_dirty:
            return v.major == c.major
        if v.major > 0:
            return False
        if c.minor > 0 or self.patch_dirty:
            return v.minor == c.minor
        if v.minor > 0:
            return False
        return v.patch == c.patch


def _parse_comparator(text: str, whole: str) -> _Comparator:
    match = _SINGLE_CONSTRAINT.fullmatch(text)
    if match is None:
        raise ValueError(_bad_constraint(whole, f"cannot read {text.strip()!r}"))
    operator, spec = match.group(1), match.group(2)
    major, minor, patch, prerelease = (match.group(i) or "" for i in (3, 4, 5, 6))
    minor_dirty = patch_dirty = dirty = False
    if major in _WILDCARDS or not major:
        spec, dirty = f"0.0.0{prerelease}", True
    elif minor[1:] in _WILDCARDS or not minor:
        spec, dirty, minor_dirty = f"{major}.0.0{prerelease}", True, True
    elif patch[1:] in _WILDCARDS or not patch:
        spec, dirty, patch_dirty = f"{major}{minor}.0{prerelease}", True, True
    version = Version.parse(spec)
    if version is None:  # e.g. `1x.2` passes the character classes but is no version
        raise ValueError(_bad_constraint(whole, f"{match.group(2)!r} is not a version"))
    return _Comparator(operator, version, minor_dirty, patch_dirty, dirty)


def _bad_constraint(whole: str, detail: str) -> str:
    return (
        f"invalid version constraint {whole!r}: {detail}. Write comparisons such as "
        "'~1.2', '^1.2', '1.2.x', '>=1.2 <2' or '2.x-0' (append '-0' to allow pre-releases), "
        "AND-ed by spaces and OR-ed by '||'"
    )


def _rewrite_ranges(text: str) -> str:
    # `1.2 - 1.4.5` becomes `>= 1.2, <= 1.4.5 `, surrounding whitespace swallowed like upstream.
    return _RANGE.sub(lambda m: f">= {m.group(1)}, <= {m.group(11)} ", text)


@dataclass(frozen=True)
class Constraint:
    """A Masterminds constraint: OR-groups of AND-ed comparators."""

    text: str
    groups: tuple[tuple[_Comparator, ...], ...]
    # Masterminds' rule: a group matches pre-releases only if one of its comparators names one.
    groups_allow_prerelease: tuple[bool, ...]

    @classmethod
    def parse(cls, text: str) -> Constraint:
        """Parse `text`; raise ValueError with a message for people when it is malformed."""
        if len(text) > MAX_CONSTRAINT_LENGTH:
            detail = f"longer than {MAX_CONSTRAINT_LENGTH} characters"
            raise ValueError(_bad_constraint(text[:40] + "...", detail))
        # Upstream rejects "". Image Updater v1.3 reads it as `*` (excluding pre-releases) and so
        # does tagpin, on purpose; v0.18 skipped the check and so picked pre-releases there.
        source = text if text.strip() else "*"
        groups: list[tuple[_Comparator, ...]] = []
        allow_prerelease: list[bool] = []
        for segment in _rewrite_ranges(source).split("||"):
            if not _VALID_AND_GROUP.fullmatch(segment):
                part = segment.strip()
                detail = f"cannot read {part!r}" if part != text.strip() else "cannot read it"
                raise ValueError(_bad_constraint(text, detail))
            terms = [m.group(0) for m in _FIND_CONSTRAINT.finditer(segment)] or [segment]
            comparators = tuple(_parse_comparator(term, text) for term in terms)
            groups.append(comparators)
            allow_prerelease.append(any(c.version.prerelease for c in comparators))
        return cls(text, tuple(groups), tuple(allow_prerelease))

    def check(self, version: Version) -> bool:
        """True if `version` satisfies any OR-group."""
        for comparators, allow_prerelease in zip(
            self.groups, self.groups_allow_prerelease, strict=True
        ):
            if version.prerelease and not allow_prerelease:
                continue
            if all(c.check(version) for c in comparators):
                return True
        return False

    def __str__(self) -> str:
        return self.text
